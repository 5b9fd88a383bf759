package oci

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations naming the image in the archive's index.json: containerd
// (ctr import, Docker >= 25) reads the full name, the OCI spec the tag.
const (
	AnnotationImageName = "io.containerd.image.name"
	AnnotationRefName   = "org.opencontainers.image.ref.name"
)

// WriteArchive writes img as ref to out, atomically, as a tar that is both
// an OCI image layout (oci-layout, index.json, blobs/sha256/) and a
// docker-archive (manifest.json with the repo tag, pointing at the same
// blobs), the format `docker save` writes since Docker 25. ctr import reads
// the layout and keeps the manifest as it is, so its digest; docker load,
// podman load, skopeo's docker-archive and crane push read manifest.json.
func WriteArchive(out string, img v1.Image, ref name.Tag) error {
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	configName, err := img.ConfigName()
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	mediaType, err := img.MediaType()
	if err != nil {
		return err
	}
	index, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType:   mediaType,
			Size:        int64(len(manifest)),
			Digest:      digest,
			Annotations: map[string]string{AnnotationImageName: ref.Name(), AnnotationRefName: ref.TagStr()},
			Platform:    &v1.Platform{OS: "linux", Architecture: runtime.GOARCH},
		}},
	})
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	var blobs []archiveFile
	docker := tarball.Descriptor{Config: blobPath(configName), RepoTags: []string{ref.Name()}}
	for _, l := range layers {
		blob, err := layerBlob(l)
		if err != nil {
			return err
		}
		blobs = append(blobs, blob)
		docker.Layers = append(docker.Layers, blob.name)
	}
	dockerManifest, err := json.Marshal(tarball.Manifest{docker})
	if err != nil {
		return err
	}
	files := append([]archiveFile{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{"manifest.json", dockerManifest},
		{blobPath(configName), config},
		{blobPath(digest), manifest},
	}, blobs...)

	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	tw := tar.NewWriter(f)
	err = errors.Join(writeTarEntry(tw, "blobs/", nil), writeTarEntry(tw, "blobs/sha256/", nil))
	for _, file := range files {
		err = errors.Join(err, writeTarEntry(tw, file.name, file.data))
	}
	if err = errors.Join(err, tw.Close(), f.Chmod(0o644), f.Close()); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return os.Rename(f.Name(), out)
}

// archiveFile is one file of the archive.
type archiveFile struct {
	name string
	data []byte
}

// layerBlob returns l's compressed content as its blob file.
func layerBlob(l v1.Layer) (archiveFile, error) {
	d, err := l.Digest()
	if err != nil {
		return archiveFile{}, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return archiveFile{}, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	return archiveFile{blobPath(d), data}, err
}

// writeTarEntry writes one archive entry owned by root with the fixed
// mtime: a directory when name ends in "/", else a file holding data.
func writeTarEntry(tw *tar.Writer, name string, data []byte) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: Epoch, Format: tar.FormatPAX}
	if strings.HasSuffix(name, "/") {
		hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

// blobPath is where the OCI layout keeps the blob with digest d.
func blobPath(d v1.Hash) string {
	return "blobs/" + d.Algorithm + "/" + d.Hex
}

// Command weft-build-image builds weft's container image without Docker or
// a registry: weftd, weft-cni and weftctl built static into /usr/local/bin,
// and the firewall programs weftd runs (iptables and ip6tables, legacy and
// nft, with their extensions; nft) copied from this machine's Debian
// packages with every shared library they need and the dynamic loader, on
// an empty base. It writes one tar that is both an OCI image layout and a
// docker-archive, naming the image REPO:TAG: `ctr -n k8s.io images import`,
// docker load, podman load, skopeo and crane push all read it.
//
// The same sources and Debian packages give the same image digest: files
// are sorted, owned by root, with fixed mtimes, and the image lists each
// file with its origin (Debian package and version, or weft's version) in
// /usr/share/doc/weft/image-contents.
package main

import (
	"archive/tar"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/weftnet/weft/build/oci"
)

// options are the builder's inputs.
type options struct {
	src     string // weft's module directory
	out     string // the archive to write
	repo    string // the image's repository
	tag     string // the image's tag
	version string // weft's version (main.version, the version label)
	// revision is the source's commit (the revision label); "" for none.
	revision string
}

// contentsPath is the image's list of its files and their origins.
const contentsPath = "/usr/share/doc/weft/image-contents"

// imagePath is the image's PATH, under which weftd finds the firewall
// tools.
const imagePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func main() {
	var o options
	flag.StringVar(&o.src, "src", ".", "weft's source: the module directory to build the programs from")
	flag.StringVar(&o.out, "out", "bin/weft-image.tar", "the image archive to write (OCI layout and docker-archive in one tar)")
	flag.StringVar(&o.repo, "repo", "ghcr.io/weftnet/weft", "the image's repository, recorded in the archive with -tag")
	flag.StringVar(&o.tag, "tag", "dev", "the image's tag")
	flag.StringVar(&o.version, "version", "", "weft's version, built into the programs and the version label (default: git describe --tags --always --dirty of -src, or dev)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags]\n\n"+
			"Builds weft's image for this machine's architecture (%s) without Docker or a registry:\n"+
			"weft's programs built static plus iptables, ip6tables and nft from this machine's\n"+
			"Debian packages with the libraries they need, on an empty base.\n\n", os.Args[0], runtime.GOARCH)
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "unexpected arguments: %s\n", strings.Join(flag.Args(), " "))
		os.Exit(2)
	}
	version, revision := gitVersion(o.src)
	if o.version == "" {
		o.version = version
	}
	o.revision = revision
	digest, err := build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "weft-build-image:", err)
		os.Exit(1)
	}
	fi, err := os.Stat(o.out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "weft-build-image:", err)
		os.Exit(1)
	}
	slog.Info("wrote image", "archive", o.out, "image", o.repo+":"+o.tag, "digest", digest, "bytes", fi.Size(), "version", o.version)
}

// build builds the image and writes it to o.out; it returns the image's
// (manifest's) digest.
func build(o options) (v1.Hash, error) {
	ref, err := name.NewTag(o.repo+":"+o.tag, name.StrictValidation)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("image name from -repo and -tag: %w", err)
	}
	tmp, err := os.MkdirTemp("", "weft-image-")
	if err != nil {
		return v1.Hash{}, err
	}
	defer os.RemoveAll(tmp)

	tools, err := firewallTools()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("firewall tools: %w", err)
	}
	weft, err := weftPrograms(o.src, o.version, o.revision, tmp)
	if err != nil {
		return v1.Hash{}, err
	}
	contents := append(tools.Contents(), weft.Contents()...)
	slices.Sort(contents)
	contents = append(contents, "")
	if _, err := weft.Put(contentsPath, &oci.Entry{Type: tar.TypeReg, Mode: 0o644, Data: []byte(strings.Join(contents, "\n"))}); err != nil {
		return v1.Hash{}, err
	}

	labels := map[string]string{
		"org.opencontainers.image.source":  "https://github.com/weftnet/weft",
		"org.opencontainers.image.version": o.version,
	}
	if o.revision != "" {
		labels["org.opencontainers.image.revision"] = o.revision
	}
	img, err := oci.Image([]oci.Layer{
		{Tree: tools, CreatedBy: "weft build/image: firewall tools from Debian"},
		{Tree: weft, CreatedBy: "weft build/image: weft " + o.version},
	}, v1.Config{
		Entrypoint: []string{filepath.Join(binDir, "weftd")},
		Env:        []string{imagePath},
		Labels:     labels,
	})
	if err != nil {
		return v1.Hash{}, err
	}
	if err := oci.WriteArchive(o.out, img, ref); err != nil {
		return v1.Hash{}, err
	}
	return img.Digest()
}

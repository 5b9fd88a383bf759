package k8s

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/weftnet/weft/build/oci"
	"github.com/weftnet/weft/test/testns"
)

// TestBuildComponents builds every component (about 20 minutes cold: run
// with -timeout 60m) and checks that each program runs and reports its
// version, and that each image archive reads back under its reference
// with its entrypoint, a static program, in it.
func TestBuildComponents(t *testing.T) {
	if !testns.Strict() {
		t.Skip("builds every cluster component (~20 min cold): set WEFT_E2E=1 and -timeout 60m")
	}
	c, err := BuildComponents(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.Version, "v1.") {
		t.Fatalf("Kubernetes version %q", c.Version)
	}
	for _, p := range []struct {
		path string
		args []string
		want string
	}{
		{c.KubeAPIServer, []string{"--version"}, "Kubernetes " + c.Version},
		{c.KubeControllerManager, []string{"--version"}, "Kubernetes " + c.Version},
		{c.KubeScheduler, []string{"--version"}, "Kubernetes " + c.Version},
		{c.Kubelet, []string{"--version"}, "Kubernetes " + c.Version},
		{c.KubeProxy, []string{"--version"}, "Kubernetes " + c.Version},
		{c.Kubectl, []string{"version", "--client"}, "Client Version: " + c.Version},
		{c.Etcd, []string{"--version"}, "etcd Version: 3."},
		{c.KubeRouter, []string{"--version"}, "v2."},
		{c.Containerd, []string{"--version"}, "containerd "},
		{c.Ctr, []string{"--version"}, "ctr "},
		{c.Runc, []string{"--version"}, "runc version "},
	} {
		out, err := exec.CommandContext(t.Context(), p.path, p.args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), p.want) {
			t.Errorf("%s %s: %v, output %q lacks %q", p.path, strings.Join(p.args, " "), err, out, p.want)
		}
	}
	for _, i := range []struct {
		img        Image
		entrypoint []string
	}{
		{c.Images.Agnhost, []string{"/agnhost"}},
		{c.Images.Pause, []string{"/agnhost", "pause"}},
		{c.Images.CoreDNS, []string{"/coredns"}},
		{c.Images.Weft, []string{"/usr/local/bin/weftd"}},
	} {
		checkImage(t, i.img, i.entrypoint)
	}
}

// checkImage reads img's archive as a docker-archive under img.Ref and
// checks its entrypoint and that the program it runs is a static
// executable in the image.
func checkImage(t *testing.T, img Image, entrypoint []string) {
	t.Helper()
	tag, err := name.NewTag(img.Ref)
	if err != nil {
		t.Fatal(err)
	}
	i, err := tarball.ImageFromPath(img.Archive, &tag)
	if err != nil {
		t.Errorf("%s as %s: %v", img.Archive, img.Ref, err)
		return
	}
	cfg, err := i.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Config.Entrypoint, entrypoint) {
		t.Errorf("%s: entrypoint %q, want %q", img.Ref, cfg.Config.Entrypoint, entrypoint)
	}
	prog, mode, err := imageFile(i, entrypoint[0])
	if err != nil {
		t.Errorf("%s: %v", img.Ref, err)
		return
	}
	f, err := elf.NewFile(bytes.NewReader(prog))
	if err != nil {
		t.Errorf("%s: %s: %v", img.Ref, entrypoint[0], err)
		return
	}
	if loader, err := oci.Interpreter(f); err != nil || loader != "" || mode&0o111 == 0 {
		t.Errorf("%s: %s is not a static executable: mode %o, loader %q (%v)", img.Ref, entrypoint[0], mode, loader, err)
	}
}

// imageFile returns the content and mode of the regular file at p in the
// image's file system.
func imageFile(img v1.Image, p string) ([]byte, int64, error) {
	fsys := mutate.Extract(img)
	defer fsys.Close()
	tr := tar.NewReader(fsys)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, 0, fmt.Errorf("no %s in the image", p)
		}
		if err != nil {
			return nil, 0, err
		}
		if "/"+hdr.Name == p && hdr.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			return data, hdr.Mode, err
		}
	}
}

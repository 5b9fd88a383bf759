package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/weftnet/weft/build/oci"
	"github.com/weftnet/weft/test/testns"
)

// firewallNames are the programs pkg/firewall runs: nft, and each
// iptables and ip6tables flavour's save and restore (plain when only one
// flavour is installed).
func firewallNames() []string {
	names := []string{"nft"}
	for _, tool := range []string{"iptables", "ip6tables"} {
		for _, flavour := range []string{"", "-legacy", "-nft"} {
			for _, suffix := range []string{"", "-save", "-restore"} {
				names = append(names, tool+flavour+suffix)
			}
		}
	}
	return names
}

// TestImage builds the image twice (the same digest, byte-identical
// archives), reads it back both as a docker-archive and as an OCI layout,
// checks its config and files, and runs its programs in a chroot of its
// file system: the libraries the firewall tools need resolve in the image.
func TestImage(t *testing.T) {
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		if testns.Strict() {
			t.Fatal("the image is built from Debian's packages, and dpkg-query is missing")
		}
		t.Skip("the image is built from Debian's packages: no dpkg-query")
	}
	src, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	o := options{src: src, out: filepath.Join(dir, "a.tar"), repo: "ghcr.io/weftnet/weft", tag: "test",
		version: "v0.0.0-test", revision: "0123456789abcdef"}
	digest, err := build(o)
	if err != nil {
		t.Fatal(err)
	}
	again := o
	again.out = filepath.Join(dir, "b.tar")
	digest2, err := build(again)
	if err != nil {
		t.Fatal(err)
	}
	a, b := readFile(t, o.out), readFile(t, again.out)
	if digest2 != digest || !bytes.Equal(a, b) {
		t.Fatalf("two builds differ: digests %s and %s, archives of %d and %d bytes", digest, digest2, len(a), len(b))
	}
	t.Logf("image %s, archive %d bytes", digest, len(a))

	tag, err := name.NewTag("ghcr.io/weftnet/weft:test")
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(o.out, &tag)
	if err != nil {
		t.Fatalf("read as docker-archive: %v", err)
	}
	if d, err := img.Digest(); err != nil || d != digest {
		t.Fatalf("docker-archive image digest %s (%v), built %s", d, err, digest)
	}
	checkLayout(t, a, digest)
	checkPush(t, img, digest)

	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", cfg.OS, cfg.Architecture, runtime.GOARCH)
	}
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/usr/local/bin/weftd"}) {
		t.Errorf("entrypoint %q", cfg.Config.Entrypoint)
	}
	for label, want := range map[string]string{
		"org.opencontainers.image.source":   "https://github.com/weftnet/weft",
		"org.opencontainers.image.version":  o.version,
		"org.opencontainers.image.revision": o.revision,
	} {
		if got := cfg.Config.Labels[label]; got != want {
			t.Errorf("label %s = %q, want %q", label, got, want)
		}
	}

	root := t.TempDir()
	fsys := mutate.Extract(img)
	defer fsys.Close()
	if err := untar(fsys, root); err != nil {
		t.Fatalf("extract the image: %v", err)
	}
	for _, p := range programs {
		checkStatic(t, root, path.Join(binDir, p))
	}
	env := cfg.Config.Env
	tools := map[string]string{}
	for _, tool := range firewallNames() {
		p, err := lookPath(root, env, tool)
		if err != nil {
			t.Error(err)
			continue
		}
		tools[tool] = p
		// The builder's closure over the extracted image: the loader and
		// every library the tool needs, recursively, are in the image.
		in := oci.NewTree(root)
		if err := in.AddHost(p); err != nil {
			t.Errorf("%s in the image: %v", tool, err)
		} else if in.Loader() == "" {
			t.Errorf("%s names no dynamic loader", tool)
		}
	}
	contents := string(readFile(t, filepath.Join(root, contentsPath)))
	for _, want := range []string{"/usr/sbin/nft\tdebian nftables ", "/usr/sbin/xtables-nft-multi\tdebian iptables ", "/usr/local/bin/weftd\tweft v0.0.0-test 0123456789abcdef go"} {
		if !strings.Contains(contents, want) {
			t.Errorf("%s has no line starting %q", contentsPath, want)
		}
	}

	t.Run("chroot", func(t *testing.T) {
		testns.RequireRoot(t)
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"nft", "--version"}, "nftables v"},
			{[]string{"iptables-legacy-save", "--version"}, "(legacy)"},
			{[]string{"iptables-nft-save", "--version"}, "(nf_tables)"},
			{[]string{"ip6tables-legacy-restore", "--version"}, "ip6tables-restore v"},
			{[]string{"ip6tables-nft-restore", "--version"}, "(nf_tables)"},
			// -m loads an extension module from the xtables directory.
			{[]string{"iptables", "-m", "comment", "--help"}, "comment match options"},
			{[]string{"iptables-legacy", "-m", "comment", "--help"}, "comment match options"},
		} {
			out, err := runIn(root, env, tools[c.args[0]], c.args[1:]...)
			if err != nil || !strings.Contains(out, c.want) {
				t.Errorf("%s in the image: %v, output %q lacks %q", strings.Join(c.args, " "), err, out, c.want)
			}
		}
		out, err := runIn(root, env, path.Join(binDir, "weftd"), "--version")
		if want := "weftd " + o.version; err != nil || strings.TrimSpace(out) != want {
			t.Errorf("weftd --version in the image: %v, output %q, want %q", err, out, want)
		}
	})
}

// checkLayout reads the archive as an OCI image layout: one image, named
// for containerd, with the built digest.
func checkLayout(t *testing.T, archive []byte, digest v1.Hash) {
	t.Helper()
	dir := t.TempDir()
	if err := untar(bytes.NewReader(archive), dir); err != nil {
		t.Fatal(err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("read as OCI layout: %v", err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 {
		t.Fatalf("OCI index has %d manifests, want 1", len(m.Manifests))
	}
	d := m.Manifests[0]
	if d.Digest != digest || d.Annotations[oci.AnnotationImageName] != "ghcr.io/weftnet/weft:test" || d.Annotations[oci.AnnotationRefName] != "test" {
		t.Errorf("OCI index entry %s %v, want %s named ghcr.io/weftnet/weft:test", d.Digest, d.Annotations, digest)
	}
	img, err := idx.Image(d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.ConfigFile(); err != nil {
		t.Errorf("OCI layout image config: %v", err)
	}
}

// checkPush pushes the docker-archive's image to a registry on loopback,
// as `crane push` does: the registry has it under the built digest.
func checkPush(t *testing.T, img v1.Image, digest v1.Hash) {
	t.Helper()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	dst, err := name.NewTag(strings.TrimPrefix(reg.URL, "http://") + "/weft:test")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(dst, img); err != nil {
		t.Fatalf("push to a registry: %v", err)
	}
	desc, err := remote.Head(dst)
	if err != nil || desc.Digest != digest {
		t.Errorf("the registry has %v (%v), built %s", desc, err, digest)
	}
}

// checkStatic fails t unless the ELF file at image path p is static.
func checkStatic(t *testing.T, root, p string) {
	t.Helper()
	f, err := elf.Open(filepath.Join(root, p))
	if err != nil {
		t.Errorf("%s: %v", p, err)
		return
	}
	defer f.Close()
	loader, err := oci.Interpreter(f)
	libs, _ := f.ImportedLibraries()
	if err != nil || loader != "" || len(libs) > 0 {
		t.Errorf("%s is not static: loader %q, libraries %q (%v)", p, loader, libs, err)
	}
}

// lookPath finds name in the image's PATH (from env) under root, and
// returns its image path.
func lookPath(root string, env []string, name string) (string, error) {
	var dirs string
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			dirs = v
		}
	}
	for _, dir := range filepath.SplitList(dirs) {
		p := path.Join(dir, name)
		real, err := oci.Resolve(root, p, nil)
		if err != nil {
			continue
		}
		if fi, err := os.Stat(filepath.Join(root, real)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not on the image's PATH %q", name, dirs)
}

// runIn runs the image's program p in a chroot of root with the image's
// environment and returns its output.
func runIn(root string, env []string, p string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, p, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir, cmd.Env = "/", env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// untar writes the directories, files and symlinks of a tar stream under
// dir.
func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if !filepath.IsLocal(hdr.Name) {
			return fmt.Errorf("tar entry %q outside the tree", hdr.Name)
		}
		p := filepath.Join(dir, hdr.Name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, hdr.FileInfo().Mode().Perm())
		case tar.TypeSymlink:
			err = os.Symlink(hdr.Linkname, p)
		case tar.TypeReg:
			var data []byte
			if data, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(p, data, hdr.FileInfo().Mode().Perm())
			}
		default:
			err = fmt.Errorf("tar entry %s: unexpected type %c", hdr.Name, hdr.Typeflag)
		}
		if err != nil {
			return err
		}
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

package k8s

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/weftnet/weft/build/oci"
	"github.com/weftnet/weft/test/kubetest"
)

// Image references the cluster's pods use. The versions come from the
// Kubernetes source: agnhost's test/images/agnhost/VERSION, kubeadm's
// PauseVersion and CoreDNSVersion.
const (
	agnhostRepo = "registry.k8s.io/e2e-test-images/agnhost"
	pauseRepo   = "registry.k8s.io/pause"
	corednsRepo = "registry.k8s.io/coredns/coredns"
	// weftRef is weft's image as the tests deploy it: not :latest, which
	// the kubelet always pulls.
	weftRef = "ghcr.io/weftnet/weft:dev"
)

// BuildComponents builds, or finds in the cache (kubetest.CacheDir(),
// ~/.cache/weft-kube), every program and image a cluster runs:
// Kubernetes (KUBE_VERSION, default 1.37.2), etcd, kube-router, agnhost
// and CoreDNS from the Go module proxy with test/k8s/build-components.sh;
// containerd and runc from Debian; the image archives from those programs,
// and weft's image from this checkout (rebuilt every call). A cold build
// takes about 20 minutes on two cores; a warm one about 10 s (weft's image).
func BuildComponents(ctx context.Context) (Components, error) {
	var c Components
	var err error
	if c.Containerd, c.ContainerdShim, c.Ctr, c.Runc, err = debianRuntime(); err != nil {
		return c, err
	}
	root, err := repoRoot(ctx)
	if err != nil {
		return c, err
	}
	dir := kubetest.CacheDir()
	progs, err := buildPrograms(ctx, root, dir)
	if err != nil {
		return c, err
	}
	c.Version = progs["kube-apiserver"].version
	for _, p := range []struct {
		name string
		dst  *string
	}{
		{"kube-apiserver", &c.KubeAPIServer}, {"kube-controller-manager", &c.KubeControllerManager},
		{"kube-scheduler", &c.KubeScheduler}, {"kubelet", &c.Kubelet}, {"kube-proxy", &c.KubeProxy},
		{"kubectl", &c.Kubectl}, {"etcd", &c.Etcd}, {"kube-router", &c.KubeRouter},
	} {
		*p.dst = progs[p.name].path
	}
	if c.Images, err = buildImages(ctx, root, filepath.Join(dir, "images"), progs); err != nil {
		return c, err
	}
	return c, nil
}

// debianRuntime returns Debian's containerd, its runc shim, ctr and runc,
// or an error naming the package to install.
func debianRuntime() (containerd, shim, ctr, runc string, err error) {
	progs := []struct{ path, pkg string }{
		{"/usr/bin/containerd", "containerd"}, {"/usr/bin/containerd-shim-runc-v2", "containerd"},
		{"/usr/bin/ctr", "containerd"}, {"/usr/sbin/runc", "runc"},
	}
	for _, p := range progs {
		if fi, err := os.Stat(p.path); err != nil || fi.Mode()&0o111 == 0 {
			return "", "", "", "", fmt.Errorf("no %s: install Debian's %s package (apt-get install %s, or make deps)", p.path, p.pkg, p.pkg)
		}
	}
	return progs[0].path, progs[1].path, progs[2].path, progs[3].path, nil
}

// repoRoot returns the directory of weft's module, the one the working
// directory is in.
func repoRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("find weft's module (go env GOMOD: %q): run from weft's checkout: %w", gomod, err)
	}
	return filepath.Dir(gomod), nil
}

// program is one program build-components.sh built or found.
type program struct {
	version string
	path    string // "" for a version only (pause)
}

// buildPrograms runs build-components.sh for every target into dir and
// returns its programs by name. The script's output goes to
// dir/build-components.log.
func buildPrograms(ctx context.Context, root, dir string) (map[string]program, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "build-components.log")
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	script := filepath.Join(root, "test", "k8s", "build-components.sh")
	cmd := exec.CommandContext(ctx, "bash", script, "-d", dir, "kubernetes", "etcd", "kube-router", "agnhost", "pause", "coredns")
	cmd.Stderr = log
	slog.Info("building or finding Kubernetes components (cold: about 20 min on 2 cores)", "cache", dir, "log", logPath)
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w (see %s)", script, err, logPath)
	}
	progs := map[string]program{}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("%s printed %q, want NAME VERSION PATH", script, line)
		}
		p := program{version: f[1], path: f[2]}
		if p.path == "-" {
			p.path = ""
		}
		progs[f[0]] = p
	}
	for _, n := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl", "etcd", "kube-router", "agnhost", "pause", "coredns"} {
		if _, ok := progs[n]; !ok {
			return nil, fmt.Errorf("%s printed no %s", script, n)
		}
	}
	slog.Info("Kubernetes components ready", "version", progs["kube-apiserver"].version, "took", time.Since(start).Round(time.Millisecond))
	return progs, nil
}

// buildImages writes the image archives into dir: agnhost, pause and
// CoreDNS once per version, weft's every time (from root).
func buildImages(ctx context.Context, root, dir string, progs map[string]program) (Images, error) {
	var imgs Images
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return imgs, err
	}
	unlock, err := lock(filepath.Join(dir, ".lock"))
	if err != nil {
		return imgs, err
	}
	defer unlock()
	agnhost, coredns := progs["agnhost"], progs["coredns"]
	for _, b := range []struct {
		dst  *Image
		ref  string
		prog program
		// entrypoint runs the program, installed as its first element.
		entrypoint []string
		what       string
	}{
		{&imgs.Agnhost, agnhostRepo + ":" + agnhost.version, agnhost, []string{"/agnhost"},
			"agnhost " + agnhost.version + " from k8s.io/kubernetes " + progs["kube-apiserver"].version},
		// The pause image runs agnhost's pause subcommand, which stands in
		// for Kubernetes' C pause program: it sleeps until SIGINT or
		// SIGTERM, all a sandbox needs here.
		{&imgs.Pause, pauseRepo + ":" + progs["pause"].version, agnhost, []string{"/agnhost", "pause"},
			"agnhost " + agnhost.version + " pause, standing in for pause " + progs["pause"].version},
		{&imgs.CoreDNS, corednsRepo + ":" + coredns.version, coredns, []string{"/coredns"},
			"CoreDNS " + coredns.version + " from github.com/coredns/coredns"},
	} {
		*b.dst = Image{Ref: b.ref, Archive: filepath.Join(dir, archiveName(b.ref))}
		if _, err := os.Stat(b.dst.Archive); err == nil {
			continue
		}
		if err := programImage(*b.dst, b.prog.path, b.entrypoint, b.what); err != nil {
			return imgs, fmt.Errorf("image %s: %w", b.ref, err)
		}
	}
	imgs.Weft = Image{Ref: weftRef, Archive: filepath.Join(dir, archiveName(weftRef))}
	repo, tag, _ := strings.Cut(weftRef, ":")
	cmd := exec.CommandContext(ctx, "go", "run", "./build/image", "-src", root, "-out", imgs.Weft.Archive, "-repo", repo, "-tag", tag)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return imgs, fmt.Errorf("weft's image (go run ./build/image): %w\n%s", err, out)
	}
	return imgs, nil
}

// archiveName is the file name of ref's archive: the reference's last
// path element, "agnhost:2.66.1" giving "agnhost-2.66.1.tar".
func archiveName(ref string) string {
	return strings.ReplaceAll(filepath.Base(ref), ":", "-") + ".tar"
}

// programImage writes img.Archive: the static program prog as
// entrypoint[0] on an empty base, running entrypoint; what describes the
// layer.
func programImage(img Image, prog string, entrypoint []string, what string) error {
	ref, err := name.NewTag(img.Ref, name.StrictValidation)
	if err != nil {
		return err
	}
	t := oci.NewTree("/")
	if _, err := t.Put(entrypoint[0], &oci.Entry{Type: tar.TypeReg, Mode: 0o755, From: prog, Source: what}); err != nil {
		return err
	}
	i, err := oci.Image([]oci.Layer{{Tree: t, CreatedBy: "weft test/k8s: " + what}}, v1.Config{Entrypoint: entrypoint})
	if err != nil {
		return err
	}
	return oci.WriteArchive(img.Archive, i, ref)
}

// lock takes an exclusive lock on the file p, waiting for other processes
// (parallel test binaries) to release it, and returns its release.
func lock(p string) (func(), error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return nil, errors.Join(fmt.Errorf("lock %s: %w", p, err), f.Close())
	}
	return func() { f.Close() }, nil
}

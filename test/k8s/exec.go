package k8s

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// systemPath is the end of every process's PATH: Debian's tools (ip,
// iptables, nft, mount) after the components' own directories.
const systemPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// env is the environment of every process the cluster starts: PATH with
// the components' directories first (containerd finds its shim and runc
// there) and HOME in the cluster's directory, so nothing (kubectl's cache,
// say) writes the host's home.
func (c *Cluster) env() []string {
	comp := c.opts.Components
	var dirs []string
	for _, p := range []string{comp.ContainerdShim, comp.Runc, comp.Containerd, comp.Kubectl} {
		if d := filepath.Dir(p); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return []string{"PATH=" + strings.Join(dirs, ":") + ":" + systemPath, "HOME=" + c.Dir}
}

// runCommand runs cmd with stdin and returns its standard output; the
// error names what (e.g. "kubectl") and carries the standard error.
func runCommand(cmd *exec.Cmd, stdin, what string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", what, strings.Join(cmd.Args[1:], " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// logTail is the last n lines of the file at path (or why it cannot be
// read).
func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// check fails unless every program the cluster runs is an executable file
// and every image archive exists with a reference.
func (comp Components) check() error {
	var errs []error
	for name, path := range map[string]string{
		"KubeAPIServer": comp.KubeAPIServer, "KubeControllerManager": comp.KubeControllerManager,
		"KubeScheduler": comp.KubeScheduler, "Kubelet": comp.Kubelet, "KubeProxy": comp.KubeProxy,
		"Kubectl": comp.Kubectl, "Etcd": comp.Etcd, "Containerd": comp.Containerd,
		"ContainerdShim": comp.ContainerdShim, "Ctr": comp.Ctr, "Runc": comp.Runc,
	} {
		if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			errs = append(errs, fmt.Errorf("Components.%s %q is not an executable file", name, path))
		}
	}
	for name, img := range comp.Images.all() {
		if _, err := os.Stat(img.Archive); err != nil || img.Ref == "" {
			errs = append(errs, fmt.Errorf("Components.Images.%s: archive %q, ref %q: want an archive and its reference", name, img.Archive, img.Ref))
		}
	}
	return errors.Join(errs...)
}

// all are the images by role, each imported into every node.
func (im Images) all() map[string]Image {
	return map[string]Image{"Pause": im.Pause, "CoreDNS": im.CoreDNS, "Agnhost": im.Agnhost, "Weft": im.Weft}
}

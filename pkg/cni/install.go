package cni

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containernetworking/cni/libcni"

	"github.com/weftnet/weft/pkg/atomicfile"
)

// Defaults of `weft-cni install`: the locations kubeadm, containerd and
// CRI-O use, and the files the DaemonSet's init container installs.
const (
	DefaultBinDir       = "/opt/cni/bin"
	DefaultPluginName   = "weft"
	DefaultConfDir      = "/etc/cni/net.d"
	DefaultConflistName = "10-weft.conflist"
	DefaultConflistSrc  = "/etc/weft/cni-conf.json"
	// FlannelConflist is kube-flannel's conflist: it sorts before weft's, and
	// the runtime uses the first conflist by name.
	FlannelConflist = "10-flannel.conflist"
	// DisabledSuffix is appended to a conflicting conflist's name to move it
	// out of the runtime's sight (it reads *.conf, *.conflist and *.json).
	DisabledSuffix = ".disabled-by-weft"
)

// Install is one installation of the plugin and its conflist on a node.
type Install struct {
	// PluginSrc is the plugin executable to install (weft-cni itself).
	PluginSrc string
	// The plugin is installed as BinDir/PluginName, the conflist read from
	// ConflistSrc as ConfDir/ConflistName.
	BinDir, PluginName                 string
	ConflistSrc, ConfDir, ConflistName string
	// Disable names conflists in ConfDir another pod network left that would
	// win over weft's; each one present is renamed with DisabledSuffix.
	Disable []string
}

// Run validates the conflist, then replaces the plugin and the conflist, each
// atomically (the runtime may read them at any moment), and disables the
// conflicting conflists, printing one line per action to out. Nothing is
// installed when the names or the conflist are invalid. Running it again
// leaves the same files.
func (in Install) Run(out io.Writer) error {
	for _, n := range append([]string{in.PluginName, in.ConflistName}, in.Disable...) {
		if !isBaseName(n) {
			return fmt.Errorf("%q is not a file name", n)
		}
	}
	if !strings.HasSuffix(in.ConflistName, ".conflist") {
		return fmt.Errorf("conflist name %q must end in .conflist (the runtime reads other extensions as single configs)", in.ConflistName)
	}
	conf, network, err := readConflist(in.ConflistSrc)
	if err != nil {
		return err
	}

	plugin := filepath.Join(in.BinDir, in.PluginName)
	if err := copyExecutable(in.PluginSrc, plugin); err != nil {
		return err
	}
	fmt.Fprintf(out, "installed plugin %s\n", plugin)

	conflist := filepath.Join(in.ConfDir, in.ConflistName)
	if err := atomicfile.Write(conflist, conf, 0o644, 0o755); err != nil {
		return fmt.Errorf("install conflist: %w", err)
	}
	fmt.Fprintf(out, "installed conflist %s (network %q)\n", conflist, network)

	for _, name := range in.Disable {
		if name == in.ConflistName {
			continue // never weft's own
		}
		err := os.Rename(filepath.Join(in.ConfDir, name), filepath.Join(in.ConfDir, name+DisabledSuffix))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return fmt.Errorf("disable conflist: %w", err)
		default:
			fmt.Fprintf(out, "renamed %s to %s in %s\n", name, name+DisabledSuffix, in.ConfDir)
		}
	}
	return nil
}

// readConflist reads a conflist and checks the runtime will accept it: a
// named network with at least one plugin.
func readConflist(path string) (data []byte, network string, err error) {
	data, err = os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("read conflist: %w", err)
	}
	list, err := libcni.ConfListFromBytes(data)
	if err != nil {
		return nil, "", fmt.Errorf("conflist %s: %w", path, err)
	}
	if list.Name == "" || len(list.Plugins) == 0 {
		return nil, "", fmt.Errorf("conflist %s: needs a \"name\" and at least one entry in \"plugins\"", path)
	}
	return data, list.Name, nil
}

// copyExecutable replaces dst with a copy of src, mode 0755, streamed (a
// running plugin is never written to, so it never fails with "text file
// busy").
func copyExecutable(src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("install plugin: %w", err)
	}
	defer f.Close()
	if err := atomicfile.WriteFrom(dst, f, 0o755, 0o755); err != nil {
		return fmt.Errorf("install plugin: %w", err)
	}
	return nil
}

// isBaseName reports whether s names a file inside a directory, not a path
// or the directory itself.
func isBaseName(s string) bool {
	return s != "" && s == filepath.Base(s) && !slices.Contains([]string{".", ".."}, s)
}

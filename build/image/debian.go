package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"

	"github.com/weftnet/weft/build/oci"
)

// multiCall are iptables' two multi-call programs; Debian links every
// iptables and ip6tables name of each flavour to one of them.
var multiCall = []string{"xtables-legacy-multi", "xtables-nft-multi"}

// plainNames are the unsuffixed iptables names, which Debian points at a
// flavour with update-alternatives. The image points them at nft, Debian's
// default (and Alpine's); weftd itself calls the flavoured names when both
// flavours are installed, as they are here.
var plainNames = []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"}

// sbin is where Debian installs the firewall programs.
const sbin = "/usr/sbin"

// firewallTools returns the layer of the firewall programs weftd runs,
// copied from this machine's Debian packages: iptables and ip6tables of
// both flavours (the multi-call programs, every name Debian links to them,
// the extension modules they load), nft, the libraries they all need and
// the dynamic loader, and the Debian copyright file of every package that
// contributed a file.
func firewallTools() (*oci.Tree, error) {
	t := oci.NewTree("/")
	// nft first: its loader's search path finds the libraries of the
	// extension modules, which name no loader.
	if err := t.AddHost(path.Join(sbin, "nft")); err != nil {
		return nil, fmt.Errorf("%w (install Debian's nftables)", err)
	}
	files, err := dpkg("-L", "iptables")
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		keep, err := iptablesProgram(f)
		if err != nil {
			return nil, err
		}
		if keep {
			if err := t.AddHost(f); err != nil {
				return nil, err
			}
		}
	}
	for _, name := range plainNames {
		nft := strings.Replace(name, "tables", "tables-nft", 1)
		if t.Lookup(path.Join(sbin, nft)) == nil {
			return nil, fmt.Errorf("Debian's iptables has no %s", nft)
		}
		if _, err := t.Put(path.Join(sbin, name), &oci.Entry{Type: tar.TypeSymlink, Mode: 0o777, Link: nft}); err != nil {
			return nil, err
		}
	}
	for {
		pkgs, err := attribute(t)
		if err != nil {
			return nil, err
		}
		added := false
		for _, pkg := range pkgs {
			copyright := path.Join("/usr/share/doc", pkg, "copyright")
			if t.Lookup(copyright) != nil {
				continue
			}
			if err := t.AddHost(copyright); err != nil {
				return nil, err
			}
			added = true
		}
		if !added {
			return t, nil
		}
	}
}

// iptablesProgram reports whether f, a path of Debian's iptables package,
// goes into the image: a multi-call program, a name linked to one, or an
// extension module (a .so in the xtables directory).
func iptablesProgram(f string) (bool, error) {
	fi, err := os.Lstat(f)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil // excluded by dpkg's path-exclude
	}
	if err != nil {
		return false, err
	}
	switch {
	case path.Base(path.Dir(f)) == "xtables":
		return strings.HasSuffix(f, ".so") && !fi.IsDir(), nil
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(f)
		return slices.Contains(multiCall, path.Base(target)), err
	default:
		return fi.Mode().IsRegular() && slices.Contains(multiCall, path.Base(f)), nil
	}
}

// attribute sets the source of every file of t copied from the host that has
// none yet to its Debian package and version, and returns all packages
// the tree's files come from. A file in no package is an error: the image
// holds only what Debian ships.
func attribute(t *oci.Tree) ([]string, error) {
	var query []string
	for _, p := range t.Paths() {
		if e := t.Lookup(p); e.Type == tar.TypeReg && e.Source == "" {
			query = append(query, aliases(p)...)
		}
	}
	owners, err := owners(query)
	if err != nil {
		return nil, err
	}
	var pkgs []string
	for _, p := range t.Paths() {
		e := t.Lookup(p)
		if e.Type != tar.TypeReg {
			continue
		}
		if e.Source == "" {
			for _, a := range aliases(p) {
				if pkg, ok := owners[a]; ok {
					e.Source = pkg
				}
			}
			if e.Source == "" {
				return nil, fmt.Errorf("%s belongs to no Debian package", p)
			}
		}
		pkgs = append(pkgs, strings.Fields(e.Source)[1])
	}
	slices.Sort(pkgs)
	return slices.Compact(pkgs), nil
}

// aliases are the names dpkg may know p by: on a merged-/usr system a file
// in /usr/lib may be registered as /lib.
func aliases(p string) []string {
	if rest, ok := strings.CutPrefix(p, "/usr/"); ok {
		return []string{p, "/" + rest}
	}
	return []string{p}
}

// owners maps each of paths that a Debian package installed to "debian
// <package> <version>".
func owners(paths []string) (map[string]string, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	lines, err := dpkg(append([]string{"-S"}, paths...)...)
	if err != nil {
		return nil, err
	}
	byPath := map[string]string{}
	var pkgs []string
	for _, line := range lines {
		pkg, p, ok := strings.Cut(line, ": ")
		if !ok || strings.HasPrefix(line, "diversion ") || strings.Contains(pkg, ",") {
			continue // a diversion, or a directory several packages share
		}
		byPath[p] = pkg
		pkgs = append(pkgs, pkg)
	}
	slices.Sort(pkgs)
	lines, err = dpkg(append([]string{"-W", "-f", "${binary:Package} ${Package} ${Version}\n"}, slices.Compact(pkgs)...)...)
	if err != nil {
		return nil, err
	}
	versions := map[string]string{}
	for _, line := range lines {
		if f := strings.Fields(line); len(f) == 3 {
			versions[f[0]] = "debian " + f[1] + " " + f[2]
		}
	}
	for p, pkg := range byPath {
		byPath[p] = versions[pkg]
	}
	return byPath, nil
}

// dpkg runs dpkg-query and returns its output lines. Exit status 1 with
// output is a partial answer (some paths in no package), not an error.
func dpkg(args ...string) ([]string, error) {
	cmd := exec.Command("dpkg-query", args...)
	out, err := cmd.Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 1 && len(out) > 0 {
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("dpkg-query %s: %w (the image is built from Debian's packages: run make deps)", args[0], err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n"), nil
}

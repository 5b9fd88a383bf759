// Package oci writes container images as deterministic OCI archives without
// Docker or a registry: file trees become layers with sorted entries owned by
// root and fixed mtimes, and WriteArchive writes a tar that is both an OCI
// image layout and a docker-archive.
package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Epoch is every file's mtime and the image's creation time, so the same
// inputs give the same digest.
var Epoch = time.Unix(0, 0).UTC()

// maxLinks bounds the symlinks followed for one path, as the kernel's ELOOP.
const maxLinks = 40

// Entry is one file of a layer.
type Entry struct {
	Type byte        // tar.TypeDir, tar.TypeSymlink or tar.TypeReg
	Mode fs.FileMode // permission bits
	Link string      // a symlink's target, as written on the host
	From string      // a regular file's content: this path on the build host
	Data []byte      // or these bytes
	// Source says where a regular file comes from ("debian iptables
	// 1.8.9-2"), for the image's contents list.
	Source string
}

// Tree is the file tree of one layer, keyed by absolute image path. Files
// copied from a host directory keep their path and every symlink on the way
// to them, so the image resolves them as the host does.
type Tree struct {
	root    string // the host directory copied from ("/" but in tests)
	entries map[string]*Entry
	// loader is the dynamic loader (PT_INTERP) of the programs added, and
	// libDirs its library search path.
	loader  string
	libDirs []string
}

// NewTree returns an empty tree whose host files are found under root
// ("/" but in tests).
func NewTree(root string) *Tree {
	return &Tree{root: root, entries: map[string]*Entry{}}
}

// Lookup returns the entry at image path p, nil if there is none.
func (t *Tree) Lookup(p string) *Entry {
	return t.entries[p]
}

// Loader is the dynamic loader of the programs added, "" if none needs one.
func (t *Tree) Loader() string {
	return t.loader
}

// Put adds e at p, and a directory for each missing parent. It returns
// false when p already holds the same entry, and an error when it holds
// another.
func (t *Tree) Put(p string, e *Entry) (bool, error) {
	if old, ok := t.entries[p]; ok {
		if old.Type != e.Type || old.Link != e.Link || old.From != e.From || !bytes.Equal(old.Data, e.Data) {
			return false, fmt.Errorf("%s: two different files for one image path", p)
		}
		return false, nil
	}
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		if old, ok := t.entries[d]; ok {
			if old.Type != tar.TypeDir {
				return false, fmt.Errorf("%s: parent %s is not a directory in the image", p, d)
			}
			break
		}
		t.entries[d] = &Entry{Type: tar.TypeDir, Mode: 0o755}
	}
	t.entries[p] = e
	return true, nil
}

// host is p's path on the build host.
func (t *Tree) host(p string) string {
	return filepath.Join(t.root, p)
}

// Resolve follows the symlinks in p under root, as the kernel would with
// root as "/", and returns the image path they lead to. onLink, when not
// nil, sees each symlink passed on the way.
func Resolve(root, p string, onLink func(link, target string)) (string, error) {
	p = path.Clean(p)
	for range maxLinks {
		link, target, rest, err := firstLink(root, p)
		if err != nil || link == "" {
			return p, err
		}
		if onLink != nil {
			onLink(link, target)
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(link), target)
		}
		p = path.Join(target, rest)
	}
	return "", fmt.Errorf("%s: too many levels of symbolic links", p)
}

// firstLink returns the first component of p that is a symlink under root,
// its target, and the rest of p after it; link is "" when there is none.
func firstLink(root, p string) (link, target, rest string, err error) {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	cur := "/"
	for i, part := range parts {
		cur = path.Join(cur, part)
		fi, err := os.Lstat(filepath.Join(root, cur))
		if err != nil {
			return "", "", "", err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(filepath.Join(root, cur))
			return cur, target, path.Join(parts[i+1:]...), err
		}
	}
	return "", "", "", nil
}

// AddHost copies the host file at p into the tree with every symlink on
// its way, and for an ELF file its dynamic loader and the shared libraries
// it needs, recursively.
func (t *Tree) AddHost(p string) error {
	var linkErr error
	real, err := Resolve(t.root, p, func(link, target string) {
		if _, err := t.Put(link, &Entry{Type: tar.TypeSymlink, Mode: 0o777, Link: target}); err != nil {
			linkErr = errors.Join(linkErr, err)
		}
	})
	if err = errors.Join(err, linkErr); err != nil {
		return fmt.Errorf("copy %s: %w", p, err)
	}
	fi, err := os.Stat(t.host(real))
	if err != nil {
		return fmt.Errorf("copy %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("copy %s: %s is not a regular file", p, real)
	}
	added, err := t.Put(real, &Entry{Type: tar.TypeReg, Mode: fi.Mode().Perm(), From: t.host(real)})
	if err != nil || !added {
		return err
	}
	return t.addNeeded(real)
}

// addNeeded adds the dynamic loader and the DT_NEEDED libraries of the file
// at image path p, if it is an ELF file.
func (t *Tree) addNeeded(p string) error {
	f, err := elf.Open(t.host(p))
	var notELF *elf.FormatError
	if errors.As(err, &notELF) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	for _, tag := range []elf.DynTag{elf.DT_RPATH, elf.DT_RUNPATH} {
		if v, _ := f.DynString(tag); len(v) > 0 {
			return fmt.Errorf("%s has %s %v: libraries found through it are not supported", p, tag, v)
		}
	}
	loader, err := Interpreter(f)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if loader != "" {
		if err := t.setLoader(loader); err != nil {
			return err
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	for _, lib := range libs {
		found, err := t.findLib(lib)
		if err != nil {
			return fmt.Errorf("%s needs %s: %w", p, lib, err)
		}
		if err := t.AddHost(found); err != nil {
			return err
		}
	}
	return nil
}

// Interpreter returns f's PT_INTERP, "" for a static executable or a
// shared library.
func Interpreter(f *elf.File) (string, error) {
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(prog.Open())
		if err != nil {
			return "", fmt.Errorf("read PT_INTERP: %w", err)
		}
		return string(bytes.TrimRight(b, "\x00")), nil
	}
	return "", nil
}

// setLoader adds the dynamic loader and learns its library search path.
// Every program must use the same loader: the image has no ld.so.cache,
// so libraries are found in the loader's built-in directories.
func (t *Tree) setLoader(loader string) error {
	if t.loader != "" {
		if loader != t.loader {
			return fmt.Errorf("two dynamic loaders: %s and %s", t.loader, loader)
		}
		return nil
	}
	t.loader = loader
	dirs, err := searchPath(t.host(loader))
	if err != nil {
		return err
	}
	t.libDirs = dirs
	return t.AddHost(loader)
}

// searchPath returns the built-in library directories glibc's loader
// searches without ld.so.cache, from `ld.so --help`.
func searchPath(loader string) ([]string, error) {
	out, err := exec.Command(loader, "--help").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --help: %w", loader, err)
	}
	var dirs []string
	for line := range strings.Lines(string(out)) {
		if dir, ok := strings.CutSuffix(strings.TrimSpace(line), " (system search path)"); ok {
			dirs = append(dirs, dir)
		}
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("%s --help names no system search path (not glibc's loader?)", loader)
	}
	return dirs, nil
}

// findLib returns the image path of the library the loader finds for
// name: the first of its search directories that holds it.
func (t *Tree) findLib(name string) (string, error) {
	if t.loader == "" {
		return "", errors.New("no dynamic loader seen yet to search for it")
	}
	for _, dir := range t.libDirs {
		real, err := Resolve(t.root, path.Join(dir, name), nil)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		if fi, err := os.Stat(t.host(real)); err == nil && fi.Mode().IsRegular() {
			return path.Join(dir, name), nil
		}
	}
	return "", fmt.Errorf("not found in %s", strings.Join(t.libDirs, ", "))
}

// Paths returns the tree's paths in order, parents before children.
func (t *Tree) Paths() []string {
	ps := make([]string, 0, len(t.entries))
	for p := range t.entries {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// Layer returns the tree as a gzip-compressed layer: entries sorted,
// owned by root, with fixed mtimes.
func (t *Tree) Layer() (v1.Layer, error) {
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(gz)
	for _, p := range t.Paths() {
		if err := t.writeEntry(tw, p); err != nil {
			return nil, err
		}
	}
	if err := errors.Join(tw.Close(), gz.Close()); err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	})
}

func (t *Tree) writeEntry(tw *tar.Writer, p string) error {
	e := t.entries[p]
	hdr := &tar.Header{
		Typeflag: e.Type,
		Name:     strings.TrimPrefix(p, "/"),
		Linkname: e.Link,
		Mode:     int64(e.Mode),
		ModTime:  Epoch,
		Format:   tar.FormatPAX,
	}
	if e.Type == tar.TypeDir {
		hdr.Name += "/"
	}
	data := e.Data
	if e.From != "" {
		var err error
		if data, err = os.ReadFile(e.From); err != nil {
			return err
		}
	}
	hdr.Size = int64(len(data))
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("layer entry %s: %w", p, err)
	}
	_, err := tw.Write(data)
	return err
}

// Contents lists the tree's files and symlinks, one a line, with where
// each file comes from.
func (t *Tree) Contents() []string {
	var lines []string
	for _, p := range t.Paths() {
		switch e := t.entries[p]; e.Type {
		case tar.TypeSymlink:
			lines = append(lines, p+" -> "+e.Link)
		case tar.TypeReg:
			lines = append(lines, p+"\t"+e.Source)
		}
	}
	return lines
}

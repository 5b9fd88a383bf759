package main

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

// epoch is every file's mtime and the image's creation time, so the same
// inputs give the same digest.
var epoch = time.Unix(0, 0).UTC()

// maxLinks bounds the symlinks followed for one path, as the kernel's ELOOP.
const maxLinks = 40

// entry is one file of a layer.
type entry struct {
	typ  byte        // tar.TypeDir, tar.TypeSymlink or tar.TypeReg
	mode fs.FileMode // permission bits
	link string      // a symlink's target, as written on the host
	from string      // a regular file's content: this path on the build host
	data []byte      // or these bytes
	// source says where a regular file comes from ("debian iptables
	// 1.8.9-2"), for the image's contents list.
	source string
}

// tree is the file tree of one layer, keyed by absolute image path. Files
// copied from a host directory keep their path and every symlink on the way
// to them, so the image resolves them as the host does.
type tree struct {
	root    string // the host directory copied from ("/" but in tests)
	entries map[string]*entry
	// loader is the dynamic loader (PT_INTERP) of the programs added, and
	// libDirs its library search path.
	loader  string
	libDirs []string
}

func newTree(root string) *tree {
	return &tree{root: root, entries: map[string]*entry{}}
}

// put adds e at p, and a directory for each missing parent. It returns
// false when p already holds the same entry, and an error when it holds
// another.
func (t *tree) put(p string, e *entry) (bool, error) {
	if old, ok := t.entries[p]; ok {
		if old.typ != e.typ || old.link != e.link || old.from != e.from || !bytes.Equal(old.data, e.data) {
			return false, fmt.Errorf("%s: two different files for one image path", p)
		}
		return false, nil
	}
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		if old, ok := t.entries[d]; ok {
			if old.typ != tar.TypeDir {
				return false, fmt.Errorf("%s: parent %s is not a directory in the image", p, d)
			}
			break
		}
		t.entries[d] = &entry{typ: tar.TypeDir, mode: 0o755}
	}
	t.entries[p] = e
	return true, nil
}

// host is p's path on the build host.
func (t *tree) host(p string) string {
	return filepath.Join(t.root, p)
}

// resolve follows the symlinks in p under root, as the kernel would with
// root as "/", and returns the image path they lead to. onLink, when not
// nil, sees each symlink passed on the way.
func resolve(root, p string, onLink func(link, target string)) (string, error) {
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

// addHost copies the host file at p into the tree with every symlink on
// its way, and for an ELF file its dynamic loader and the shared libraries
// it needs, recursively.
func (t *tree) addHost(p string) error {
	var linkErr error
	real, err := resolve(t.root, p, func(link, target string) {
		if _, err := t.put(link, &entry{typ: tar.TypeSymlink, mode: 0o777, link: target}); err != nil {
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
	added, err := t.put(real, &entry{typ: tar.TypeReg, mode: fi.Mode().Perm(), from: t.host(real)})
	if err != nil || !added {
		return err
	}
	return t.addNeeded(real)
}

// addNeeded adds the dynamic loader and the DT_NEEDED libraries of the file
// at image path p, if it is an ELF file.
func (t *tree) addNeeded(p string) error {
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
	loader, err := interpreter(f)
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
		if err := t.addHost(found); err != nil {
			return err
		}
	}
	return nil
}

// interpreter returns f's PT_INTERP, "" for a static executable or a
// shared library.
func interpreter(f *elf.File) (string, error) {
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
func (t *tree) setLoader(loader string) error {
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
	return t.addHost(loader)
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
func (t *tree) findLib(name string) (string, error) {
	if t.loader == "" {
		return "", errors.New("no dynamic loader seen yet to search for it")
	}
	for _, dir := range t.libDirs {
		real, err := resolve(t.root, path.Join(dir, name), nil)
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

// paths returns the tree's paths in order, parents before children.
func (t *tree) paths() []string {
	ps := make([]string, 0, len(t.entries))
	for p := range t.entries {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// layer returns the tree as a gzip-compressed layer: entries sorted,
// owned by root, with fixed mtimes.
func (t *tree) layer() (v1.Layer, error) {
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(gz)
	for _, p := range t.paths() {
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

func (t *tree) writeEntry(tw *tar.Writer, p string) error {
	e := t.entries[p]
	hdr := &tar.Header{
		Typeflag: e.typ,
		Name:     strings.TrimPrefix(p, "/"),
		Linkname: e.link,
		Mode:     int64(e.mode),
		ModTime:  epoch,
		Format:   tar.FormatPAX,
	}
	if e.typ == tar.TypeDir {
		hdr.Name += "/"
	}
	data := e.data
	if e.from != "" {
		var err error
		if data, err = os.ReadFile(e.from); err != nil {
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

// contents lists the tree's files and symlinks, one a line, with where
// each file comes from.
func (t *tree) contents() []string {
	var lines []string
	for _, p := range t.paths() {
		switch e := t.entries[p]; e.typ {
		case tar.TypeSymlink:
			lines = append(lines, p+" -> "+e.link)
		case tar.TypeReg:
			lines = append(lines, p+"\t"+e.source)
		}
	}
	return lines
}

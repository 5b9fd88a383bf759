package main

import (
	"archive/tar"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/weftnet/weft/build/oci"
)

// programs are weft's commands in the image, built static into binDir.
var programs = []string{"weftd", "weft-cni", "weftctl"}

const binDir = "/usr/local/bin"

// weftPrograms builds weft's programs from the module at src into tmp
// (static: CGO_ENABLED=0; -trimpath, no symbol tables, main.version set)
// and returns their layer.
func weftPrograms(src, version, revision, tmp string) (*oci.Tree, error) {
	if strings.ContainsAny(version, " \t\n'\"") {
		return nil, fmt.Errorf("version %q: no spaces or quotes", version)
	}
	args := []string{"build", "-trimpath", "-ldflags", "-s -w -X main.version=" + version, "-o", tmp + "/"}
	for _, p := range programs {
		args = append(args, "./cmd/"+p)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	goVersion, err := command(src, "go", "env", "GOVERSION")
	if err != nil {
		return nil, err
	}
	source := "weft " + version
	if revision != "" {
		source += " " + revision
	}
	source += " " + goVersion
	t := oci.NewTree("/")
	for _, p := range programs {
		if _, err := t.Put(path.Join(binDir, p), &oci.Entry{Type: tar.TypeReg, Mode: 0o755, From: filepath.Join(tmp, p), Source: source}); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// gitVersion returns `git describe --tags --always --dirty` and the commit
// of the checkout at src, or "dev" and "" outside a git checkout.
func gitVersion(src string) (version, revision string) {
	version, err := command(src, "git", "describe", "--tags", "--always", "--dirty")
	if err != nil {
		slog.Warn("not a git checkout: no revision label, version dev unless -version is set", "src", src, "err", err)
		return "dev", ""
	}
	revision, err = command(src, "git", "rev-parse", "HEAD")
	if err != nil {
		slog.Warn("no git revision label", "err", err)
	}
	return version, revision
}

// command runs name in dir and returns its output, trimmed.
func command(dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

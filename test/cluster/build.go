package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Binaries are the executables a cluster runs; absolute paths.
type Binaries struct {
	// Weftd is the weftd daemon.
	Weftd string
	// CNI is the weft-cni plugin (installed into the pods' CNI path as
	// "flannel").
	CNI string
	// Weftctl is the weftctl inspector, for tests that run it (see
	// Node.RunWeftctl); the cluster itself does not need it.
	Weftctl string
	// Commit is the commit the binaries were built from (see BuildCommit);
	// "" for this working tree.
	Commit string
}

// FindBinaries finds weftd and weft-cni already built in dir (make build).
func FindBinaries(dir string) (Binaries, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return Binaries{}, err
	}
	b := Binaries{Weftd: filepath.Join(dir, "weftd"), CNI: filepath.Join(dir, "weft-cni")}
	for _, f := range []string{b.Weftd, b.CNI} {
		if _, err := os.Stat(f); err != nil {
			return b, fmt.Errorf("%s missing: run make build (or pass -bin DIR): %w", f, err)
		}
	}
	return b, nil
}

// Build compiles weftd and weft-cni from this module into dir.
func Build(ctx context.Context, dir string) (Binaries, error) {
	weftd, err := BuildCommand(ctx, dir, "weftd")
	if err != nil {
		return Binaries{}, err
	}
	cni, err := BuildCommand(ctx, dir, "weft-cni")
	if err != nil {
		return Binaries{}, err
	}
	return Binaries{Weftd: weftd, CNI: cni}, nil
}

// BuildCommand compiles the module's cmd/<name> into dir and returns the
// executable's absolute path.
func BuildCommand(ctx context.Context, dir, name string) (string, error) {
	out, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	pkg := "github.com/weftnet/weft/cmd/" + name
	if o, err := exec.CommandContext(ctx, "go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, o)
	}
	return out, nil
}

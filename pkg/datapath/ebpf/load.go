package ebpf

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// loadPinned loads the programs with their maps pinned in dir, reusing the
// pins an earlier process left. A pinned map whose definition changed (an
// upgrade) is replaced by an empty one: Sync refills peers and nodes, and
// endpoints missing from a new map only take the slow path.
func loadPinned(dir string) (*weftObjects, error) {
	spec, err := loadWeft()
	if err != nil {
		return nil, err
	}
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: dir}}
	objs := new(weftObjects)
	err = spec.LoadAndAssign(objs, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		if rerr := removeIncompatiblePins(spec, dir); rerr != nil {
			return nil, rerr
		}
		err = spec.LoadAndAssign(objs, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("load eBPF programs: %w", verifierDetail(err))
	}
	return objs, nil
}

// removeIncompatiblePins unpins the maps in dir that no longer match spec.
func removeIncompatiblePins(spec *ebpf.CollectionSpec, dir string) error {
	for name, ms := range spec.Maps {
		if ms.Pinning != ebpf.PinByName {
			continue
		}
		path := filepath.Join(dir, name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("open pinned map %s: %w", path, err)
		}
		cerr := ms.Compatible(m)
		m.Close()
		if cerr == nil {
			continue
		}
		slog.Warn("replacing pinned map with a changed definition", "map", path, "diff", cerr)
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("remove incompatible pinned map: %w", err)
		}
	}
	return nil
}

// verifierDetail adds the verifier log's end to a load error.
func verifierDetail(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("%w\n%+v", err, ve)
	}
	return err
}

// ensureBPFFS makes dir exist on a bpf filesystem, mounting one on it if it
// is on another file system.
func ensureBPFFS(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create pin directory: %w (its parent is no bpf filesystem here, e.g. "+
			"under ip netns exec, which remounts /sys: mount one with `mount -t bpf bpf /sys/fs/bpf` "+
			"or set --bpf-dir to a writable directory)", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	if st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount a bpf filesystem on %s: %w (mount one there or set --bpf-dir)", dir, err)
	}
	// Pins live as long as this mount: mounted inside a private mount
	// namespace (ip netns exec) they go with the process and a restart
	// falls back to the slow path until Setup re-attaches.
	slog.Info("mounted a bpf filesystem for the pins; mount it outside weftd for hitless restarts", "dir", dir)
	return nil
}

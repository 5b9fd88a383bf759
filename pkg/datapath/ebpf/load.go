package ebpf

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// loadPinned loads the programs with their maps pinned in dir, adopting
// the pins an earlier process left when their definitions match. The maps
// it cannot adopt (a definition changed, or a map is new, while an earlier
// weft's maps are pinned: an upgrade) it creates unpinned and returns as
// staged, with the pins of maps this weft no longer has: the earlier
// programs, still attached, keep forwarding on the pinned maps until the
// new ones are filled and swapIn swaps the programs and commits the pins.
// In a pin directory without weft maps every map is pinned at once.
func loadPinned(dir string) (*weftObjects, []stagedPin, error) {
	spec, err := loadWeft()
	if err != nil {
		return nil, nil, err
	}
	pinned, err := openPins(dir)
	defer func() {
		for _, m := range pinned {
			m.Close()
		}
	}()
	if err != nil {
		return nil, nil, err
	}
	staged := stagePins(spec, pinned)
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: dir}})
	if err != nil {
		return nil, nil, fmt.Errorf("load eBPF programs: %w", verifierDetail(err))
	}
	defer coll.Close()
	for i, s := range staged {
		if m, ok := coll.Maps[s.name]; ok {
			staged[i].m = m
			carryCounters(s.name, pinned[s.name], m)
		}
	}
	objs := new(weftObjects)
	if err := coll.Assign(objs); err != nil {
		return nil, nil, fmt.Errorf("load eBPF programs: %w", err)
	}
	if len(staged) > 0 {
		slog.Info("upgrading pinned maps: new maps filled before the programs are swapped",
			"bpf_dir", dir, "maps", describe(staged))
	}
	return objs, staged, nil
}

// openPins opens every map pinned in dir whose name is weft's (the maps of
// this or any earlier weft), by name; none when dir holds none.
func openPins(dir string) (map[string]*ebpf.Map, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read pin directory: %w", err)
	}
	out := map[string]*ebpf.Map{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasPrefix(e.Name(), namePrefix) {
			continue
		}
		m, err := pinnedMap(dir, e.Name())
		if errors.Is(err, os.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return out, fmt.Errorf("open pinned map %s: %w", filepath.Join(dir, e.Name()), err)
		}
		out[e.Name()] = m
	}
	return out, nil
}

// stagePins decides which maps of spec are staged against the maps pinned
// (see loadPinned) and makes spec create those unpinned.
func stagePins(spec *ebpf.CollectionSpec, pinned map[string]*ebpf.Map) []stagedPin {
	if len(pinned) == 0 {
		return nil
	}
	var staged []stagedPin
	for name, ms := range spec.Maps {
		if ms.Pinning != ebpf.PinByName {
			continue
		}
		why := "new map"
		if old, ok := pinned[name]; ok {
			if why = definitionDiff(ms, old); why == "" {
				continue
			}
		}
		ms.Pinning = ebpf.PinNone
		staged = append(staged, stagedPin{name: name, why: why})
	}
	for name := range pinned {
		if _, ok := spec.Maps[name]; !ok {
			staged = append(staged, stagedPin{name: name, why: "no longer used"})
		}
	}
	slices.SortFunc(staged, func(a, b stagedPin) int { return strings.Compare(a.name, b.name) })
	return staged
}

// definitionDiff is how m's definition differs from ms, e.g. "KeySize: 8
// changed to 20", or "" when m fits ms.
func definitionDiff(ms *ebpf.MapSpec, m *ebpf.Map) string {
	err := ms.Compatible(m)
	if err == nil {
		return ""
	}
	return strings.TrimSuffix(err.Error(), ": "+ebpf.ErrMapIncompatible.Error())
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

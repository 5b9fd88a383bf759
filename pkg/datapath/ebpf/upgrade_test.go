package ebpf

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/test/testns"
)

// tempBPFFS mounts a bpf filesystem in a temporary directory for the test
// and returns it.
func tempBPFFS(t *testing.T) string {
	t.Helper()
	testns.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "bpf")
	must(t, ensureBPFFS(dir))
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && err != unix.EINVAL {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// b1590d9Maps are the pinned maps of weft before issue 11 (commit b1590d9,
// the previous release): IPv4 only, addresses as 4 bytes, one counters
// block.
func b1590d9Maps() []*ebpf.MapSpec {
	return []*ebpf.MapSpec{
		{Name: MapPeers, Type: ebpf.LPMTrie, KeySize: 8, ValueSize: 16, MaxEntries: 16384, Flags: unix.BPF_F_NO_PREALLOC},
		{Name: MapConfig, Type: ebpf.Array, KeySize: 4, ValueSize: 52, MaxEntries: 1},
		{Name: MapEndpoints, Type: ebpf.Hash, KeySize: 4, ValueSize: 12, MaxEntries: 16384},
		{Name: MapPods, Type: ebpf.Hash, KeySize: 4, ValueSize: 12, MaxEntries: 16384},
		{Name: MapNodes, Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 16384},
		{Name: MapTraffic, Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 16, MaxEntries: 6},
		{Name: MapDrops, Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 16, MaxEntries: 8},
		{Name: MapCTRequests, Type: ebpf.RingBuf, MaxEntries: 256 * 1024},
	}
}

// pinMaps creates the maps specs pinned in dir and returns them by name,
// closed when the test ends.
func pinMaps(t *testing.T, dir string, specs []*ebpf.MapSpec) map[string]*ebpf.Map {
	t.Helper()
	out := map[string]*ebpf.Map{}
	for _, s := range specs {
		s = s.Copy()
		s.Pinning = ebpf.PinByName
		m, err := ebpf.NewMapWithOptions(s, ebpf.MapOptions{PinPath: dir})
		must(t, err)
		t.Cleanup(func() { m.Close() })
		out[s.Name] = m
	}
	return out
}

// pinnedID is the ID of the map pinned as name in dir.
func pinnedID(t *testing.T, dir, name string) ebpf.MapID {
	t.Helper()
	m, err := pinnedMap(dir, name)
	must(t, err)
	defer m.Close()
	return mapID(t, m)
}

// mapID is the kernel's ID of m.
func mapID(t *testing.T, m *ebpf.Map) ebpf.MapID {
	t.Helper()
	info, err := m.Info()
	must(t, err)
	id, ok := info.ID()
	if !ok {
		t.Fatal("kernel does not report map IDs")
	}
	return id
}

// perCPUCount is a per-CPU counter value that differs by index and CPU.
func perCPUCount(idx int) []weftTraffic {
	v := make([]weftTraffic, ebpf.MustPossibleCPU())
	for c := range v {
		v[c] = weftTraffic{Packets: uint64(1000*(idx+1) + c), Bytes: uint64(100000*(idx+1) + c)}
	}
	return v
}

// TestCounterSlots: the counters maps hold a block of slots per family, and
// no earlier layout the upgrade carries counts from is the current one.
func TestCounterSlots(t *testing.T) {
	spec, err := loadWeft()
	must(t, err)
	slots := map[string]uint32{MapTraffic: uint32(weftCounterCOUNTER_SLOTS), MapDrops: uint32(weftDropReasonDROP_SLOTS)}
	for name, n := range slots {
		if got, want := spec.Maps[name].MaxEntries, uint32(weftFamilyFAMILY_MAX)*n; got != want {
			t.Errorf("%s has %d entries, want FAMILY_MAX * %d = %d", name, got, n, want)
		}
	}
	for _, l := range counterLayouts {
		if spec.Maps[l.name].MaxEntries == l.maxEntries {
			t.Errorf("earlier layout %+v is the current one", l)
		}
	}
}

// TestCounterCarryOver: an upgrade from either earlier counters layout
// (b1590d9's one IPv4 block, issue 11's blocks of COUNTER_MAX and DROP_MAX)
// stages new counters maps holding the old counts, per CPU, at their index
// within their family's block; the old pins stay until the commit, which
// pins the new maps in their place.
func TestCounterCarryOver(t *testing.T) {
	for _, c := range []struct {
		name                   string
		traffic, trafficBlocks int
		drops, dropBlocks      int
	}{
		{"b1590d9", 6, 1, 8, 1},
		{"issue11", 14, 2, 16, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := tempBPFFS(t)
			old := map[string]struct{ entries, blocks int }{
				MapTraffic: {c.traffic, c.trafficBlocks},
				MapDrops:   {c.drops, c.dropBlocks},
			}
			var specs []*ebpf.MapSpec
			for name, o := range old {
				specs = append(specs, &ebpf.MapSpec{Name: name, Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 16, MaxEntries: uint32(o.entries)})
			}
			oldMaps := pinMaps(t, dir, specs)
			for name, o := range old {
				for i := range o.entries {
					must(t, oldMaps[name].Put(uint32(i), perCPUCount(i)))
				}
			}

			objs, staged, err := loadPinned(dir)
			must(t, err)
			defer objs.Close()
			for name, m := range map[string]*ebpf.Map{MapTraffic: objs.WeftTraffic, MapDrops: objs.WeftDrops} {
				o := old[name]
				if i := slices.IndexFunc(staged, func(s stagedPin) bool { return s.name == name }); i < 0 ||
					!strings.Contains(staged[i].why, "MaxEntries") {
					t.Errorf("%s not staged for its new size: %s", name, describe(staged))
				}
				if pinnedID(t, dir, name) != mapID(t, oldMaps[name]) {
					t.Errorf("%s: the old pin was replaced before the commit", name)
				}
				got, err := dump[uint32, []weftTraffic](m)
				must(t, err)
				want := map[uint32][]weftTraffic{}
				size, slots := o.entries/o.blocks, int(m.MaxEntries())/int(weftFamilyFAMILY_MAX)
				for i := range o.entries {
					want[uint32(i/size*slots+i%size)] = perCPUCount(i)
				}
				for idx, v := range got {
					w, ok := want[idx]
					if !ok {
						w = make([]weftTraffic, len(v))
					}
					if !slices.Equal(v, w) {
						t.Errorf("%s index %d = %v, want %v", name, idx, v, w)
					}
				}
			}

			must(t, commitPins(dir, staged))
			for name, m := range map[string]*ebpf.Map{MapTraffic: objs.WeftTraffic, MapDrops: objs.WeftDrops, MapPeers: objs.WeftPeers} {
				if pinnedID(t, dir, name) != mapID(t, m) {
					t.Errorf("%s: after the commit the pin is not the new map", name)
				}
			}
			if leftovers, _ := filepath.Glob(filepath.Join(dir, "*-new")); len(leftovers) != 0 {
				t.Errorf("temporary pins left: %v", leftovers)
			}
		})
	}
}

// TestReadOtherVersion: weftctl's readers refuse maps an earlier weft
// pinned, saying so, instead of decoding them wrongly; the map list still
// describes them.
func TestReadOtherVersion(t *testing.T) {
	dir := tempBPFFS(t)
	pinMaps(t, dir, b1590d9Maps())
	reads := map[string]func() error{
		MapConfig: func() error { _, err := ReadConfig(dir); return err },
		MapPeers:  func() error { _, err := ReadPeers(dir); return err },
		MapNodes:  func() error { _, err := ReadNodes(dir); return err },
		MapPods:   func() error { _, err := ReadPods(dir); return err },
		MapEndpoints: func() error {
			_, err := ReadEndpoints(dir)
			return err
		},
		MapPeers + " (OpenPeers)": func() error {
			r, err := OpenPeers(dir)
			if err == nil {
				r.Close()
			}
			return err
		},
	}
	for what, read := range reads {
		name, _, _ := strings.Cut(what, " ")
		err := read()
		if err == nil || !strings.Contains(err.Error(), "map "+name+" in "+dir+" was written by another weft version") ||
			!strings.Contains(err.Error(), "use the weftctl of the weftd running on this node") {
			t.Errorf("reading %s of another version: %v; want it named as another version's", what, err)
		}
	}
	// The counters need the config: of this version, the counters maps
	// are still the old ones.
	must(t, os.Remove(filepath.Join(dir, MapConfig)))
	cur, err := loadWeft()
	must(t, err)
	pinMaps(t, dir, []*ebpf.MapSpec{cur.Maps[MapConfig]})
	if _, err := ReadCounters(dir); err == nil || !strings.Contains(err.Error(), "another weft version") {
		t.Errorf("reading counters of another version: %v; want it named as another version's", err)
	}
	info, err := ReadMapInfo(dir, MapPeers)
	if err != nil || info.MaxEntries != 16384 || info.Type != ebpf.LPMTrie.String() {
		t.Errorf("map info of another version's peers map: %+v, %v", info, err)
	}
}

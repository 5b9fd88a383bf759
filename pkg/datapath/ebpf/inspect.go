package ebpf

// Read-only views of the state pinned in a pin directory, for weftctl. They
// open the pins read-only, close them again and work while weftd is down.
// Addresses come back decoded: the maps hold them as 16 bytes, IPv4 mapped
// (see addrKey).

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
)

// Names of the pinned maps: their files in the pin directory, and the names
// bpftool shows.
const (
	MapPeers      = weftMapWeftPeers      // remote pod subnets of both families (LPM trie) -> node IP, VTEP MAC, mode
	MapConfig     = weftMapWeftConfig     // this node (one entry, both families)
	MapEndpoints  = weftMapWeftEndpoints  // local pod IP (either family) -> host veth, pod MAC
	MapPods       = weftMapWeftPods       // host veth ifindex -> the pod's IPs and MAC (source check)
	MapNodes      = weftMapWeftNodes      // known node addresses -> how many leases name them
	MapTraffic    = weftMapWeftTraffic    // per-CPU packets and bytes by family, backend and direction
	MapDrops      = weftMapWeftDrops      // per-CPU drops by family and reason
	MapCTRequests = weftMapWeftCtRequests // ring buffer: flows waiting for a liberal conntrack entry
)

// MapNames lists the pinned maps, sorted.
func MapNames() []string {
	names := []string{MapPeers, MapConfig, MapEndpoints, MapPods, MapNodes, MapTraffic, MapDrops, MapCTRequests}
	slices.Sort(names)
	return names
}

// MapInfo describes one pinned map.
type MapInfo struct {
	Name string
	// ID is the kernel's map ID (bpftool map dump id ID).
	ID ebpf.MapID
	// Type is the map type as cilium/ebpf names it, e.g. "LPMTrie".
	Type string
	// Entries is the number of entries; for arrays every index counts, a
	// ring buffer (no keys) has none.
	Entries int
	// MaxEntries is the map's size: entries, or bytes of a ring buffer.
	MaxEntries int
}

// ReadMapInfo describes the pinned map name in bpfDir, whichever weft
// version pinned it. An error for a missing pin matches os.ErrNotExist.
func ReadMapInfo(bpfDir, name string) (MapInfo, error) {
	m, err := openPinnedAny(bpfDir, name)
	if err != nil {
		return MapInfo{}, err
	}
	defer m.Close()
	info, err := m.Info()
	if err != nil {
		return MapInfo{}, fmt.Errorf("read info of map %s: %w", name, err)
	}
	out := MapInfo{Name: name, Type: info.Type.String(), MaxEntries: int(info.MaxEntries)}
	out.ID, _ = info.ID()
	if info.Type == ebpf.RingBuf {
		return out, nil // no keys to walk
	}
	// Walk the keys only: values of per-CPU maps need a per-CPU buffer.
	// Deletions meanwhile can restart the walk, hence the bound.
	var key any // nil asks for the first key
	for out.Entries < out.MaxEntries {
		next, err := m.NextKeyBytes(key)
		if err != nil {
			return MapInfo{}, fmt.Errorf("count entries of map %s: %w", name, err)
		}
		if next == nil {
			return out, nil
		}
		out.Entries++
		key = next
	}
	return out, nil
}

// openPinned opens the pinned map name in bpfDir read-only, for reading
// its entries: its definition must be this build's.
func openPinned(bpfDir, name string) (*ebpf.Map, error) {
	m, err := openPinnedAny(bpfDir, name)
	if err != nil {
		return nil, err
	}
	spec, err := buildSpec()
	if err != nil {
		m.Close()
		return nil, err
	}
	if ms, ok := spec.Maps[name]; ok {
		if diff := definitionDiff(ms, m); diff != "" {
			m.Close()
			return nil, fmt.Errorf("map %s in %s was written by another weft version (its definition differs "+
				"from this weftctl's: %s); use the weftctl of the weftd running on this node", name, bpfDir, diff)
		}
	}
	return m, nil
}

// buildSpec is this build's programs and maps, as loaded once.
var buildSpec = sync.OnceValues(loadWeft)

// openPinnedAny opens the pinned map name in bpfDir read-only, whatever
// its definition.
func openPinnedAny(bpfDir, name string) (*ebpf.Map, error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(bpfDir, name), &ebpf.LoadPinOptions{ReadOnly: true})
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("map %s is not pinned in %s (no ebpf datapath there: wrong --bpf-dir, or the kernel datapath): %w",
			name, bpfDir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open pinned map %s in %s: %w", name, bpfDir, err)
	}
	return m, nil
}

// readAll returns every entry of the pinned map name in bpfDir.
func readAll[K comparable, V any](bpfDir, name string) (map[K]V, error) {
	m, err := openPinned(bpfDir, name)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return dump[K, V](m)
}

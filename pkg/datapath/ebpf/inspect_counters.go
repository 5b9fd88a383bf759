package ebpf

// The programs' counters as weftctl reads them (see inspect.go).

import "github.com/weftnet/weft/pkg/datapath"

// CPUCount is one CPU's share of a counter.
type CPUCount struct {
	Packets, Bytes uint64
}

// Counter is one slot of a per-CPU counters map (MapTraffic or MapDrops)
// with the labels weftd's metrics give it and the sums over all CPUs.
type Counter struct {
	datapath.Counter
	// Map and Index locate the slot.
	Map   string
	Index int
	// PerCPU are the per-CPU values the sums come from.
	PerCPU []CPUCount
}

// ReadCounters returns the programs' counters in bpfDir, the same set and
// labels as Datapath.Stats without the kernel slow path: traffic by
// backend and direction, then drops by reason, labelled with this node's
// backend, for each of the node's families.
func ReadCounters(bpfDir string) ([]Counter, error) {
	cfg, err := ReadConfig(bpfDir)
	if err != nil {
		return nil, err
	}
	traffic, err := readPerCPU(bpfDir, MapTraffic)
	if err != nil {
		return nil, err
	}
	drops, err := readPerCPU(bpfDir, MapDrops)
	if err != nil {
		return nil, err
	}
	return labelCounters(cfg.Backend(), cfg.NodeIPv6.IsValid(), traffic, drops), nil
}

// readPerCPU reads every index of a per-CPU traffic array.
func readPerCPU(bpfDir, name string) (map[uint32][]weftTraffic, error) {
	return readAll[uint32, []weftTraffic](bpfDir, name)
}

package ebpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/weftnet/weft/pkg/datapath"
)

// Backend names of the programs' counters.
const (
	BackendVXLAN  = "vxlan-ebpf"
	BackendHostGW = "host-gw-ebpf"
)

// trafficCounters names the traffic map's indexes.
var trafficCounters = []struct {
	idx                weftCounter
	backend, direction string
}{
	{weftCounterCOUNTER_VXLAN_TX, BackendVXLAN, "tx"},
	{weftCounterCOUNTER_VXLAN_RX, BackendVXLAN, "rx"},
	{weftCounterCOUNTER_HOST_GW_TX, BackendHostGW, "tx"},
	{weftCounterCOUNTER_HOST_GW_RX, BackendHostGW, "rx"},
}

// dropReasons names the drops map's indexes (metric label values).
var dropReasons = map[weftDropReason]string{
	weftDropReasonDROP_UNKNOWN_NODE:   "unknown_node",
	weftDropReasonDROP_SPOOFED_SOURCE: "spoofed_source",
	weftDropReasonDROP_BAD_VNI:        "bad_vni",
	weftDropReasonDROP_MALFORMED:      "malformed",
	weftDropReasonDROP_INNER_NOT_IPV4: "inner_not_ipv4",
	weftDropReasonDROP_HEADER_REWRITE: "header_rewrite",
}

// Stats returns the programs' counters, every one even when zero: packets
// and bytes per backend and direction, and drops per reason (labelled with
// this node's backend), followed by the kernel slow path's counters.
func (d *Datapath) Stats() ([]datapath.Counter, error) {
	d.mu.Lock()
	if d.objs == nil {
		d.mu.Unlock()
		return nil, errors.New("stats: Setup has not succeeded yet")
	}
	out := make([]datapath.Counter, 0, len(trafficCounters)+len(dropReasons))
	var errs []error
	for _, c := range trafficCounters {
		p, b, err := sum(d.objs.WeftTraffic, uint32(c.idx))
		errs = append(errs, err)
		out = append(out, datapath.Counter{Backend: c.backend, Direction: c.direction, Packets: p, Bytes: b})
	}
	dropBackend := BackendVXLAN
	if d.cfg.Port == 0 {
		dropBackend = BackendHostGW
	}
	for r := weftDropReason(0); r < weftDropReasonDROP_MAX; r++ {
		p, b, err := sum(d.objs.WeftDrops, uint32(r))
		errs = append(errs, err)
		out = append(out, datapath.Counter{Backend: dropBackend, Reason: dropReasons[r], Packets: p, Bytes: b})
	}
	d.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var slow []datapath.Counter
	err := d.inNS(func() error {
		var err error
		slow, err = d.slow.Stats()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("kernel slow path: %w", err)
	}
	return append(out, slow...), nil
}

// sum adds up the per-CPU values of a counters map entry.
func sum(m *ebpf.Map, idx uint32) (packets, bytes uint64, err error) {
	var perCPU []weftTraffic
	if err := m.Lookup(idx, &perCPU); err != nil {
		return 0, 0, fmt.Errorf("read counters %s[%d]: %w", m, idx, err)
	}
	for _, t := range perCPU {
		packets += t.Packets
		bytes += t.Bytes
	}
	return packets, bytes, nil
}

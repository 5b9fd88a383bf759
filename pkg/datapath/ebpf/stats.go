package ebpf

import (
	"errors"
	"fmt"

	"github.com/weftnet/weft/pkg/datapath"
)

// Backend names of the programs' counters.
const (
	BackendVXLAN  = "vxlan-ebpf"
	BackendHostGW = "host-gw-ebpf"
	BackendUDP    = "udp-ebpf"
	// BackendWireGuard labels the drops of the programs on a wireguard
	// node (its traffic to other nodes is the kernel path's).
	BackendWireGuard = "wireguard-ebpf"
	// IPv6Suffix ends the backend label of the IPv6 counters
	// ("vxlan-ebpf-ipv6"): IPv4's labels are those from before IPv6.
	IPv6Suffix = "-ipv6"
)

// trafficCounters names the traffic map's counters of one family (see
// trafficIndex).
var trafficCounters = []struct {
	idx                weftCounter
	backend, direction string
}{
	{weftCounterCOUNTER_VXLAN_TX, BackendVXLAN, "tx"},
	{weftCounterCOUNTER_VXLAN_RX, BackendVXLAN, "rx"},
	{weftCounterCOUNTER_HOST_GW_TX, BackendHostGW, "tx"},
	{weftCounterCOUNTER_HOST_GW_RX, BackendHostGW, "rx"},
	{weftCounterCOUNTER_UDP_TX, BackendUDP, "tx"},
	{weftCounterCOUNTER_UDP_RX, BackendUDP, "rx"},
	// COUNTER_VXLAN_DEVICE_TX is no metric: see withoutHandoff.
}

// dropReasons names the drops map's reasons of one family (metric label
// values; see dropIndex; IPv6's name DROP_INNER_NOT_IPV4 inner_not_ipv6).
var dropReasons = map[weftDropReason]string{
	weftDropReasonDROP_UNKNOWN_NODE:   "unknown_node",
	weftDropReasonDROP_SPOOFED_SOURCE: "spoofed_source",
	weftDropReasonDROP_BAD_VNI:        "bad_vni",
	weftDropReasonDROP_MALFORMED:      "malformed",
	weftDropReasonDROP_INNER_NOT_IPV4: "inner_not_ipv4",
	weftDropReasonDROP_HEADER_REWRITE: "header_rewrite",
	weftDropReasonDROP_POD_SOURCE:     "pod_source",
	weftDropReasonDROP_POD_TO_TUNNEL:  "pod_to_tunnel",
}

// Stats returns the programs' counters, every one of the node's families
// even when zero: packets and bytes per backend and direction, and drops
// per reason (labelled with this node's backend), IPv6's with IPv6Suffix,
// followed by the kernel slow path's counters.
func (d *Datapath) Stats() ([]datapath.Counter, error) {
	d.mu.Lock()
	if d.objs == nil {
		d.mu.Unlock()
		return nil, errors.New("stats: Setup has not succeeded yet")
	}
	traffic, terr := dump[uint32, []weftTraffic](d.objs.WeftTraffic)
	drops, derr := dump[uint32, []weftTraffic](d.objs.WeftDrops)
	backend, v6 := d.node.Backend, d.node.NodeIPv6.IsValid()
	d.mu.Unlock()
	if err := errors.Join(terr, derr); err != nil {
		return nil, err
	}
	var out []datapath.Counter
	for _, c := range labelCounters(backend, v6, traffic, drops) {
		out = append(out, c.Counter)
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
	handed := slot(MapTraffic, trafficIndex(weftFamilyFAMILY_IPV6, weftCounterCOUNTER_VXLAN_DEVICE_TX), traffic, datapath.Counter{})
	return append(out, withoutHandoff(slow, handed.Packets, handed.Bytes)...), nil
}

// withoutHandoff takes the IPv6 GSO packets the programs handed to
// flannel-v6.<VNI> (counted as vxlan-ebpf-ipv6 tx) out of the kernel
// path's vxlan tx counter, which counts them too: the device encapsulates
// them. The programs count them in the device's measure (inner IP bytes);
// a packet the device then failed to send is not in its counter, hence the
// floor at zero.
func withoutHandoff(slow []datapath.Counter, packets, bytes uint64) []datapath.Counter {
	for i, c := range slow {
		if c.Backend == string(datapath.ModeVXLAN)+"-kernel" && c.Direction == "tx" {
			slow[i].Packets -= min(packets, c.Packets)
			slow[i].Bytes -= min(bytes, c.Bytes)
		}
	}
	return slow
}

// labelCounters turns the contents of the traffic and drops maps into
// labelled counters: traffic by backend and direction, then drops by reason,
// labelled with the node's backend; IPv4's, then, when v6 is set, IPv6's
// (udp has no IPv6: no udp traffic counters for it).
func labelCounters(backend datapath.Mode, v6 bool, traffic, drops map[uint32][]weftTraffic) []Counter {
	out := make([]Counter, 0, 2*(len(trafficCounters)+len(dropReasons)))
	dropBackend := BackendVXLAN
	switch backend {
	case datapath.ModeHostGW:
		dropBackend = BackendHostGW
	case datapath.ModeUDP:
		dropBackend = BackendUDP
	case datapath.ModeWireGuard:
		dropBackend = BackendWireGuard
	}
	families := []weftFamily{weftFamilyFAMILY_IPV4}
	if v6 {
		families = append(families, weftFamilyFAMILY_IPV6)
	}
	for _, fam := range families {
		suffix := ""
		if fam == weftFamilyFAMILY_IPV6 {
			suffix = IPv6Suffix
		}
		for _, c := range trafficCounters {
			if fam == weftFamilyFAMILY_IPV6 && c.backend == BackendUDP {
				continue
			}
			out = append(out, slot(MapTraffic, trafficIndex(fam, c.idx), traffic,
				datapath.Counter{Backend: c.backend + suffix, Direction: c.direction}))
		}
		for r := weftDropReason(0); r < weftDropReasonDROP_MAX; r++ {
			reason := dropReasons[r]
			if fam == weftFamilyFAMILY_IPV6 && r == weftDropReasonDROP_INNER_NOT_IPV4 {
				reason = "inner_not_ipv6"
			}
			out = append(out, slot(MapDrops, dropIndex(fam, r), drops,
				datapath.Counter{Backend: dropBackend + suffix, Reason: reason}))
		}
	}
	return out
}

// trafficIndex is the traffic map's index of counter c of family fam: each
// family has a block of COUNTER_SLOTS indexes.
func trafficIndex(fam weftFamily, c weftCounter) int {
	return int(fam)*int(weftCounterCOUNTER_SLOTS) + int(c)
}

// dropIndex is the drops map's index of reason r of family fam: each family
// has a block of DROP_SLOTS indexes.
func dropIndex(fam weftFamily, r weftDropReason) int {
	return int(fam)*int(weftDropReasonDROP_SLOTS) + int(r)
}

// slot builds the Counter of index idx of a per-CPU map's contents.
func slot(mapName string, idx int, values map[uint32][]weftTraffic, labels datapath.Counter) Counter {
	c := Counter{Counter: labels, Map: mapName, Index: idx}
	for _, t := range values[uint32(idx)] {
		c.PerCPU = append(c.PerCPU, CPUCount{Packets: t.Packets, Bytes: t.Bytes})
		c.Packets += t.Packets
		c.Bytes += t.Bytes
	}
	return c
}

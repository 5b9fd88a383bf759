package e2e

import (
	be "encoding/binary" // "binary" is the e2e build helper
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

// metric is Node.Metric that fails t on error.
func metric(t *testing.T, n *cluster.Node, name string, want ...string) float64 {
	t.Helper()
	v, err := n.Metric(t.Context(), name, want...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// expectCarried checks that node n's datapath counted traffic for backend
// (e.g. "vxlan-ebpf", "host-gw-ebpf"): proof that the datapath under test,
// not a fallback, carried the packets.
func expectCarried(t *testing.T, n *cluster.Node, backend string) {
	t.Helper()
	if v := metric(t, n, "weft_datapath_packets_total", `backend="`+backend+`"`); v == 0 {
		t.Errorf("%s: weft_datapath_packets_total{backend=%q} is 0: that datapath carried none of the traffic", n.Name, backend)
	}
}

// TestMetricsCountPackets sends N pings from a pod on n1 to a pod on n2:
// the sender's tx and the receiver's rx counters of the backend grow by
// exactly N, and so do the replies' counters the other way.
func TestMetricsCountPackets(t *testing.T) {
	const n = 25
	for _, dp := range []string{"ebpf", "kernel"} {
		t.Run(dp, func(t *testing.T) {
			c := start(t, cluster.Options{Nodes: 2, NetConf: cluster.NetConf("vxlan", dp, false)})
			pods := addPods(t, c, 1)
			a, b := pods[0], pods[1]
			if err := waitReach(t.Context(), a.NS, b.IP); err != nil {
				t.Fatal(err)
			}
			backend := `backend="vxlan-` + dp + `"`
			read := func() [4]float64 {
				return [4]float64{
					metric(t, a.Node, "weft_datapath_packets_total", backend, `direction="tx"`),
					metric(t, b.Node, "weft_datapath_packets_total", backend, `direction="rx"`),
					metric(t, b.Node, "weft_datapath_packets_total", backend, `direction="tx"`),
					metric(t, a.Node, "weft_datapath_packets_total", backend, `direction="rx"`),
				}
			}
			before := read()
			r, err := a.NS.Ping(t.Context(), b.IP, n, 20*time.Millisecond)
			if err != nil || r.Lost() != 0 {
				t.Fatalf("ping: lost %d (%v)", r.Lost(), err)
			}
			after := read()
			names := []string{"n1 tx (requests)", "n2 rx (requests)", "n2 tx (replies)", "n1 rx (replies)"}
			for i := range after {
				if d := after[i] - before[i]; d != n {
					t.Errorf("%s grew by %v, want exactly %d", names[i], d, n)
				}
			}
		})
	}
}

// TestMetricsCountSpoofedVXLAN sends VXLAN to an ebpf node from an address
// that holds no lease, and from a known node with an inner source outside
// that node's subnet: each is dropped and counted under its reason.
func TestMetricsCountSpoofedVXLAN(t *testing.T) {
	c := start(t, cluster.Options{Nodes: 2, NetConf: cluster.NetConf("vxlan", "ebpf", false)})
	pods := addPods(t, c, 1)
	if err := waitReach(t.Context(), pods[0].NS, pods[1].IP); err != nil {
		t.Fatal(err)
	}
	target, sender := c.Nodes[0], c.Nodes[1]
	drops := func(reason string) float64 {
		return metric(t, target, "weft_datapath_drops_total", `reason="`+reason+`"`)
	}
	victim := pods[0].IP
	for _, tc := range []struct {
		reason string
		from   *cluster.Netns
		inner  netip.Addr
	}{
		// The infra namespace's router address holds no lease.
		{"unknown_node", c.Infra, netip.MustParseAddr("10.244.200.9")},
		// A known node claiming a source outside its own subnet.
		{"spoofed_source", sender.NS, netip.MustParseAddr("10.244.201.9")},
	} {
		before := drops(tc.reason)
		const sent = 3
		if err := tc.from.Do(func() error { return sendVXLAN(target.IP, tc.inner, victim, sent) }); err != nil {
			t.Fatal(err)
		}
		if err := cluster.Eventually(t.Context(), 10*time.Second, tc.reason+" drops counted", func() error {
			if d := drops(tc.reason) - before; d != sent {
				return fmt.Errorf("weft_datapath_drops_total{reason=%q} grew by %v, want %d", tc.reason, d, sent)
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
	}
}

// sendVXLAN sends count VXLAN (VNI 1) packets to node:8472 carrying an
// ICMP echo from src to dst, from the calling thread's namespace.
func sendVXLAN(node, src, dst netip.Addr, count int) error {
	conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(node, 8472)))
	if err != nil {
		return fmt.Errorf("dial %s: %w", node, err)
	}
	defer conn.Close()
	pkt := make([]byte, 8+14+20+8)
	be.BigEndian.PutUint32(pkt[0:], 0x08000000)
	be.BigEndian.PutUint32(pkt[4:], 1<<8)
	eth := pkt[8:]
	copy(eth[0:6], []byte{0x02, 0, 0, 0, 0, 1})
	copy(eth[6:12], []byte{0x02, 0, 0, 0, 0, 2})
	be.BigEndian.PutUint16(eth[12:], 0x0800)
	ip := eth[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 1
	be.BigEndian.PutUint16(ip[2:], 28)
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	be.BigEndian.PutUint16(ip[10:], ipChecksum(ip[:20]))
	ip[20] = 8 // ICMP echo request
	for range count {
		if _, err := conn.Write(pkt); err != nil {
			return fmt.Errorf("send to %s: %w", node, err)
		}
	}
	return nil
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i < len(h); i += 2 {
		sum += uint32(be.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

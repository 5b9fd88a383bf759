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
// not a fallback, carried the packets. The ebpf backends carry established
// TCP and UDP flows (pings and handshakes take the kernel path), so the
// traffic must include a TCP transfer.
func expectCarried(t *testing.T, n *cluster.Node, backend string) {
	t.Helper()
	if v := metric(t, n, "weft_datapath_packets_total", `backend="`+backend+`"`); v == 0 {
		t.Errorf("%s: weft_datapath_packets_total{backend=%q} is 0: that datapath carried none of the traffic", n.Name, backend)
	}
}

// trafficBackends are the backend label values of weft_datapath_bytes_total.
var trafficBackends = []string{"vxlan-ebpf", "host-gw-ebpf", "udp-ebpf", "vxlan-kernel", "udp-kernel", "wireguard-kernel",
	cluster.EBPFCarrier("vxlan", cluster.IPv6), cluster.EBPFCarrier("host-gw", cluster.IPv6)}

// byteCounts are weft_datapath_bytes_total values by "<node> <backend>
// <direction>", e.g. "n1 vxlan-ebpf tx".
type byteCounts map[string]float64

func readBytes(t *testing.T, nodes []*cluster.Node) byteCounts {
	t.Helper()
	out := byteCounts{}
	for _, n := range nodes {
		for _, b := range trafficBackends {
			for _, dir := range []string{"tx", "rx"} {
				out[n.Name+" "+b+" "+dir] = metric(t, n, "weft_datapath_bytes_total", `backend="`+b+`"`, `direction="`+dir+`"`)
			}
		}
	}
	return out
}

// carriedBytes runs f and returns by how much each node's
// weft_datapath_bytes_total grew meanwhile.
func carriedBytes(t *testing.T, nodes []*cluster.Node, f func()) byteCounts {
	t.Helper()
	before := readBytes(t, nodes)
	f()
	after := readBytes(t, nodes)
	for k := range after {
		after[k] -= before[k]
	}
	return after
}

// Shares of a stream's bytes that tell which path carried it: the path
// that carried it counted at least carriedShare (the counters see the
// frames with their headers, a little more than the payload); the other
// at most strayShare (on the ebpf datapath the kernel path carries the
// handshake, the first packets until weftd has made the conntrack entry
// liberal, and the close).
const (
	carriedShare = 0.9
	strayShare   = 0.1
)

// requireFastPath requires that the fast path of family f (backend
// cluster.EBPFCarrier(mode, f), mode "vxlan" or "host-gw") carried an echo
// stream of sent bytes each way between a pod on node a and a pod on node
// b, in every direction on both nodes, and that the kernel path
// (vxlan-kernel) carried at most a small share. d is what carriedBytes
// measured.
func requireFastPath(t *testing.T, d byteCounts, a, b *cluster.Node, mode string, f cluster.Family, sent int64) {
	t.Helper()
	if sent == 0 {
		t.Fatal("no bytes were sent: nothing to measure")
	}
	for _, n := range []*cluster.Node{a, b} {
		for _, dir := range []string{"tx", "rx"} {
			// The kernel path of a tunnel mode is its kernel device or loop.
			fastLabel := cluster.EBPFCarrier(mode, f)
			fast, slow := d[n.Name+" "+fastLabel+" "+dir], d[n.Name+" "+mode+"-kernel "+dir]
			t.Logf("%s %s: %.1f%% of the stream on %s, %.1f%% on %s-kernel", n.Name, dir, 100*fast/float64(sent), fastLabel, 100*slow/float64(sent), mode)
			if fast < carriedShare*float64(sent) || slow > strayShare*float64(sent) {
				t.Errorf("%s %s: a stream of %d bytes each way grew %s by %.0f bytes and %s-kernel by %.0f: "+
					"want at least %.0f%% on the fast path and at most %.0f%% on the kernel path",
					n.Name, dir, sent, fastLabel, fast, mode, slow, 100*carriedShare, 100*strayShare)
			}
		}
	}
}

// TestMetricsCountPackets checks which backend counts what, over IPv4 and
// (IPv6 only) over IPv6. N pings from a pod on n1 to a pod on n2 take the
// kernel path on both datapaths (ICMP never takes the fast path):
// vxlan-kernel's tx of the sender and rx of the receiver grow by exactly N,
// and so do the replies' counters the other way, while the eBPF counters
// stay put. On the ebpf datapath a TCP stream between the same pods is
// counted on vxlan-ebpf (vxlan-ebpf-ipv6) once established.
func TestMetricsCountPackets(t *testing.T) {
	const n = 25
	for _, dp := range []string{"ebpf", "kernel"} {
		for _, stack := range []cluster.Stack{cluster.IPv4Only, cluster.IPv6Only} {
			t.Run(stackName(dp, stack), func(t *testing.T) {
				f := stack.Families()[0]
				c := start(t, cluster.Options{Nodes: 2, NetConf: cluster.StackNetConf(stack, "vxlan", dp, false)})
				pods := addPods(t, c, 1)
				a, b := pods[0], pods[1]
				to := b.IPOf(f)
				if err := waitReach(t.Context(), a.NS, to); err != nil {
					t.Fatal(err)
				}
				read := func(backend string) [4]float64 {
					backend = `backend="` + backend + `"`
					return [4]float64{
						metric(t, a.Node, "weft_datapath_packets_total", backend, `direction="tx"`),
						metric(t, b.Node, "weft_datapath_packets_total", backend, `direction="rx"`),
						metric(t, b.Node, "weft_datapath_packets_total", backend, `direction="tx"`),
						metric(t, a.Node, "weft_datapath_packets_total", backend, `direction="rx"`),
					}
				}
				fastLabel := cluster.EBPFCarrier("vxlan", f)
				kernelBefore, fastBefore := read("vxlan-kernel"), read(fastLabel)
				r, err := a.NS.Ping(t.Context(), to, n, 20*time.Millisecond)
				if err != nil || r.Lost() != 0 {
					t.Fatalf("ping: lost %d (%v)", r.Lost(), err)
				}
				kernelAfter, fastAfter := read("vxlan-kernel"), read(fastLabel)
				names := []string{"n1 tx (requests)", "n2 rx (requests)", "n2 tx (replies)", "n1 rx (replies)"}
				for i := range names {
					if d := kernelAfter[i] - kernelBefore[i]; d != n {
						t.Errorf("vxlan-kernel %s grew by %v, want exactly %d", names[i], d, n)
					}
					if d := fastAfter[i] - fastBefore[i]; d != 0 {
						t.Errorf("%s %s grew by %v during the pings, want 0: ICMP takes the kernel path", fastLabel, names[i], d)
					}
				}
				if dp != "ebpf" {
					return
				}
				serveEcho(t, []*cluster.Pod{b})
				var sent int64
				d := carriedBytes(t, c.Nodes, func() {
					sent, err = a.NS.EchoStream(t.Context(), netip.AddrPortFrom(to, echoPort), 2*time.Second, streamRate)
					if err != nil {
						t.Fatal(err)
					}
				})
				requireFastPath(t, d, a.Node, b.Node, "vxlan", f, sent)
			})
		}
	}
}

// TestMetricsCountSpoofedVXLAN sends VXLAN to an ebpf node from an address
// that holds no lease (the infra namespace: on the underlay, not a node),
// and from a known node with an inner source outside that node's subnet,
// each to the node's IP and to a second address of the node: each is
// dropped and counted under its reason, whatever local address it targets.
func TestMetricsCountSpoofedVXLAN(t *testing.T) {
	c := start(t, cluster.Options{Nodes: 2, NetConf: cluster.NetConf("vxlan", "ebpf", false)})
	pods := addPods(t, c, 1)
	if err := waitReach(t.Context(), pods[0].NS, pods[1].IP); err != nil {
		t.Fatal(err)
	}
	target, sender := c.Nodes[0], c.Nodes[1]
	second := netip.MustParseAddr("10.250.0.201")
	if _, err := target.Exec(t.Context(), "ip", "addr", "add", second.String()+"/32", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	drops := func(reason string) float64 {
		return metric(t, target, "weft_datapath_drops_total", `reason="`+reason+`"`)
	}
	victim := pods[0].IP
	for _, to := range []netip.Addr{target.IP, second} {
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
			if err := tc.from.Do(func() error { return sendVXLAN(to, tc.inner, victim, sent) }); err != nil {
				t.Fatal(err)
			}
			if err := cluster.Eventually(t.Context(), 10*time.Second, tc.reason+" drops counted", func() error {
				if d := drops(tc.reason) - before; d != sent {
					return fmt.Errorf("VXLAN from %s to %s: weft_datapath_drops_total{reason=%q} grew by %v, want %d", tc.from.Name, to, tc.reason, d, sent)
				}
				return nil
			}); err != nil {
				t.Error(err)
			}
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

package ebpf

import (
	"bytes"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/weftnet/weft/pkg/conntrack"
)

// tuple is p's direction as conntrack keys it.
func (p ipPacket) tuple() conntrack.Tuple {
	return conntrack.Tuple{Src: netip.AddrPortFrom(p.src, p.sport), Dst: netip.AddrPortFrom(p.dst, p.dport), Proto: p.proto}
}

// withFlags is p with the TCP flags flags.
func withFlags(p ipPacket, flags uint8) ipPacket {
	p.flags = flags
	return p
}

// TestConntrackGate: netfilter decides, eBPF forwards. A pod flow takes the
// fast path at the sender (encapsulation at the veth and at the bridge) and
// at the receiver (decapsulation, host-gw delivery) only while conntrack
// holds a replied entry for it, established and liberal for TCP (NATed
// flows too, rewritten: TestNATFastPath); everything else goes to the
// kernel untouched. An established TCP flow that is not liberal yet asks
// weftd to make it so (one request per packet).
func TestConntrackGate(t *testing.T) {
	e := newProgEnv(t)
	ap := netip.AddrPortFrom
	service := netip.MustParseAddr("10.96.0.10")
	// A Service the local pod dials, backed by the remote pod (its replies
	// must be un-DNATed on this node), and a hostPort of the local pod that
	// the remote pod dials (the local pod's replies must be un-DNATed here).
	e.ns.MustRun(t, "nft", "add table ip wt_nat { chain out { type nat hook output priority -100; "+
		"ip daddr 10.96.0.10 tcp dport 80 dnat to 10.244.2.7:81; "+
		"ip daddr 192.168.10.1 tcp dport 8080 dnat to 10.244.1.5:82; }; }")
	var (
		tcp       = vxlanFlow
		udp       = flow{proto: protoUDP, src: ap(localPod, 5000), dst: ap(vxlanPod, 5353)}
		icmp      = flow{proto: protoICMP, src: ap(localPod, 0), dst: ap(vxlanPod, 0)}
		toService = flow{proto: protoTCP, src: ap(localPod, 40020), dst: ap(service, 80), server: ap(vxlanPod, 81)}
		hostPort  = flow{proto: protoTCP, src: ap(vxlanPod, 41000), dst: ap(nodeIP, 8080), server: ap(localPod, 82)}
		strict    = tcpFlow(localPod, 40010, vxlanPod, 80)
		strictGW  = tcpFlow(localPod, 40011, hostGWPod, 80)
		untracked = tcpFlow(localPod, 40030, vxlanPod, 80)
	)
	e.track(t, true, tcp, hostGWFlow, udp, icmp)
	for _, entry := range e.track(t, true, toService, hostPort) {
		if entry.Status&ipsNATMask == 0 {
			t.Fatalf("entry %+v not NATed: the NAT cases test nothing", entry)
		}
	}
	for _, entry := range e.track(t, false, strict, strictGW) {
		if entry.Liberal() {
			t.Fatalf("entry %+v liberal already", entry)
		}
	}

	e.checkGate(t, []gateCase{
		{"TCP established, liberal, vxlan", tcp.packet(), tcp.reply(), true, false},
		{"TCP established, liberal, host-gw", hostGWFlow.packet(), hostGWFlow.reply(), true, false},
		{"UDP replied", udp.packet(), udp.reply(), true, false},
		{"TCP established, not liberal, vxlan", strict.packet(), strict.reply(), false, true},
		{"TCP established, not liberal, host-gw", strictGW.packet(), strictGW.reply(), false, true},
		{"TCP SYN", withFlags(tcp.packet(), tcpSYN), withFlags(tcp.reply(), tcpSYN|tcpACK), false, false},
		{"TCP FIN", withFlags(tcp.packet(), tcpFIN|tcpACK), withFlags(tcp.reply(), tcpFIN|tcpACK), false, false},
		{"TCP RST", withFlags(tcp.packet(), tcpRST), withFlags(tcp.reply(), tcpRST|tcpACK), false, false},
		{"ICMP with an entry", icmp.packet(), icmp.reply(), false, false},
		{"no conntrack entry", untracked.packet(), untracked.reply(), false, false},
		{"Service: DNAT on this node", toService.packet(), toService.reply(), true, false},
		{"hostPort: DNAT on this node", hostPort.reply(), hostPort.packet(), true, false},
	})
}

// gateCase is a packet pair of TestConntrackGate.
type gateCase struct {
	name string
	// tx is what the local pod sends, rx what it receives.
	tx, rx  ipPacket
	fast    bool
	request bool // asks for a liberal entry
}

// checkGate runs each case's packets through the programs that meet them
// (tx at the veth and the bridge, rx at the uplink) and checks they take
// the fast path, or the kernel path untouched, and ask for a liberal entry
// as the case says; nothing is dropped.
func (e *progEnv) checkGate(t *testing.T, cases []gateCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, r := range []struct {
				name string
				prog *ebpf.Program
				p    ipPacket
				in   []byte
			}{
				{weftProgWeftVethIngress, e.WeftVethIngress, c.tx, podFrame(c.tx)},
				{weftProgWeftPodIngress, e.WeftPodIngress, c.tx, podFrame(c.tx)},
				{weftProgWeftUplinkIngress, e.WeftUplinkIngress, c.rx, fromPeer(c.rx)},
			} {
				verdict, out := e.mustRun(t, r.prog, r.in)
				switch {
				case c.fast && verdict != tcActRedirect:
					t.Errorf("%s: verdict %d, want the fast path (TC_ACT_REDIRECT)", r.name, verdict)
				case !c.fast && (verdict != tcActOK || !bytes.Equal(out, r.in)):
					t.Errorf("%s: verdict %d (want TC_ACT_OK), frame changed: %v", r.name, verdict, !bytes.Equal(out, r.in))
				}
				var want []conntrack.Tuple
				if c.request {
					want = []conntrack.Tuple{r.p.tuple()}
				}
				if got := e.requested(t); !slices.Equal(got, want) {
					t.Errorf("%s: offload requests %v, want %v", r.name, got, want)
				}
			}
		})
	}
	if d := dropCounts(t, e.weftObjects); d != (allDrops{}) {
		t.Errorf("drops %v: nothing here is to be dropped", d)
	}
}

// TestOffloadMarksRequested: weftd's offload loop answers the programs'
// request for an established flow, after which the flow's packets take the
// fast path.
func TestOffloadMarksRequested(t *testing.T) {
	e := newProgEnv(t)
	e.track(t, false, vxlanFlow)
	done, stop := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		markRequested(e.requests, e.ct, stop)
	}()
	t.Cleanup(func() {
		close(stop)
		e.requests.Close() // ends markRequested
		<-done
	})
	in := podFrame(vxlanFlow.packet())
	// The flow keeps sending (and asking) until weftd marks it, which it
	// does once the flow has asked for offloadAfter.
	start := time.Now()
	deadline := start.Add(ioTimeout)
	for {
		verdict, _ := e.mustRun(t, e.WeftVethIngress, in)
		entry, err := e.ct.Get(vxlanFlow.tuple())
		must(t, err)
		if verdict != tcActOK && !entry.Liberal() {
			t.Fatalf("verdict %d, want TC_ACT_OK until the entry is liberal", verdict)
		}
		if entry.Liberal() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("entry not liberal %v after the first request: %+v", ioTimeout, entry)
		}
		time.Sleep(time.Millisecond) // the flow's next packet
	}
	if waited := time.Since(start); waited < offloadAfter {
		t.Errorf("marked after %v, before the flow had asked for %v", waited, offloadAfter)
	}
	if verdict, _ := e.mustRun(t, e.WeftVethIngress, in); verdict != tcActRedirect {
		t.Errorf("after the entry was marked: verdict %d, want the fast path (TC_ACT_REDIRECT)", verdict)
	}
}

// TestConntrackRefresh: a flow whose entry expires within the configured
// refresh time takes the kernel path, which refreshes the entry.
func TestConntrackRefresh(t *testing.T) {
	e := newProgEnv(t)
	udp := flow{proto: protoUDP, src: netip.AddrPortFrom(localPod, 5000), dst: netip.AddrPortFrom(vxlanPod, 5353)}
	e.track(t, true, udp)
	in := podFrame(udp.packet())
	// A UDP entry that has seen one reply lives 30 s (nf_conntrack_udp_timeout).
	if verdict, _ := e.mustRun(t, e.WeftPodIngress, in); verdict != tcActRedirect {
		t.Errorf("refresh %v before expiry: verdict %d, want TC_ACT_REDIRECT", ctRefresh, verdict)
	}
	e.setConfig(t, func(c *weftNodeConfig) { c.CtRefreshJiffies = uint32(60 * kernelHZ()) })
	e.checkPass(t, "refresh 60s before expiry", e.WeftPodIngress, e.bridge, in)
}

// TestNATFastPath: an established Service flow takes the fast path with
// the NAT conntrack holds for it: the pod's packet to the Service leaves
// encapsulated to the backend pod's address and port, the backend's reply
// is delivered as coming from the Service, checksums right both ways.
func TestNATFastPath(t *testing.T) {
	e := newProgEnv(t)
	ap := netip.AddrPortFrom
	service := ap(netip.MustParseAddr("10.96.0.10"), 80)
	backend := ap(vxlanPod, 81)
	e.ns.MustRun(t, "nft", "add table ip wt_nat { chain out { type nat hook output priority -100; "+
		"ip daddr 10.96.0.10 tcp dport 80 dnat to 10.244.2.7:81; }; }")
	svc := flow{proto: protoTCP, src: ap(localPod, 40020), dst: service, server: backend}
	e.track(t, true, svc)

	check := func(what string, ip []byte, src, dst netip.AddrPort) {
		t.Helper()
		got := func(off int) netip.AddrPort {
			a, _ := netip.AddrFromSlice(ip[off : off+4])
			return netip.AddrPortFrom(a, uint16(ip[20+(off-12)/2])<<8|uint16(ip[21+(off-12)/2]))
		}
		if s, d := got(12), got(16); s != src || d != dst {
			t.Errorf("%s: %s -> %s, want %s -> %s", what, s, d, src, dst)
		}
		if c := ipChecksum(ip[:20]); c != 0 {
			t.Errorf("%s: IPv4 header checksum wrong (%#04x)", what, c)
		}
		if c := l4Checksum(ip); c != 0 {
			t.Errorf("%s: TCP checksum wrong (%#04x)", what, c)
		}
	}

	out := ethernet(bridgeMAC, podMAC, etherTypeIPv4, withChecksum(svc.packet()))
	verdict, got := e.mustRun(t, e.WeftVethIngress, out)
	if verdict != tcActRedirect {
		t.Fatalf("pod to Service: verdict %d, want the fast path", verdict)
	}
	check("pod to Service, encapsulated", got[14+vxlanOverhead:], svc.src, backend)

	back := vxlanFrameTo(vxlanNode, nodeIP, testVNI, withChecksum(svc.reply()))
	verdict, got = e.mustRun(t, e.WeftUplinkIngress, back)
	if verdict != tcActRedirect {
		t.Fatalf("backend reply: verdict %d, want the fast path", verdict)
	}
	check("backend reply, delivered", got[14:], service, svc.src)
}

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
func (p ipv4Packet) tuple() conntrack.Tuple {
	return conntrack.Tuple{Src: netip.AddrPortFrom(p.src, p.sport), Dst: netip.AddrPortFrom(p.dst, p.dport), Proto: p.proto}
}

// withFlags is p with the TCP flags flags.
func withFlags(p ipv4Packet, flags uint8) ipv4Packet {
	p.flags = flags
	return p
}

// TestConntrackGate: netfilter decides, eBPF forwards. A pod flow takes the
// fast path at the sender (encapsulation at the veth and at the bridge) and
// at the receiver (decapsulation, host-gw delivery) only while conntrack
// holds a replied, non-NATed entry for it, established and liberal for TCP;
// everything else goes to the kernel untouched. An established TCP flow that
// is not liberal yet asks weftd to make it so (one request per packet).
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

	for _, c := range []struct {
		name string
		// tx is what the local pod sends, rx what it receives.
		tx, rx  ipv4Packet
		fast    bool
		request bool // asks for a liberal entry
	}{
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
		{"Service: DNAT on this node", toService.packet(), toService.reply(), false, false},
		{"hostPort: DNAT on this node", hostPort.reply(), hostPort.packet(), false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, r := range []struct {
				name string
				prog *ebpf.Program
				p    ipv4Packet
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
	if d := dropCounts(t, e.weftObjects); d != [weftDropReasonDROP_MAX]uint64{} {
		t.Errorf("drops %v: nothing here is to be dropped", d)
	}
}

// TestOffloadMarksRequested: weftd's offload loop answers the programs'
// request for an established flow, after which the flow's packets take the
// fast path.
func TestOffloadMarksRequested(t *testing.T) {
	e := newProgEnv(t)
	e.track(t, false, vxlanFlow)
	done := make(chan struct{})
	go func() {
		defer close(done)
		markRequested(e.requests, e.ct)
	}()
	t.Cleanup(func() {
		e.requests.Close() // ends markRequested
		<-done
	})
	in := podFrame(vxlanFlow.packet())
	if verdict, _ := e.mustRun(t, e.WeftVethIngress, in); verdict != tcActOK {
		t.Fatalf("first packet: verdict %d, want TC_ACT_OK until the entry is liberal", verdict)
	}
	deadline := time.Now().Add(ioTimeout)
	for {
		entry, err := e.ct.Get(vxlanFlow.tuple())
		must(t, err)
		if entry.Liberal() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("entry not liberal %v after the request: %+v", ioTimeout, entry)
		}
		time.Sleep(10 * time.Millisecond)
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

package ebpf

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/pkg/datapath"
)

// The programs on a node of flannel's udp backend (BPF_PROG_TEST_RUN): the
// progEnv node with the udp port, and its vxlan peer turned into a udp peer
// (the same node and subnet).

// udpPort is flannel's udp port; udpOverhead what its format adds.
const (
	udpPort     = 8285
	udpOverhead = 28
	// ipv4DF is the outer IPv4 flags and fragment offset field with DF set.
	ipv4DF = 0x4000
)

// useUDP makes e's node a udp node and its vxlan peer a udp peer.
func (e *progEnv) useUDP(t testing.TB) {
	t.Helper()
	e.setConfig(t, func(c *weftNodeConfig) {
		c.Mode, c.Port, c.Vni, c.Family[weftFamilyFAMILY_IPV4].VtepMac = uint8(weftModeMODE_UDP), udpPort, 0, [6]uint8{}
	})
	must(t, e.WeftPeers.Put(lpmKey(vxlanSubnet), weftPeer{NodeIp: addrKey(vxlanNode), Mode: uint8(weftModeMODE_UDP)}))
}

// udpFrame is what a udp peer (flanneld, or weft) puts on the wire from
// outerSrc to outerDst's port dport for the IPv4 packet inner.
func udpFrame(outerSrc, outerDst netip.Addr, dport uint16, inner []byte) []byte {
	return ethernet(net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}, etherTypeIPv4,
		udpPacket(outerSrc, outerDst, udpPort, dport, ipv4DF, inner))
}

// TestEncapUDP: an established flow's packet is sent in flannel's udp
// format: outer IPv4 node to peer node with DF, UDP 8285 to 8285 with
// checksum 0, and the pod's packet, its TTL decremented, as the payload.
func TestEncapUDP(t *testing.T) {
	e := newProgEnv(t)
	e.useUDP(t)
	e.track(t, true, vxlanFlow)
	in := podFrame(vxlanFlow.packet())
	routed := vxlanFlow.packet()
	routed.ttl = 63
	for i, p := range e.podSide() {
		verdict, out, err := e.runOn(p.prog, p.ifindex, in)
		must(t, err)
		if verdict != tcActRedirect || len(out) != len(in)+udpOverhead {
			t.Fatalf("%s: verdict %d, %d bytes; want TC_ACT_REDIRECT and %d bytes", p.name, verdict, len(out), len(in)+udpOverhead)
		}
		ip := out[14:34]
		totLen := len(in) - 14 + udpOverhead
		want := ethernet(make(net.HardwareAddr, 6), make(net.HardwareAddr, 6), etherTypeIPv4,
			udpPacket(nodeIP, vxlanNode, udpPort, udpPort, ipv4DF, routed.bytes()))
		// The outer ID is random: take it, and the checksum over it, as sent.
		copy(want[18:20], ip[4:6])
		binary.BigEndian.PutUint16(want[24:], 0)
		binary.BigEndian.PutUint16(want[24:], ipChecksum(want[14:34]))
		if !bytes.Equal(out, want) {
			t.Errorf("%s: frame\n got % x\nwant % x", p.name, out, want)
		}
		checkIPv4Header(t, p.name+": outer", ip)
		checkIPv4Header(t, p.name+": inner", out[42:62])
		if got := binary.BigEndian.Uint16(ip[2:]); int(got) != totLen || ip[6] != 0x40 {
			t.Errorf("%s: outer length %d flags %#x, want %d and DF", p.name, got, ip[6], totLen)
		}
		if pk, b := counts(t, e.WeftTraffic, uint32(weftCounterCOUNTER_UDP_TX)); pk != uint64(i+1) || b != uint64((i+1)*len(in)) {
			t.Errorf("%s: udp tx counter = %d packets %d bytes, want %d and %d", p.name, pk, b, i+1, (i+1)*len(in))
		}
	}
	if pk, _ := counts(t, e.WeftTraffic, uint32(weftCounterCOUNTER_VXLAN_TX)); pk != 0 {
		t.Errorf("vxlan tx counter = %d for udp peers", pk)
	}
}

// TestEncapUDPFallback: a packet that would not fit the uplink with the
// 28 bytes of udp takes the kernel path untouched.
func TestEncapUDPFallback(t *testing.T) {
	e := newProgEnv(t)
	e.useUDP(t)
	e.checkEncapFallback(t, udpOverhead, weftCounterCOUNTER_UDP_TX)
}

// TestDecapUDP: replies of established flows in flannel's udp format from
// the peer's node are delivered to the pod exactly as the peer's pod sent
// them.
func TestDecapUDP(t *testing.T) {
	e := newProgEnv(t)
	e.useUDP(t)
	flows := []flow{vxlanFlow, tcpFlow(localPod, 40003, vxlanNode, 80)}
	e.track(t, true, flows...)
	for i, f := range flows {
		inner := f.reply().bytes()
		verdict, out := e.mustRun(t, e.WeftUplinkIngress, udpFrame(vxlanNode, nodeIP, udpPort, inner))
		want := delivered(inner)
		if verdict != tcActRedirect || !bytes.Equal(out, want) {
			t.Errorf("inner source %s: verdict %d (want TC_ACT_REDIRECT), frame\n got % x\nwant % x", f.reply().src, verdict, out, want)
		}
		if p, b := counts(t, e.WeftTraffic, uint32(weftCounterCOUNTER_UDP_RX)); p != uint64(i+1) || b != uint64((i+1)*len(want)) {
			t.Errorf("udp rx counter = %d packets %d bytes, want %d and %d", p, b, i+1, (i+1)*len(want))
		}
	}
	if d := dropCounts(t, e.weftObjects); d != (allDrops{}) {
		t.Errorf("drops %v after valid udp traffic", d)
	}
}

// TestUDPPassesToStack: udp the fast path does not take (no flow, not this
// node's port or address, a fragment) reaches the stack untouched, where
// the kernel datapath's udp socket gets what is addressed to it.
func TestUDPPassesToStack(t *testing.T) {
	e := newProgEnv(t)
	e.useUDP(t)
	e.track(t, true, vxlanFlow)
	reply := vxlanFlow.reply().bytes()
	firstFragment := udpFrame(vxlanNode, nodeIP, udpPort, reply)
	firstFragment[14+6] |= 0x20
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"another port", udpFrame(vxlanNode, nodeIP, udpPort+1, reply)},
		{"VXLAN's port", vxlanFrame(vxlanNode, testVNI, vxlanFlow.reply())},
		{"no conntrack entry", udpFrame(vxlanNode, nodeIP, udpPort, tcpPacket(vxlanPod, localPod, 80, 45000).bytes())},
		{"no local endpoint", udpFrame(vxlanNode, nodeIP, udpPort, tcpPacket(vxlanPod, netip.MustParseAddr("10.244.1.99"), 80, 40000).bytes())},
		{"outer destination not this node", udpFrame(vxlanNode, netip.MustParseAddr("192.168.10.77"), udpPort, reply)},
		{"validated first fragment", firstFragment},
	} {
		e.checkPass(t, c.name, e.WeftUplinkIngress, e.uplink, c.in)
	}
	if p, _ := counts(t, e.WeftTraffic, uint32(weftCounterCOUNTER_UDP_RX)); p != 0 {
		t.Errorf("udp rx counter = %d after pass-through only", p)
	}
	if d := dropCounts(t, e.weftObjects); d != (allDrops{}) {
		t.Errorf("drops %v after traffic for the stack", d)
	}
}

// TestUDPDrops: udp to this node's port from an unknown node, with a
// spoofed inner source or malformed is dropped and counted by reason.
func TestUDPDrops(t *testing.T) {
	e := newProgEnv(t)
	e.useUDP(t)
	good := tcpPacket(vxlanPod, localPod, 40000, 80).bytes()
	frame := func(src netip.Addr, inner []byte) []byte { return udpFrame(src, nodeIP, udpPort, inner) }
	inner6 := append([]byte(nil), good...)
	inner6[0] = 0x60
	badUDPLen := frame(vxlanNode, good)
	binary.BigEndian.PutUint16(badUDPLen[38:], 99)
	innerBeyond := frame(vxlanNode, good)
	binary.BigEndian.PutUint16(innerBeyond[42+2:], uint16(len(good)+1))
	e.checkUplinkDrops(t, weftCounterCOUNTER_UDP_RX, []uplinkDrop{
		{"unknown node", frame(netip.MustParseAddr("192.168.10.9"), good), weftDropReasonDROP_UNKNOWN_NODE},
		{"inner source of another node", frame(vxlanNode, tcpPacket(hostGWPod, localPod, 1, 2).bytes()), weftDropReasonDROP_SPOOFED_SOURCE},
		{"inner source outside the network", frame(vxlanNode, tcpPacket(netip.MustParseAddr("198.51.100.1"), localPod, 1, 2).bytes()), weftDropReasonDROP_SPOOFED_SOURCE},
		{"inner IPv6", frame(vxlanNode, inner6), weftDropReasonDROP_INNER_NOT_IPV4},
		{"outer IP options", withIPOptions(frame(vxlanNode, good)), weftDropReasonDROP_MALFORMED},
		{"UDP length mismatch", badUDPLen, weftDropReasonDROP_MALFORMED},
		{"inner length beyond the frame", innerBeyond, weftDropReasonDROP_MALFORMED},
	})
}

// TestUDPConfigDecoded: the maps' udp entries read back as udp, and a udp
// node's drops are labelled udp-ebpf.
func TestUDPConfigDecoded(t *testing.T) {
	c := decodeConfig(weftNodeConfig{Port: udpPort, Mode: uint8(weftModeMODE_UDP)})
	if c.Backend() != datapath.ModeUDP || c.Port != udpPort {
		t.Errorf("udp config decoded to backend %s port %d", c.Backend(), c.Port)
	}
	p := decodePeer(lpmKey(vxlanSubnet), peerValue(datapath.Peer{Subnet: vxlanSubnet, NodeIP: vxlanNode, Mode: datapath.ModeUDP}))
	if p.Mode != datapath.ModeUDP || p.NodeIP != vxlanNode {
		t.Errorf("udp peer read back as %+v", p)
	}
	counters := labelCounters(datapath.ModeUDP, false, nil, nil)
	var udpTraffic int
	for _, c := range counters {
		switch {
		case c.Reason == "" && c.Backend == BackendUDP:
			udpTraffic++
		case c.Reason != "" && c.Backend != BackendUDP:
			t.Errorf("drop counter %+v on a udp node, want backend %s", c.Counter, BackendUDP)
		}
	}
	if udpTraffic != 2 {
		t.Errorf("%d udp-ebpf traffic counters, want tx and rx", udpTraffic)
	}
}

// TestTrafficUDP: two ebpf udp nodes (the kernel udp datapath, flannel0
// and weftd's forwarding loop, as their slow path) carry established flows
// (TCP with GSO, pings) in flannel's udp format on the fast path.
func TestTrafficUDP(t *testing.T) {
	nodes := newTestNodes(t, datapath.ModeUDP)
	for _, n := range nodes {
		n.startEBPF(t, AttachAuto)
		n.addPod(t, n.info.MTU)
	}
	if nodes[0].info.MTU != 1472 {
		t.Errorf("pod MTU %d, want 1472 (uplink 1500 - 28)", nodes[0].info.MTU)
	}
	syncAll(t, nodes)
	for _, n := range nodes {
		n.register(t)
	}
	waitPing(t, nodes[0].pod, nodes[1].podIP)
	checkFastPath(t, nodes, BackendUDP)
}

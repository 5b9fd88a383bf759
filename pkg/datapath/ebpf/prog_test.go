package ebpf

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/test/testns"
)

// The programs run with BPF_PROG_TEST_RUN against this node:
//
//	this node 192.168.10.1, subnet 10.244.1.0/24, pod 10.244.1.5 (veth ifindex 42)
//	vxlan peer   192.168.10.2, subnet 10.244.2.0/24, VTEP remoteVTEP
//	host-gw peer 192.168.10.3, subnet 10.244.3.0/24
var (
	nodeIP       = netip.MustParseAddr("192.168.10.1")
	vxlanNode    = netip.MustParseAddr("192.168.10.2")
	hostGWNode   = netip.MustParseAddr("192.168.10.3")
	localPod     = netip.MustParseAddr("10.244.1.5")
	vxlanPod     = netip.MustParseAddr("10.244.2.7")
	hostGWPod    = netip.MustParseAddr("10.244.3.7")
	localVTEP    = net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 1}
	remoteVTEP   = net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 2}
	bridgeMAC    = net.HardwareAddr{0x02, 0xbb, 0, 0, 0, 1}
	podMAC       = net.HardwareAddr{0x02, 0xcc, 0, 0, 0, 5}
	podIfindex   = uint32(42)
	uplinkIndex  = uint32(7)
	vxlanPort    = uint16(8472)
	testVNI      = uint32(1)
	vxlanSubnet  = netip.MustParsePrefix("10.244.2.0/24")
	hostGWSubnet = netip.MustParsePrefix("10.244.3.0/24")
)

// Verdicts besides tcActRedirect: pass to the kernel, drop.
const (
	tcActOK   = 0
	tcActShot = 2
)

// loadTestObjects loads the programs with unpinned maps filled for the node above.
func loadTestObjects(t testing.TB) *weftObjects {
	t.Helper()
	testns.RequireRoot(t)
	objs, err := loadUnpinned()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	cfg := weftNodeConfig{
		Subnet: be32(netip.MustParseAddr("10.244.1.0")), SubnetLen: 24,
		Network: be32(netip.MustParseAddr("10.244.0.0")), NetworkLen: 16,
		NodeIp: be32(nodeIP), Vni: testVNI, Port: vxlanPort, VtepMac: mac6(localVTEP),
		BridgeMac: mac6(bridgeMAC), UplinkIfindex: uplinkIndex, BridgeIfindex: 3,
	}
	must(t, objs.WeftConfig.Put(configKey, cfg))
	for _, p := range []struct {
		subnet netip.Prefix
		node   netip.Addr
		vtep   net.HardwareAddr
		mode   weftMode
	}{
		{vxlanSubnet, vxlanNode, remoteVTEP, weftModeMODE_VXLAN},
		{hostGWSubnet, hostGWNode, nil, weftModeMODE_HOST_GW},
	} {
		key := weftLpmKey{Prefixlen: uint32(p.subnet.Bits()), Addr: be32(p.subnet.Addr())}
		must(t, objs.WeftPeers.Put(key, weftPeer{NodeIp: be32(p.node), VtepMac: mac6(p.vtep), Mode: uint8(p.mode)}))
		must(t, objs.WeftNodes.Put(be32(p.node), weftKnownNode{Subnet: key.Addr, Prefixlen: key.Prefixlen}))
	}
	must(t, objs.WeftEndpoints.Put(be32(localPod), weftEndpoint{HostIfindex: podIfindex, Mac: mac6(podMAC)}))
	return objs
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// podFrame is a frame a pod sends to its gateway (the bridge).
func podFrame(p ipv4Packet) []byte {
	return ethernet(bridgeMAC, podMAC, etherTypeIPv4, p.bytes())
}

// vxlanFrame is what a peer's kernel vxlan device puts on the wire to us.
func vxlanFrame(outerSrc netip.Addr, vni uint32, inner ipv4Packet) []byte {
	innerFrame := ethernet(localVTEP, remoteVTEP, etherTypeIPv4, inner.bytes())
	return ethernet(net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}, etherTypeIPv4,
		vxlanPacket(outerSrc, nodeIP, vxlanPort, vni, innerFrame))
}

func tcpPacket(src, dst netip.Addr, sport, dport uint16) ipv4Packet {
	return ipv4Packet{src: src, dst: dst, proto: protoTCP, sport: sport, dport: dport, payload: []byte("weft payload")}
}

// counts reads one entry of a counters map.
func counts(t testing.TB, m *ebpf.Map, idx uint32) (packets, bytes uint64) {
	t.Helper()
	all, err := dump[uint32, []weftTraffic](m)
	must(t, err)
	c := slot(m.String(), int(idx), all, datapath.Counter{})
	return c.Packets, c.Bytes
}

func mustRun(t testing.TB, prog *ebpf.Program, in []byte) (uint32, []byte) {
	t.Helper()
	verdict, out, err := run(prog, in)
	must(t, err)
	return verdict, out
}

// checkIPv4Header checks the header checksum of the IPv4 header at h.
func checkIPv4Header(t *testing.T, what string, h []byte) {
	t.Helper()
	if ipChecksum(h[:20]) != 0 {
		t.Errorf("%s: IPv4 header checksum invalid: % x", what, h[:20])
	}
}

func TestEncapVXLAN(t *testing.T) {
	objs := loadTestObjects(t)
	in := podFrame(tcpPacket(localPod, vxlanPod, 40000, 80))
	verdict, out := mustRun(t, objs.WeftPodIngress, in)
	if verdict != tcActRedirect {
		t.Fatalf("verdict %d, want TC_ACT_REDIRECT (%d)", verdict, tcActRedirect)
	}
	if len(out) != len(in)+vxlanOverhead {
		t.Fatalf("encapsulated frame is %d bytes, want %d", len(out), len(in)+vxlanOverhead)
	}
	// Outer Ethernet: MACs left to bpf_redirect_neigh, IPv4.
	if want := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00}; !bytes.Equal(out[:14], want) {
		t.Errorf("outer Ethernet % x, want % x", out[:14], want)
	}
	ip := out[14:34]
	src, dst := nodeIP.As4(), vxlanNode.As4()
	totLen := uint16(len(in) - 14 + vxlanOverhead)
	wantIP := []byte{0x45, 0, byte(totLen >> 8), byte(totLen), 0, 0, 0x40, 0, 64, 17, ip[10], ip[11]}
	wantIP = append(append(wantIP, src[:]...), dst[:]...)
	if !bytes.Equal(ip, wantIP) {
		t.Errorf("outer IPv4 % x, want % x", ip, wantIP)
	}
	checkIPv4Header(t, "outer", ip)
	udp := out[34:42]
	if sport := binary.BigEndian.Uint16(udp); sport < 32768 || sport > 60999 {
		t.Errorf("UDP source port %d outside 32768-60999", sport)
	}
	if want := []byte{0x21, 0x18, byte((totLen - 20) >> 8), byte(totLen - 20), 0, 0}; !bytes.Equal(udp[2:], want) {
		t.Errorf("UDP dst/len/csum % x, want % x (8472, length, checksum 0)", udp[2:], want)
	}
	if want := []byte{0x08, 0, 0, 0, 0, 0, 1, 0}; !bytes.Equal(out[42:50], want) {
		t.Errorf("VXLAN header % x, want % x", out[42:50], want)
	}
	innerEth := out[50:64]
	if !bytes.Equal(innerEth[:6], remoteVTEP) || !bytes.Equal(innerEth[6:12], localVTEP) || innerEth[12] != 0x08 || innerEth[13] != 0 {
		t.Errorf("inner Ethernet % x, want dst %s src %s IPv4", innerEth, remoteVTEP, localVTEP)
	}
	inner := out[64:]
	wantInner := append([]byte(nil), in[14:]...)
	wantInner[8]-- // one routing hop
	if inner[8] != wantInner[8] || !bytes.Equal(inner[12:], wantInner[12:]) || !bytes.Equal(inner[:8], wantInner[:8]) {
		t.Errorf("inner packet changed beyond the TTL:\n got % x\nwant % x", inner, wantInner)
	}
	checkIPv4Header(t, "inner", inner)

	// Same flow, same source port (ECMP must not reorder a flow).
	_, again := mustRun(t, objs.WeftPodIngress, in)
	if !bytes.Equal(again[34:36], udp[:2]) {
		t.Errorf("source port changed for the same flow: % x then % x", udp[:2], again[34:36])
	}
	if p, b := counts(t, objs.WeftTraffic, uint32(weftCounterCOUNTER_VXLAN_TX)); p != 2 || b != uint64(2*len(in)) {
		t.Errorf("vxlan tx counter = %d packets %d bytes, want 2 and %d", p, b, 2*len(in))
	}
}

func TestHostGWTransmit(t *testing.T) {
	objs := loadTestObjects(t)
	in := podFrame(tcpPacket(localPod, hostGWPod, 40000, 80))
	verdict, out := mustRun(t, objs.WeftPodIngress, in)
	if verdict != tcActRedirect {
		t.Fatalf("verdict %d, want TC_ACT_REDIRECT", verdict)
	}
	want := append([]byte(nil), in...)
	want[14+8]--
	binary.BigEndian.PutUint16(want[14+10:], 0)
	binary.BigEndian.PutUint16(want[14+10:], ipChecksum(want[14:34]))
	if !bytes.Equal(out, want) {
		t.Errorf("host-gw frame:\n got % x\nwant % x (only TTL and checksum change)", out, want)
	}
	if p, _ := counts(t, objs.WeftTraffic, uint32(weftCounterCOUNTER_HOST_GW_TX)); p != 1 {
		t.Errorf("host-gw tx counter = %d, want 1", p)
	}
}

func TestPodIngressPassesToStack(t *testing.T) {
	objs := loadTestObjects(t)
	withOptions := withIPOptions(podFrame(tcpPacket(localPod, vxlanPod, 1, 2)))
	fragment := podFrame(tcpPacket(localPod, vxlanPod, 1, 2))
	fragment[14+6] = 0x20 // MF
	ttl1 := tcpPacket(localPod, vxlanPod, 1, 2)
	ttl1.ttl = 1
	truncated := podFrame(tcpPacket(localPod, vxlanPod, 1, 2))
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"outside the pod network", podFrame(tcpPacket(localPod, netip.MustParseAddr("192.0.2.80"), 40001, 443))},
		{"Service IP", podFrame(ipv4Packet{src: localPod, dst: netip.MustParseAddr("10.96.0.10"), proto: protoUDP, sport: 5353, dport: 53})},
		{"same node", podFrame(tcpPacket(localPod, netip.MustParseAddr("10.244.1.9"), 1, 2))},
		{"ARP", ethernet(bridgeMAC, podMAC, 0x0806, make([]byte, 28))},
		{"IPv6", ethernet(bridgeMAC, podMAC, 0x86dd, make([]byte, 60))},
		{"IP options", withOptions},
		{"fragment", fragment},
		{"TTL 1", podFrame(ttl1)},
		{"truncated", truncated[:len(truncated)-4]},
	} {
		verdict, out := mustRun(t, objs.WeftPodIngress, c.in)
		if verdict != tcActOK || !bytes.Equal(out, c.in) {
			t.Errorf("%s: verdict %d (want TC_ACT_OK), frame changed: %v", c.name, verdict, !bytes.Equal(out, c.in))
		}
	}
	for _, idx := range []weftCounter{weftCounterCOUNTER_VXLAN_TX, weftCounterCOUNTER_HOST_GW_TX} {
		if p, _ := counts(t, objs.WeftTraffic, uint32(idx)); p != 0 {
			t.Errorf("counter %d = %d after pass-through only", idx, p)
		}
	}
	// The flow to the outside went through the stack: its pod socket is remembered.
	key := weftFlowKey{PodIp: be32(localPod), PodPort: htons(40001), Proto: protoTCP}
	var seen uint64
	if err := objs.WeftStackflows.Lookup(key, &seen); err != nil || seen == 0 {
		t.Errorf("stack flow of 10.244.1.5:40001/tcp not remembered: %v", err)
	}
}

// withIPOptions inserts 4 bytes of NOP options into the frame's IPv4 header.
func withIPOptions(frame []byte) []byte {
	out := append(append(append([]byte(nil), frame[:34]...), 1, 1, 1, 1), frame[34:]...)
	out[14] = 0x46
	binary.BigEndian.PutUint16(out[16:], binary.BigEndian.Uint16(out[16:])+4)
	binary.BigEndian.PutUint16(out[24:], 0)
	binary.BigEndian.PutUint16(out[24:], ipChecksum(out[14:38]))
	return out
}

// htons returns port as the generated types hold a __be16.
func htons(port uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], port)
	return binary.NativeEndian.Uint16(b[:])
}

func TestDecapVXLAN(t *testing.T) {
	objs := loadTestObjects(t)
	for i, src := range []netip.Addr{vxlanPod, netip.MustParseAddr("10.244.2.0"), vxlanNode} {
		inner := tcpPacket(src, localPod, 40000, 80)
		in := vxlanFrame(vxlanNode, testVNI, inner)
		verdict, out := mustRun(t, objs.WeftUplinkIngress, in)
		if verdict != tcActRedirect {
			t.Fatalf("inner source %s: verdict %d, want TC_ACT_REDIRECT", src, verdict)
		}
		want := ethernet(podMAC, bridgeMAC, etherTypeIPv4, inner.bytes())
		if !bytes.Equal(out, want) {
			t.Errorf("inner source %s: decapsulated frame\n got % x\nwant % x", src, out, want)
		}
		if p, b := counts(t, objs.WeftTraffic, uint32(weftCounterCOUNTER_VXLAN_RX)); p != uint64(i+1) || b != uint64((i+1)*len(want)) {
			t.Errorf("vxlan rx counter = %d packets %d bytes, want %d and %d", p, b, i+1, (i+1)*len(want))
		}
	}
}

func TestUplinkPassesToKernel(t *testing.T) {
	objs := loadTestObjects(t)
	// A pod socket whose traffic went out through the stack (e.g. to a Service).
	key := weftFlowKey{PodIp: be32(localPod), PodPort: htons(45000), Proto: protoTCP}
	must(t, objs.WeftStackflows.Put(key, uint64(1)))
	notForUs := vxlanFrame(vxlanNode, testVNI, tcpPacket(vxlanPod, localPod, 80, 40000))
	copy(notForUs[14+16:], []byte{192, 168, 10, 77})
	binary.BigEndian.PutUint16(notForUs[14+10:], 0)
	binary.BigEndian.PutUint16(notForUs[14+10:], ipChecksum(notForUs[14:34]))
	firstFragment := vxlanFrame(vxlanNode, testVNI, tcpPacket(vxlanPod, localPod, 80, 40000))
	firstFragment[14+6] = 0x20
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"no local endpoint", vxlanFrame(vxlanNode, testVNI, tcpPacket(vxlanPod, netip.MustParseAddr("10.244.1.99"), 80, 40000))},
		{"to the node (flannel.1 address)", vxlanFrame(vxlanNode, testVNI, tcpPacket(vxlanPod, netip.MustParseAddr("10.244.1.0"), 80, 40000))},
		{"reply to a stack flow", vxlanFrame(vxlanNode, testVNI, tcpPacket(vxlanPod, localPod, 80, 45000))},
		{"outer destination not this node", notForUs},
		{"validated first fragment", firstFragment},
		{"host-gw from a vxlan peer's pod", ethernet(bridgeMAC, podMAC, etherTypeIPv4, tcpPacket(vxlanPod, localPod, 1, 2).bytes())},
		{"plain traffic to the node", ethernet(bridgeMAC, podMAC, etherTypeIPv4, tcpPacket(vxlanNode, nodeIP, 1, 22).bytes())},
		{"ARP", ethernet(bridgeMAC, podMAC, 0x0806, make([]byte, 28))},
		{"IPv6", ethernet(bridgeMAC, podMAC, 0x86dd, make([]byte, 60))},
	} {
		verdict, out := mustRun(t, objs.WeftUplinkIngress, c.in)
		if verdict != tcActOK || !bytes.Equal(out, c.in) {
			t.Errorf("%s: verdict %d (want TC_ACT_OK), frame changed: %v", c.name, verdict, !bytes.Equal(out, c.in))
		}
	}
	for r := weftDropReason(0); r < weftDropReasonDROP_MAX; r++ {
		if p, _ := counts(t, objs.WeftDrops, uint32(r)); p != 0 {
			t.Errorf("drop counter %s = %d after valid traffic", dropReasons[r], p)
		}
	}
}

func TestHostGWReceive(t *testing.T) {
	objs := loadTestObjects(t)
	inner := tcpPacket(hostGWPod, localPod, 40000, 80).bytes()
	in := ethernet(net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 3}, etherTypeIPv4, inner)
	verdict, out := mustRun(t, objs.WeftUplinkIngress, in)
	if verdict != tcActRedirect {
		t.Fatalf("verdict %d, want TC_ACT_REDIRECT", verdict)
	}
	if want := ethernet(podMAC, bridgeMAC, etherTypeIPv4, inner); !bytes.Equal(out, want) {
		t.Errorf("delivered frame\n got % x\nwant % x", out, want)
	}
	if p, _ := counts(t, objs.WeftTraffic, uint32(weftCounterCOUNTER_HOST_GW_RX)); p != 1 {
		t.Errorf("host-gw rx counter = %d, want 1", p)
	}
}

func TestUplinkDrops(t *testing.T) {
	objs := loadTestObjects(t)
	valid := func() []byte { return vxlanFrame(vxlanNode, testVNI, tcpPacket(vxlanPod, localPod, 40000, 80)) }
	noFlag := valid()
	noFlag[42] = 0
	inner6 := valid()
	binary.BigEndian.PutUint16(inner6[62:], 0x86dd)
	outerOptions := withIPOptions(valid())
	badUDPLen := valid()
	binary.BigEndian.PutUint16(badUDPLen[38:], 99)
	badInnerLen := valid()
	binary.BigEndian.PutUint16(badInnerLen[64+2:], 30)
	for _, c := range []struct {
		name   string
		in     []byte
		reason weftDropReason
	}{
		{"unknown node", vxlanFrame(netip.MustParseAddr("192.168.10.9"), testVNI, tcpPacket(vxlanPod, localPod, 1, 2)), weftDropReasonDROP_UNKNOWN_NODE},
		{"inner source of another node", vxlanFrame(vxlanNode, testVNI, tcpPacket(hostGWPod, localPod, 1, 2)), weftDropReasonDROP_SPOOFED_SOURCE},
		{"inner source outside the network", vxlanFrame(vxlanNode, testVNI, tcpPacket(netip.MustParseAddr("198.51.100.1"), localPod, 1, 2)), weftDropReasonDROP_SPOOFED_SOURCE},
		{"inner source to a non-endpoint", vxlanFrame(vxlanNode, testVNI, tcpPacket(hostGWPod, netip.MustParseAddr("10.244.1.0"), 1, 2)), weftDropReasonDROP_SPOOFED_SOURCE},
		{"wrong VNI", vxlanFrame(vxlanNode, 2, tcpPacket(vxlanPod, localPod, 1, 2)), weftDropReasonDROP_BAD_VNI},
		{"VNI flag missing", noFlag, weftDropReasonDROP_BAD_VNI},
		{"inner IPv6", inner6, weftDropReasonDROP_INNER_NOT_IPV4},
		{"outer IP options", outerOptions, weftDropReasonDROP_MALFORMED},
		{"UDP length mismatch", badUDPLen, weftDropReasonDROP_MALFORMED},
		{"inner length mismatch", badInnerLen, weftDropReasonDROP_MALFORMED},
	} {
		before, _ := counts(t, objs.WeftDrops, uint32(c.reason))
		verdict, _ := mustRun(t, objs.WeftUplinkIngress, c.in)
		after, _ := counts(t, objs.WeftDrops, uint32(c.reason))
		if verdict != tcActShot || after != before+1 {
			t.Errorf("%s: verdict %d (want TC_ACT_SHOT), %s drops %d -> %d", c.name, verdict, dropReasons[c.reason], before, after)
		}
	}
	if p, _ := counts(t, objs.WeftTraffic, uint32(weftCounterCOUNTER_VXLAN_RX)); p != 0 {
		t.Errorf("vxlan rx counter = %d, want 0: a dropped packet was forwarded", p)
	}
}

// TestUplinkTruncated cuts a valid VXLAN frame at every length: once the UDP
// destination port is readable the packet is ours and must be dropped as
// malformed; shorter it cannot be told from other traffic and goes to the
// kernel untouched. Nothing truncated is ever forwarded.
func TestUplinkTruncated(t *testing.T) {
	objs := loadTestObjects(t)
	full := vxlanFrame(vxlanNode, testVNI, tcpPacket(vxlanPod, localPod, 40000, 80))
	const portEnd = 14 + 20 + 4
	// BPF_PROG_TEST_RUN refuses IPv4 frames shorter than an IPv4 header.
	for n := 14 + 20; n < len(full); n++ {
		in := full[:n]
		before, _ := counts(t, objs.WeftDrops, uint32(weftDropReasonDROP_MALFORMED))
		verdict, out, err := run(objs.WeftUplinkIngress, in)
		if err != nil {
			t.Fatalf("cut at %d bytes: %v", n, err)
		}
		after, _ := counts(t, objs.WeftDrops, uint32(weftDropReasonDROP_MALFORMED))
		switch {
		case n < portEnd && (verdict != tcActOK || !bytes.Equal(out, in) || after != before):
			t.Errorf("cut at %d bytes: verdict %d, malformed drops %d -> %d; want untouched TC_ACT_OK", n, verdict, before, after)
		case n >= portEnd && (verdict != tcActShot || after != before+1):
			t.Errorf("cut at %d bytes: verdict %d, malformed drops %d -> %d; want TC_ACT_SHOT counted", n, verdict, before, after)
		}
	}
	if p, _ := counts(t, objs.WeftTraffic, uint32(weftCounterCOUNTER_VXLAN_RX)); p != 0 {
		t.Errorf("vxlan rx counter = %d: a truncated packet was forwarded", p)
	}
}

// TestStackDeliveredFlowRepliesThroughStack: a flow the host stack delivered
// into a pod (e.g. DNATed from a hostPort) is remembered at the bridge's
// egress, and the pod's replies are not short-cut past conntrack.
func TestStackDeliveredFlowRepliesThroughStack(t *testing.T) {
	objs := loadTestObjects(t)
	delivered := ethernet(podMAC, bridgeMAC, etherTypeIPv4, tcpPacket(vxlanPod, localPod, 41000, 8080).bytes())
	if verdict, out := mustRun(t, objs.WeftPodEgress, delivered); verdict != tcActOK || !bytes.Equal(out, delivered) {
		t.Fatalf("bridge egress: verdict %d, want untouched TC_ACT_OK", verdict)
	}
	reply := podFrame(tcpPacket(localPod, vxlanPod, 8080, 41000))
	if verdict, out := mustRun(t, objs.WeftPodIngress, reply); verdict != tcActOK || !bytes.Equal(out, reply) {
		t.Errorf("reply of a stack-delivered flow: verdict %d, want untouched TC_ACT_OK", verdict)
	}
	other := podFrame(tcpPacket(localPod, vxlanPod, 8080, 41001))
	if verdict, _ := mustRun(t, objs.WeftPodIngress, other); verdict != tcActRedirect {
		t.Errorf("another flow of the same pod port: verdict %d, want the fast path (redirect)", verdict)
	}
}

// TestVethIngress: at a pod's veth only frames for the gateway that go to a
// remote pod are taken; everything else passes unchanged and unremembered
// (the bridge's program decides about it after netfilter).
func TestVethIngress(t *testing.T) {
	objs := loadTestObjects(t)
	if verdict, _ := mustRun(t, objs.WeftVethIngress, podFrame(tcpPacket(localPod, vxlanPod, 40000, 80))); verdict != tcActRedirect {
		t.Errorf("remote pod via the gateway: verdict %d, want TC_ACT_REDIRECT", verdict)
	}
	otherPodMAC := net.HardwareAddr{0x02, 0xcc, 0, 0, 0, 9}
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"bridged to another pod", ethernet(otherPodMAC, podMAC, etherTypeIPv4, tcpPacket(localPod, vxlanPod, 40000, 80).bytes())},
		{"Service IP", podFrame(tcpPacket(localPod, netip.MustParseAddr("10.96.0.10"), 40001, 80))},
		{"outside the pod network", podFrame(tcpPacket(localPod, netip.MustParseAddr("192.0.2.80"), 40002, 443))},
	} {
		verdict, out := mustRun(t, objs.WeftVethIngress, c.in)
		if verdict != tcActOK || !bytes.Equal(out, c.in) {
			t.Errorf("%s: verdict %d (want TC_ACT_OK), frame changed: %v", c.name, verdict, !bytes.Equal(out, c.in))
		}
	}
	if p, _ := counts(t, objs.WeftTraffic, uint32(weftCounterCOUNTER_VXLAN_TX)); p != 1 {
		t.Errorf("vxlan tx counter = %d, want 1", p)
	}
	if flows, err := dump[weftFlowKey, uint64](objs.WeftStackflows); err != nil || len(flows) != 0 {
		t.Errorf("veth program remembered stack flows %v (%v); that is the bridge program's job", flows, err)
	}
	// A flow the stack delivered into the pod replies through the stack.
	reply := weftFlowKey{PodIp: be32(localPod), PeerIp: be32(vxlanPod), PodPort: htons(80), PeerPort: htons(40003), Proto: protoTCP}
	must(t, objs.WeftStackflows.Put(reply, uint64(1)))
	if verdict, _ := mustRun(t, objs.WeftVethIngress, podFrame(tcpPacket(localPod, vxlanPod, 80, 40003))); verdict != tcActOK {
		t.Errorf("reply of a stack-delivered flow: verdict %d, want TC_ACT_OK", verdict)
	}
}

package ebpf

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
)

// The IPv6 half of the BPF_PROG_TEST_RUN tests (prog_test.go): the same
// programs, on the test node's IPv6 addresses.

// vxlan6Overhead is what VXLAN over IPv6 adds to a pod's frame.
const vxlan6Overhead = 70

// Flows of the local pod to the remote pods over IPv6.
var (
	vxlanFlow6  = tcpFlow(localPod6, 40000, vxlanPod6, 80)
	hostGWFlow6 = tcpFlow(localPod6, 40001, hostGWPod6, 80)
)

// TestEncapVXLANv6: an established IPv6 flow's packet is encapsulated as
// flannel-v6.<VNI> sends it: outer IPv6 from the node's IPv6 address to the
// peer's, flow label 0, hop limit 64, the inner packet's ECN bits (CE as
// ECT(0)), UDP to the VXLAN port with a valid checksum, the VNI, the v6
// VTEP MACs, the inner hop limit decremented.
func TestEncapVXLANv6(t *testing.T) {
	e := newProgEnv(t)
	e.track(t, true, vxlanFlow6)
	for _, c := range []struct {
		name          string
		innerTC, want byte // second byte of the inner and outer IPv6 header
	}{
		{"not ECN-capable", 0x00, 0x00},
		{"ECT(1)", 0x10, 0x10},
		{"CE", 0x30, 0x20},
	} {
		in := podFrame(vxlanFlow6.packet())
		in[15] |= c.innerTC
		verdict, out := e.mustRun(t, e.WeftPodIngress, in)
		if verdict != tcActRedirect || len(out) != len(in)+vxlan6Overhead {
			t.Fatalf("%s: verdict %d, %d bytes; want TC_ACT_REDIRECT and %d bytes", c.name, verdict, len(out), len(in)+vxlan6Overhead)
		}
		if want := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x86, 0xdd}; !bytes.Equal(out[:14], want) {
			t.Errorf("%s: outer Ethernet % x, want % x", c.name, out[:14], want)
		}
		outer := out[14:]
		payload := uint16(len(in) - 14 + vxlan6Overhead - 40)
		src, dst := nodeIP6.As16(), vxlanNode6.As16()
		wantIP := append([]byte{0x60, c.want, 0, 0, byte(payload >> 8), byte(payload), 17, 64}, src[:]...)
		wantIP = append(wantIP, dst[:]...)
		if !bytes.Equal(outer[:40], wantIP) {
			t.Errorf("%s: outer IPv6\n got % x\nwant % x", c.name, outer[:40], wantIP)
		}
		udp := outer[40:48]
		if sport := binary.BigEndian.Uint16(udp); sport < 32768 || sport > 60999 {
			t.Errorf("%s: UDP source port %d outside 32768-60999", c.name, sport)
		}
		if binary.BigEndian.Uint16(udp[2:]) != vxlanPort || binary.BigEndian.Uint16(udp[4:]) != payload {
			t.Errorf("%s: UDP header % x, want port %d and length %d", c.name, udp, vxlanPort, payload)
		}
		if binary.BigEndian.Uint16(udp[6:]) == 0 || l6Checksum(outer) != 0 {
			t.Errorf("%s: outer UDP checksum %#04x invalid (IPv6 receivers drop a zero or wrong one)", c.name, binary.BigEndian.Uint16(udp[6:]))
		}
		if want := []byte{0x08, 0, 0, 0, 0, 0, 1, 0}; !bytes.Equal(outer[48:56], want) {
			t.Errorf("%s: VXLAN header % x, want % x", c.name, outer[48:56], want)
		}
		innerEth := outer[56:70]
		if !bytes.Equal(innerEth[:6], remoteVTEP6) || !bytes.Equal(innerEth[6:12], localVTEP6) || binary.BigEndian.Uint16(innerEth[12:]) != etherTypeIPv6 {
			t.Errorf("%s: inner Ethernet % x, want dst %s src %s IPv6", c.name, innerEth, remoteVTEP6, localVTEP6)
		}
		wantInner := append([]byte(nil), in[14:]...)
		wantInner[7]-- // one routing hop
		if !bytes.Equal(outer[70:], wantInner) {
			t.Errorf("%s: inner packet\n got % x\nwant % x (only the hop limit changes)", c.name, outer[70:], wantInner)
		}
	}
	if p, _ := counts(t, e.WeftTraffic, uint32(v6Counter(weftCounterCOUNTER_VXLAN_TX))); p != 3 {
		t.Errorf("IPv6 vxlan tx counter = %d, want 3", p)
	}
	if p, _ := counts(t, e.WeftTraffic, uint32(weftCounterCOUNTER_VXLAN_TX)); p != 0 {
		t.Errorf("IPv4 vxlan tx counter = %d, want 0", p)
	}
}

// TestEncapFallbackv6: an IPv6 packet that would not fit the uplink once
// encapsulated takes the kernel path untouched.
func TestEncapFallbackv6(t *testing.T) {
	e := newProgEnv(t)
	small := e.addDevice(t, "small", 1000)
	e.setConfig(t, func(c *weftNodeConfig) { c.UplinkIfindex = uint32(small) })
	e.track(t, true, vxlanFlow6)
	p := vxlanFlow6.packet()
	p.payload = make([]byte, 1000-vxlan6Overhead-60+1) // IPv6 and TCP headers: 60 bytes
	e.checkPass(t, "too big", e.WeftPodIngress, e.bridge, podFrame(p))
	p.payload = p.payload[:len(p.payload)-1]
	if verdict, _ := e.mustRun(t, e.WeftPodIngress, podFrame(p)); verdict != tcActRedirect {
		t.Errorf("fits: verdict %d, want TC_ACT_REDIRECT", verdict)
	}
}

func TestHostGWv6(t *testing.T) {
	e := newProgEnv(t)
	e.track(t, true, hostGWFlow6)
	in := podFrame(hostGWFlow6.packet())
	verdict, out := e.mustRun(t, e.WeftPodIngress, in)
	want := append([]byte(nil), in...)
	want[14+7]--
	if verdict != tcActRedirect || !bytes.Equal(out, want) {
		t.Errorf("host-gw transmit: verdict %d, frame\n got % x\nwant % x (only the hop limit changes)", verdict, out, want)
	}
	reply := hostGWFlow6.reply()
	verdict, out = e.mustRun(t, e.WeftUplinkIngress, fromPeer(reply))
	if want := delivered(reply.bytes()); verdict != tcActRedirect || !bytes.Equal(out, want) {
		t.Errorf("host-gw receive: verdict %d, frame\n got % x\nwant % x", verdict, out, want)
	}
	for _, c := range []weftCounter{weftCounterCOUNTER_HOST_GW_TX, weftCounterCOUNTER_HOST_GW_RX} {
		if p, _ := counts(t, e.WeftTraffic, uint32(v6Counter(c))); p != 1 {
			t.Errorf("IPv6 counter %d = %d, want 1", c, p)
		}
	}
}

// TestDecapVXLANv6: VXLAN over IPv6 from a known node with an inner source
// in its subnet is decapsulated and delivered into the pod.
func TestDecapVXLANv6(t *testing.T) {
	e := newProgEnv(t)
	e.track(t, true, vxlanFlow6)
	inner := vxlanFlow6.reply()
	verdict, out := e.mustRun(t, e.WeftUplinkIngress, fromPeer(inner))
	if want := delivered(inner.bytes()); verdict != tcActRedirect || !bytes.Equal(out, want) {
		t.Errorf("verdict %d (want TC_ACT_REDIRECT), frame\n got % x\nwant % x", verdict, out, want)
	}
	if p, _ := counts(t, e.WeftTraffic, uint32(v6Counter(weftCounterCOUNTER_VXLAN_RX))); p != 1 {
		t.Errorf("IPv6 vxlan rx counter = %d, want 1", p)
	}
	// Validated, then the kernel's: no conntrack entry, a node address
	// that is not ours.
	e.checkPass(t, "no conntrack entry", e.WeftUplinkIngress, e.uplink, fromPeer(tcpPacket(vxlanPod6, localPod6, 80, 45000)))
	e.checkPass(t, "outer destination not this node", e.WeftUplinkIngress, e.uplink,
		vxlanFrameTo(vxlanNode6, netip.MustParseAddr("fd00:10::77"), testVNI, inner.bytes()))
	if d := dropCounts(t, e.weftObjects); d != (allDrops{}) {
		t.Errorf("drops %v after valid traffic", d)
	}
}

// TestUplinkDropsv6: VXLAN over IPv6 from an unknown node, with an inner
// source outside the sending node's subnet, of the wrong inner family or
// VNI is dropped and counted under the IPv6 reasons.
func TestUplinkDropsv6(t *testing.T) {
	e := newProgEnv(t)
	from := func(src netip.Addr) ipPacket { return tcpPacket(src, localPod6, 1, 2) }
	inner4 := vxlanFrame(vxlanNode6, testVNI, tcpPacket(vxlanPod, localPod, 1, 2))
	e.checkUplinkDrops(t, v6Counter(weftCounterCOUNTER_VXLAN_RX), []uplinkDrop{
		{"unknown node", vxlanFrame(netip.MustParseAddr("fd00:10::9"), testVNI, from(vxlanPod6)), v6Drop(weftDropReasonDROP_UNKNOWN_NODE)},
		{"IPv4 node address mapped as the outer source", vxlanFrame(netip.MustParseAddr("::ffff:192.168.10.2"), testVNI, from(vxlanPod6)),
			v6Drop(weftDropReasonDROP_MALFORMED)},
		{"inner source of another node", vxlanFrame(vxlanNode6, testVNI, from(hostGWPod6)), v6Drop(weftDropReasonDROP_SPOOFED_SOURCE)},
		{"inner source outside the network", vxlanFrame(vxlanNode6, testVNI, from(netip.MustParseAddr("2001:db8::1"))),
			v6Drop(weftDropReasonDROP_SPOOFED_SOURCE)},
		{"inner source the IPv4 peer's pod mapped", vxlanFrame(vxlanNode6, testVNI, from(netip.MustParseAddr("::ffff:10.244.2.7"))),
			v6Drop(weftDropReasonDROP_MALFORMED)},
		{"wrong VNI", vxlanFrame(vxlanNode6, 2, from(vxlanPod6)), v6Drop(weftDropReasonDROP_BAD_VNI)},
		{"inner IPv4", inner4, v6Drop(weftDropReasonDROP_INNER_NOT_IPV4)},
	})
}

// TestPodSourcev6: a registered pod's IPv6 packets must come from its
// address, or a link-local one or :: (neighbour discovery); it may not
// advertise itself as a router or another pod's address.
func TestPodSourcev6(t *testing.T) {
	e := newProgEnv(t)
	linkLocal := netip.MustParseAddr("fe80::cc:5")
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"another pod's source", podFrame(tcpPacket(otherPod6, vxlanPod6, 40000, 80))},
		{"a source outside the pod network", podFrame(tcpPacket(netip.MustParseAddr("2001:db8::5"), vxlanPod6, 40000, 80))},
		{"its IPv4 address mapped", podFrame(tcpPacket(netip.MustParseAddr("::ffff:10.244.1.5"), vxlanPod6, 40000, 80))},
		{"router advertisement", icmp6Frame(linkLocal, 134, netip.Addr{})},
		{"redirect", icmp6Frame(linkLocal, 137, vxlanPod6)},
		{"neighbour advertisement of another pod's address", icmp6Frame(linkLocal, 136, otherPod6)},
	} {
		checkDrop(t, e.ns, e.weftObjects, c.name, e.WeftVethIngress, e.veth, c.in, v6Drop(weftDropReasonDROP_POD_SOURCE))
	}
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"its own address", podFrame(tcpPacket(localPod6, otherPod6, 40000, 80))},
		{"neighbour solicitation", icmp6Frame(linkLocal, 135, otherPod6)},
		{"duplicate address detection (from ::)", icmp6Frame(netip.IPv6Unspecified(), 135, localPod6)},
		{"neighbour advertisement of its address", icmp6Frame(localPod6, 136, localPod6)},
		{"neighbour advertisement of its link-local address", icmp6Frame(linkLocal, 136, linkLocal)},
	} {
		e.checkPass(t, c.name, e.WeftVethIngress, e.veth, c.in)
	}
}

// icmp6Frame is a pod's ICMPv6 message of type typ from src, with target
// (neighbour discovery) after its 4 reserved bytes.
func icmp6Frame(src netip.Addr, typ uint8, target netip.Addr) []byte {
	msg := make([]byte, 8, 24)
	msg[0] = typ
	if target.IsValid() {
		msg = append(msg, target.AsSlice()...)
	}
	dst := netip.MustParseAddr("ff02::1")
	return ethernet(net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, podMAC, etherTypeIPv6, ipv6Header(src, dst, protoICMPv6, 255, msg))
}

// TestPodToTunnelv6: a pod's UDP to the VXLAN port of a node's IPv6
// address, or hidden behind more extension headers than the programs walk,
// is dropped.
func TestPodToTunnelv6(t *testing.T) {
	e := newProgEnv(t)
	udpTo := func(dst netip.Addr) []byte {
		return podFrame(ipPacket{src: localPod6, dst: dst, proto: protoUDP, sport: 5000, dport: vxlanPort})
	}
	// Seven destination options headers (8 bytes each) before UDP.
	hidden := udpTo(vxlanNode6)
	l4 := append([]byte(nil), hidden[14+40:]...)
	var chain []byte
	for i := range 7 {
		next := byte(60)
		if i == 6 {
			next = protoUDP
		}
		chain = append(chain, next, 0, 1, 4, 0, 0, 0, 0) // PadN
	}
	opaque := ethernet(bridgeMAC, podMAC, etherTypeIPv6, ipv6Header(localPod6, vxlanNode6, 60, 64, append(chain, l4...)))
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"this node", udpTo(nodeIP6)},
		{"a known node", udpTo(vxlanNode6)},
		{"behind 7 extension headers", opaque},
	} {
		for _, p := range e.podSide() {
			checkDrop(t, e.ns, e.weftObjects, p.name+": "+c.name, p.prog, p.ifindex, c.in, v6Drop(weftDropReasonDROP_POD_TO_TUNNEL))
		}
	}
	e.checkPass(t, "another port", e.WeftPodIngress, e.bridge,
		podFrame(ipPacket{src: localPod6, dst: vxlanNode6, proto: protoUDP, sport: 5000, dport: 53}))
}

// TestConntrackGatev6: the IPv6 fast path is gated by conntrack as IPv4's
// is (TestConntrackGate), except that NATed IPv6 flows stay on the kernel
// path.
func TestConntrackGatev6(t *testing.T) {
	e := newProgEnv(t)
	ap := netip.AddrPortFrom
	e.ns.MustRun(t, "nft", "add table ip6 wt_nat6 { chain out { type nat hook output priority -100; "+
		"ip6 daddr fd00:96::10 tcp dport 80 dnat to [fd10:244:0:2::7]:81; }; }")
	var (
		tcp       = vxlanFlow6
		udp       = flow{proto: protoUDP, src: ap(localPod6, 5000), dst: ap(vxlanPod6, 5353)}
		toService = flow{proto: protoTCP, src: ap(localPod6, 40020), dst: ap(netip.MustParseAddr("fd00:96::10"), 80),
			server: ap(vxlanPod6, 81)}
		strict    = tcpFlow(localPod6, 40010, vxlanPod6, 80)
		untracked = tcpFlow(localPod6, 40030, vxlanPod6, 80)
	)
	e.track(t, true, tcp, hostGWFlow6, udp)
	for _, entry := range e.track(t, true, toService) {
		if entry.Status&ipsNATMask == 0 {
			t.Fatalf("entry %+v not NATed: the NAT case tests nothing", entry)
		}
	}
	e.track(t, false, strict)
	e.checkGate(t, []gateCase{
		{"TCP established, liberal, vxlan", tcp.packet(), tcp.reply(), true, false},
		{"TCP established, liberal, host-gw", hostGWFlow6.packet(), hostGWFlow6.reply(), true, false},
		{"UDP replied", udp.packet(), udp.reply(), true, false},
		{"TCP established, not liberal", strict.packet(), strict.reply(), false, true},
		{"TCP SYN", withFlags(tcp.packet(), tcpSYN), withFlags(tcp.reply(), tcpSYN|tcpACK), false, false},
		{"no conntrack entry", untracked.packet(), untracked.reply(), false, false},
		{"Service: DNAT stays on the kernel path", toService.packet(), toService.reply(), false, false},
	})
}

// TestMapKeys: the maps hold IPv4 addresses mapped into IPv6, IPv4
// prefixes 96 bits longer; decoding gives the plain address back.
func TestMapKeys(t *testing.T) {
	for _, c := range []struct {
		prefix string
		bits   uint32
		addr   [16]byte
	}{
		{"10.244.2.0/24", 120, [16]byte{10: 0xff, 11: 0xff, 12: 10, 13: 244, 14: 2}},
		{"0.0.0.0/0", 96, [16]byte{10: 0xff, 11: 0xff}},
		{"fd10:244:0:2::/64", 64, [16]byte{0xfd, 0x10, 0x02, 0x44, 0, 0, 0, 2}},
		{"10.244.2.7/24", 120, [16]byte{10: 0xff, 11: 0xff, 12: 10, 13: 244, 14: 2}}, // masked
	} {
		p := netip.MustParsePrefix(c.prefix)
		k := lpmKey(p)
		if k.Prefixlen != c.bits || k.Addr.B != c.addr {
			t.Errorf("lpmKey(%s) = %d % x, want %d % x", p, k.Prefixlen, k.Addr.B, c.bits, c.addr)
		}
		if got := prefixOfKey(k); got != p.Masked() {
			t.Errorf("prefixOfKey(lpmKey(%s)) = %s", p, got)
		}
	}
	for _, a := range []netip.Addr{nodeIP, nodeIP6, netip.MustParseAddr("::ffff:1.2.3.4")} {
		if got := addrOf(addrKey(a)); got != a.Unmap() {
			t.Errorf("addrOf(addrKey(%s)) = %s", a, got)
		}
	}
	if familyOf(nodeIP) != weftFamilyFAMILY_IPV4 || familyOf(nodeIP6) != weftFamilyFAMILY_IPV6 {
		t.Error("familyOf confuses the families")
	}
	if optionalAddr(weftAddr{}).IsValid() || prefixOf(weftAddr{}, 0).IsValid() {
		t.Error("an all-zero address decodes to a valid one")
	}
	// A ring buffer record of an IPv6 flow.
	rec := weftFlow{Saddr: addrKey(localPod6), Daddr: addrKey(vxlanPod6), Sport: htons(40000), Dport: htons(80), Proto: protoTCP}
	raw, err := binary.Append(nil, binary.NativeEndian, rec)
	must(t, err)
	tuple, err := decodeFlow(raw)
	if want := vxlanFlow6.tuple(); err != nil || tuple != want {
		t.Errorf("decodeFlow = %v, %v; want %v", tuple, err, want)
	}
}

// TestRegisterDualStack: a dual-stack pod registers both addresses (the CNI
// plugin calls once per address); its pod source entry holds both, and
// unregistering one keeps the other.
func TestRegisterDualStack(t *testing.T) {
	dir := tempBPFFS(t)
	objs, _, err := loadPinned(dir)
	must(t, err)
	objs.Close()
	for _, ip := range []netip.Addr{localPod, localPod6} {
		must(t, RegisterEndpoint(dir, Endpoint{IP: ip, HostIfindex: 7, MAC: podMAC}))
	}
	eps, err := ReadEndpoints(dir)
	must(t, err)
	if len(eps) != 2 || eps[0].IP != localPod || eps[1].IP != localPod6 || eps[1].HostIfindex != 7 {
		t.Errorf("endpoints %+v, want %s and %s on veth 7", eps, localPod, localPod6)
	}
	pods, err := ReadPods(dir)
	must(t, err)
	if len(pods) != 1 || pods[0].IP != localPod || pods[0].IPv6 != localPod6 || pods[0].MAC.String() != podMAC.String() {
		t.Errorf("pods %+v, want veth 7 with %s and %s", pods, localPod, localPod6)
	}
	must(t, UnregisterEndpoint(dir, localPod))
	pods, err = ReadPods(dir)
	must(t, err)
	if len(pods) != 1 || pods[0].IP.IsValid() || pods[0].IPv6 != localPod6 {
		t.Errorf("pods after unregistering %s: %+v, want only %s", localPod, pods, localPod6)
	}
	must(t, UnregisterEndpoint(dir, localPod6))
	if pods, err = ReadPods(dir); err != nil || len(pods) != 0 {
		t.Errorf("pods after unregistering both: %+v, %v; want none", pods, err)
	}
	if err := RegisterEndpoint(dir, Endpoint{IP: netip.MustParseAddr("::ffff:10.244.1.5"), HostIfindex: 7, MAC: podMAC}); err == nil {
		t.Error("an IPv4-mapped address registered: want an error")
	}
}

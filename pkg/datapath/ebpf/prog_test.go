package ebpf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/test/testns"
)

// The programs run with BPF_PROG_TEST_RUN against this node (progEnv):
//
//	this node 192.168.10.1, subnet 10.244.1.0/24, pod 10.244.1.5 (behind vethpod)
//	vxlan peer   192.168.10.2, subnet 10.244.2.0/24, VTEP remoteVTEP
//	host-gw peer 192.168.10.3, subnet 10.244.3.0/24
var (
	nodeIP       = netip.MustParseAddr("192.168.10.1")
	vxlanNode    = netip.MustParseAddr("192.168.10.2")
	hostGWNode   = netip.MustParseAddr("192.168.10.3")
	localPod     = netip.MustParseAddr("10.244.1.5")
	otherPod     = netip.MustParseAddr("10.244.1.9")
	vxlanPod     = netip.MustParseAddr("10.244.2.7")
	hostGWPod    = netip.MustParseAddr("10.244.3.7")
	localVTEP    = net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 1}
	remoteVTEP   = net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 2}
	bridgeMAC    = net.HardwareAddr{0x02, 0xbb, 0, 0, 0, 1}
	podMAC       = net.HardwareAddr{0x02, 0xcc, 0, 0, 0, 5}
	peerMAC      = net.HardwareAddr{2, 0, 0, 0, 0, 3}
	vxlanPort    = uint16(8472)
	testVNI      = uint32(1)
	vxlanSubnet  = netip.MustParsePrefix("10.244.2.0/24")
	hostGWSubnet = netip.MustParsePrefix("10.244.3.0/24")
)

// The same node's IPv6 half:
//
//	this node fd00:10::1, subnet fd10:244:0:1::/64, pod fd10:244:0:1::5
//	vxlan peer   fd00:10::2, subnet fd10:244:0:2::/64, VTEP remoteVTEP6
//	host-gw peer fd00:10::3, subnet fd10:244:0:3::/64
var (
	nodeIP6       = netip.MustParseAddr("fd00:10::1")
	vxlanNode6    = netip.MustParseAddr("fd00:10::2")
	hostGWNode6   = netip.MustParseAddr("fd00:10::3")
	network6      = netip.MustParsePrefix("fd10:244::/56")
	ownSubnet6    = netip.MustParsePrefix("fd10:244:0:1::/64")
	vxlanSubnet6  = netip.MustParsePrefix("fd10:244:0:2::/64")
	hostGWSubnet6 = netip.MustParsePrefix("fd10:244:0:3::/64")
	localPod6     = netip.MustParseAddr("fd10:244:0:1::5")
	otherPod6     = netip.MustParseAddr("fd10:244:0:1::9")
	vxlanPod6     = netip.MustParseAddr("fd10:244:0:2::7")
	hostGWPod6    = netip.MustParseAddr("fd10:244:0:3::7")
	localVTEP6    = net.HardwareAddr{0x02, 0xaa, 0, 0, 6, 1}
	remoteVTEP6   = net.HardwareAddr{0x02, 0xaa, 0, 0, 6, 2}
)

// Flows of the local pod to the remote pods that tests give conntrack
// entries (progEnv.track).
var (
	vxlanFlow  = tcpFlow(localPod, 40000, vxlanPod, 80)
	hostGWFlow = tcpFlow(localPod, 40001, hostGWPod, 80)
)

// The programs' verdicts: pass to the kernel, drop, forward.
const (
	tcActOK       = 0
	tcActShot     = 2
	tcActRedirect = 7
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// podFrame is a frame a pod sends to its gateway (the bridge).
func podFrame(p ipPacket) []byte {
	return ethernet(bridgeMAC, podMAC, p.etherType(), p.bytes())
}

// vxlanFrame is what a peer's kernel vxlan device (flannel.1, or for an
// IPv6 outerSrc flannel-v6.1) puts on the wire to us.
func vxlanFrame(outerSrc netip.Addr, vni uint32, inner ipPacket) []byte {
	to := nodeIP
	if outerSrc.Is6() {
		to = nodeIP6
	}
	return vxlanFrameTo(outerSrc, to, vni, inner.bytes())
}

// vxlanFrameTo is vxlanFrame to outerDst with the inner IP packet inner (of
// outerSrc's family).
func vxlanFrameTo(outerSrc, outerDst netip.Addr, vni uint32, inner []byte) []byte {
	innerFrame := ethernet(localVTEP, remoteVTEP, etherTypeOf(inner), inner)
	return ethernet(net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}, ipPacket{src: outerSrc}.etherType(),
		vxlanPacket(outerSrc, outerDst, vxlanPort, vni, innerFrame))
}

// etherTypeOf is the Ethernet type of the IP packet p.
func etherTypeOf(p []byte) uint16 {
	if len(p) > 0 && p[0]>>4 == 6 {
		return etherTypeIPv6
	}
	return etherTypeIPv4
}

// fromPeer is how p from a remote pod reaches the uplink: VXLAN from its
// node, or routed from a host-gw peer.
func fromPeer(p ipPacket) []byte {
	switch {
	case hostGWSubnet.Contains(p.src), hostGWSubnet6.Contains(p.src):
		return ethernet(bridgeMAC, peerMAC, p.etherType(), p.bytes())
	case p.src.Is6():
		return vxlanFrame(vxlanNode6, testVNI, p)
	}
	return vxlanFrame(vxlanNode, testVNI, p)
}

// delivered is the frame the programs hand to the local pod for p.
func delivered(p []byte) []byte {
	return ethernet(podMAC, bridgeMAC, etherTypeOf(p), p)
}

// tcpPacket is a TCP ACK with payload from src to dst.
func tcpPacket(src, dst netip.Addr, sport, dport uint16) ipPacket {
	return tcpFlow(src, sport, dst, dport).packet()
}

// counts reads one entry of a counters map.
func counts(t testing.TB, m *ebpf.Map, idx uint32) (packets, bytes uint64) {
	t.Helper()
	all, err := dump[uint32, []weftTraffic](m)
	must(t, err)
	c := slot(m.String(), int(idx), all, datapath.Counter{})
	return c.Packets, c.Bytes
}

// v6Drop is the drops map's index of reason for IPv6 packets.
func v6Drop(reason weftDropReason) weftDropReason {
	return weftDropReason(dropIndex(weftFamilyFAMILY_IPV6, reason))
}

// v6Counter is the traffic map's index of c for IPv6 packets.
func v6Counter(c weftCounter) weftCounter {
	return weftCounter(trafficIndex(weftFamilyFAMILY_IPV6, c))
}

// allDrops are the drop counters of both families.
type allDrops [int(weftFamilyFAMILY_MAX) * int(weftDropReasonDROP_SLOTS)]uint64

// dropCounts reads the drop counters of objs, by index (v6Drop: IPv6's).
func dropCounts(t testing.TB, objs *weftObjects) allDrops {
	t.Helper()
	all, err := dump[uint32, []weftTraffic](objs.WeftDrops)
	must(t, err)
	var out allDrops
	for r := range out {
		out[r] = slot(MapDrops, r, all, datapath.Counter{}).Packets
	}
	return out
}

// checkDrop runs prog on in from the interface ifindex of ns and checks
// that it is dropped and counted under reason, and under no other.
func checkDrop(t *testing.T, ns *testns.NS, objs *weftObjects, what string, prog *ebpf.Program, ifindex int, in []byte, reason weftDropReason) {
	t.Helper()
	before := dropCounts(t, objs)
	verdict, _, err := testRun(ns, prog, ifindex, in)
	must(t, err)
	want := before
	want[reason]++
	if got := dropCounts(t, objs); verdict != tcActShot || got != want {
		t.Errorf("%s: verdict %d (want TC_ACT_SHOT), drops %v -> %v; want one more %s", what, verdict, before, got,
			dropReasons[reason%weftDropReasonDROP_SLOTS])
	}
}

// checkPass runs prog on in and checks it goes to the kernel untouched.
func (e *progEnv) checkPass(t *testing.T, what string, prog *ebpf.Program, ifindex int, in []byte) {
	t.Helper()
	verdict, out, err := e.runOn(prog, ifindex, in)
	must(t, err)
	if verdict != tcActOK || !bytes.Equal(out, in) {
		t.Errorf("%s: verdict %d (want TC_ACT_OK), frame changed: %v", what, verdict, !bytes.Equal(out, in))
	}
}

// checkIPv4Header checks the header checksum of the IPv4 header at h.
func checkIPv4Header(t *testing.T, what string, h []byte) {
	t.Helper()
	if ipChecksum(h[:20]) != 0 {
		t.Errorf("%s: IPv4 header checksum invalid: % x", what, h[:20])
	}
}

// TestEncapVXLAN: an established flow's packet is encapsulated as flannel's
// kernel vxlan device does it, with the outer DF clear and a random IP ID.
func TestEncapVXLAN(t *testing.T) {
	e := newProgEnv(t)
	e.track(t, true, vxlanFlow)
	in := podFrame(vxlanFlow.packet())
	verdict, out := e.mustRun(t, e.WeftPodIngress, in)
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
	// Any ID; flags and fragment offset 0: DF clear, as flannel's vxlan device leaves it.
	wantIP := []byte{0x45, 0, byte(totLen >> 8), byte(totLen), ip[4], ip[5], 0, 0, 64, 17, ip[10], ip[11]}
	wantIP = append(append(wantIP, src[:]...), dst[:]...)
	if !bytes.Equal(ip, wantIP) {
		t.Errorf("outer IPv4 % x, want % x (DF clear)", ip, wantIP)
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

	// Same flow, same source port (ECMP must not reorder a flow); the
	// outer IDs differ (fragments of different packets must not mix).
	ids := map[uint16]bool{binary.BigEndian.Uint16(ip[4:]): true}
	for range 3 {
		_, again := e.mustRun(t, e.WeftPodIngress, in)
		if !bytes.Equal(again[34:36], udp[:2]) {
			t.Errorf("source port changed for the same flow: % x then % x", udp[:2], again[34:36])
		}
		ids[binary.BigEndian.Uint16(again[18:])] = true
	}
	if len(ids) < 2 {
		t.Errorf("outer IPv4 ID %v for 4 packets: want random IDs", ids)
	}
	if p, b := counts(t, e.WeftTraffic, uint32(weftCounterCOUNTER_VXLAN_TX)); p != 4 || b != uint64(4*len(in)) {
		t.Errorf("vxlan tx counter = %d packets %d bytes, want 4 and %d", p, b, 4*len(in))
	}
}

func TestHostGWTransmit(t *testing.T) {
	e := newProgEnv(t)
	e.track(t, true, hostGWFlow)
	in := podFrame(hostGWFlow.packet())
	verdict, out := e.mustRun(t, e.WeftPodIngress, in)
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
	if p, _ := counts(t, e.WeftTraffic, uint32(weftCounterCOUNTER_HOST_GW_TX)); p != 1 {
		t.Errorf("host-gw tx counter = %d, want 1", p)
	}
}

// TestEncapFallback: a packet that would not fit the uplink's MTU once
// encapsulated takes the kernel path untouched (its TTL too: the kernel
// decrements it once), which fragments it or tells the pod; one that fits
// is encapsulated.
func TestEncapFallback(t *testing.T) {
	e := newProgEnv(t)
	e.checkEncapFallback(t, vxlanOverhead, weftCounterCOUNTER_VXLAN_TX)
}

// checkEncapFallback is TestEncapFallback for the vxlan peer's flow, with
// the encapsulation's overhead and its transmit counter tx.
func (e *progEnv) checkEncapFallback(t *testing.T, overhead int, tx weftCounter) {
	t.Helper()
	const mtu = 1000
	small := e.addDevice(t, "small", mtu)
	e.setConfig(t, func(c *weftNodeConfig) { c.UplinkIfindex = uint32(small) })
	e.track(t, true, vxlanFlow)
	sized := func(ipLen int) []byte {
		p := vxlanFlow.packet()
		p.payload = make([]byte, ipLen-40)
		return podFrame(p)
	}
	fits, tooBig := sized(mtu-overhead), sized(mtu-overhead+1)
	for _, p := range e.podSide() {
		verdict, out, err := e.runOn(p.prog, p.ifindex, fits)
		if err != nil || verdict != tcActRedirect || len(out) != len(fits)+overhead {
			t.Errorf("%s: %d bytes: verdict %d (%v), %d bytes out; want encapsulated", p.name, len(fits), verdict, err, len(out))
		}
		e.checkPass(t, fmt.Sprintf("%s: %d bytes", p.name, len(tooBig)), p.prog, p.ifindex, tooBig)
	}
	if n, _ := counts(t, e.WeftTraffic, uint32(tx)); n != 2 {
		t.Errorf("tx counter %d = %d, want 2 (the packets that fit)", tx, n)
	}
}

func TestPodIngressPassesToStack(t *testing.T) {
	e := newProgEnv(t)
	// Established flows: what does not qualify must not take them.
	e.track(t, true, tcpFlow(localPod, 40001, otherPod, 2), vxlanFlow)
	withOptions := withIPOptions(podFrame(vxlanFlow.packet()))
	fragment := podFrame(vxlanFlow.packet())
	fragment[14+6] = 0x20 // MF
	ttl1 := vxlanFlow.packet()
	ttl1.ttl = 1
	truncated := podFrame(vxlanFlow.packet())
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"outside the pod network", podFrame(tcpPacket(localPod, netip.MustParseAddr("192.0.2.80"), 40001, 443))},
		{"Service IP", podFrame(ipPacket{src: localPod, dst: netip.MustParseAddr("10.96.0.10"), proto: protoUDP, sport: 5353, dport: 53})},
		{"same node", podFrame(tcpPacket(localPod, otherPod, 40001, 2))},
		{"ARP", ethernet(bridgeMAC, podMAC, 0x0806, make([]byte, 28))},
		{"IPv6", ethernet(bridgeMAC, podMAC, 0x86dd, make([]byte, 60))},
		{"IP options", withOptions},
		{"fragment", fragment},
		{"TTL 1", podFrame(ttl1)},
		{"truncated", truncated[:len(truncated)-4]},
	} {
		e.checkPass(t, c.name, e.WeftPodIngress, e.bridge, c.in)
	}
	for _, idx := range []weftCounter{weftCounterCOUNTER_VXLAN_TX, weftCounterCOUNTER_HOST_GW_TX} {
		if p, _ := counts(t, e.WeftTraffic, uint32(idx)); p != 0 {
			t.Errorf("counter %d = %d after pass-through only", idx, p)
		}
	}
	if r := e.requested(t); len(r) != 0 {
		t.Errorf("conntrack offload requested for %v: no flow qualified", r)
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

// TestDecapVXLAN: replies of established flows from the peer's pods, its
// subnet's first address (its flannel.1) and the node itself are
// decapsulated and delivered.
func TestDecapVXLAN(t *testing.T) {
	e := newProgEnv(t)
	flows := []flow{vxlanFlow, tcpFlow(localPod, 40002, vxlanSubnet.Addr(), 80), tcpFlow(localPod, 40003, vxlanNode, 80)}
	e.track(t, true, flows...)
	for i, f := range flows {
		inner := f.reply()
		verdict, out := e.mustRun(t, e.WeftUplinkIngress, vxlanFrame(vxlanNode, testVNI, inner))
		if verdict != tcActRedirect {
			t.Fatalf("inner source %s: verdict %d, want TC_ACT_REDIRECT", inner.src, verdict)
		}
		want := delivered(inner.bytes())
		if !bytes.Equal(out, want) {
			t.Errorf("inner source %s: decapsulated frame\n got % x\nwant % x", inner.src, out, want)
		}
		if p, b := counts(t, e.WeftTraffic, uint32(weftCounterCOUNTER_VXLAN_RX)); p != uint64(i+1) || b != uint64((i+1)*len(want)) {
			t.Errorf("vxlan rx counter = %d packets %d bytes, want %d and %d", p, b, i+1, (i+1)*len(want))
		}
	}
}

// TestDecapPadded: an inner frame padded to Ethernet's minimum (a short
// packet from a peer's kernel) is decapsulated with its padding, not
// dropped as malformed.
func TestDecapPadded(t *testing.T) {
	e := newProgEnv(t)
	e.track(t, true, vxlanFlow)
	ack := vxlanFlow.reply()
	ack.payload = nil
	inner := ack.bytes()
	padded := append(append([]byte(nil), inner...), make([]byte, 60-14-len(inner))...)
	verdict, out := e.mustRun(t, e.WeftUplinkIngress, vxlanFrameTo(vxlanNode, nodeIP, testVNI, padded))
	if want := delivered(padded); verdict != tcActRedirect || !bytes.Equal(out, want) {
		t.Errorf("padded inner frame: verdict %d (want TC_ACT_REDIRECT), frame\n got % x\nwant % x", verdict, out, want)
	}
	if d := dropCounts(t, e.weftObjects); d != (allDrops{}) {
		t.Errorf("drops %v after a padded frame", d)
	}
}

func TestUplinkPassesToKernel(t *testing.T) {
	e := newProgEnv(t)
	e.track(t, true, vxlanFlow)
	notForUs := vxlanFrameTo(vxlanNode, netip.MustParseAddr("192.168.10.77"), testVNI, vxlanFlow.reply().bytes())
	firstFragment := vxlanFrame(vxlanNode, testVNI, vxlanFlow.reply())
	firstFragment[14+6] = 0x20
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"no local endpoint", vxlanFrame(vxlanNode, testVNI, tcpPacket(vxlanPod, netip.MustParseAddr("10.244.1.99"), 80, 40000))},
		{"to the node (flannel.1 address)", vxlanFrame(vxlanNode, testVNI, tcpPacket(vxlanPod, netip.MustParseAddr("10.244.1.0"), 80, 40000))},
		{"no conntrack entry", vxlanFrame(vxlanNode, testVNI, tcpPacket(vxlanPod, localPod, 80, 45000))},
		{"outer destination not this node", notForUs},
		{"validated first fragment", firstFragment},
		{"host-gw from a vxlan peer's pod", ethernet(bridgeMAC, podMAC, etherTypeIPv4, vxlanFlow.reply().bytes())},
		{"plain traffic to the node", ethernet(bridgeMAC, podMAC, etherTypeIPv4, tcpPacket(vxlanNode, nodeIP, 1, 22).bytes())},
		{"ARP", ethernet(bridgeMAC, podMAC, 0x0806, make([]byte, 28))},
		{"IPv6", ethernet(bridgeMAC, podMAC, 0x86dd, make([]byte, 60))},
	} {
		e.checkPass(t, c.name, e.WeftUplinkIngress, e.uplink, c.in)
	}
	if d := dropCounts(t, e.weftObjects); d != (allDrops{}) {
		t.Errorf("drops %v after valid traffic", d)
	}
}

func TestHostGWReceive(t *testing.T) {
	e := newProgEnv(t)
	e.track(t, true, hostGWFlow)
	inner := hostGWFlow.reply().bytes()
	verdict, out := e.mustRun(t, e.WeftUplinkIngress, fromPeer(hostGWFlow.reply()))
	if verdict != tcActRedirect {
		t.Fatalf("verdict %d, want TC_ACT_REDIRECT", verdict)
	}
	if want := delivered(inner); !bytes.Equal(out, want) {
		t.Errorf("delivered frame\n got % x\nwant % x", out, want)
	}
	if p, _ := counts(t, e.WeftTraffic, uint32(weftCounterCOUNTER_HOST_GW_RX)); p != 1 {
		t.Errorf("host-gw rx counter = %d, want 1", p)
	}
}

func TestUplinkDrops(t *testing.T) {
	e := newProgEnv(t)
	valid := func() []byte { return vxlanFrame(vxlanNode, testVNI, tcpPacket(vxlanPod, localPod, 40000, 80)) }
	noFlag := valid()
	noFlag[42] = 0
	inner6 := valid()
	binary.BigEndian.PutUint16(inner6[62:], 0x86dd)
	outerOptions := withIPOptions(valid())
	badUDPLen := valid()
	binary.BigEndian.PutUint16(badUDPLen[38:], 99)
	innerBeyond := valid()
	binary.BigEndian.PutUint16(innerBeyond[64+2:], uint16(len(innerBeyond)-64+1))
	innerShort := valid()
	binary.BigEndian.PutUint16(innerShort[64+2:], 19)
	e.checkUplinkDrops(t, weftCounterCOUNTER_VXLAN_RX, []uplinkDrop{
		{"unknown node", vxlanFrame(netip.MustParseAddr("192.168.10.9"), testVNI, tcpPacket(vxlanPod, localPod, 1, 2)), weftDropReasonDROP_UNKNOWN_NODE},
		{"inner source of another node", vxlanFrame(vxlanNode, testVNI, tcpPacket(hostGWPod, localPod, 1, 2)), weftDropReasonDROP_SPOOFED_SOURCE},
		{"inner source outside the network", vxlanFrame(vxlanNode, testVNI, tcpPacket(netip.MustParseAddr("198.51.100.1"), localPod, 1, 2)), weftDropReasonDROP_SPOOFED_SOURCE},
		{"inner source to a non-endpoint", vxlanFrame(vxlanNode, testVNI, tcpPacket(hostGWPod, netip.MustParseAddr("10.244.1.0"), 1, 2)), weftDropReasonDROP_SPOOFED_SOURCE},
		{"inner source another node's address", vxlanFrame(vxlanNode, testVNI, tcpPacket(hostGWNode, localPod, 1, 2)), weftDropReasonDROP_SPOOFED_SOURCE},
		{"wrong VNI", vxlanFrame(vxlanNode, 2, tcpPacket(vxlanPod, localPod, 1, 2)), weftDropReasonDROP_BAD_VNI},
		{"VNI flag missing", noFlag, weftDropReasonDROP_BAD_VNI},
		{"inner IPv6", inner6, weftDropReasonDROP_INNER_NOT_IPV4},
		{"outer IP options", outerOptions, weftDropReasonDROP_MALFORMED},
		{"UDP length mismatch", badUDPLen, weftDropReasonDROP_MALFORMED},
		{"inner length beyond the frame", innerBeyond, weftDropReasonDROP_MALFORMED},
		{"inner length below its header", innerShort, weftDropReasonDROP_MALFORMED},
	})
}

// uplinkDrop is a frame the uplink program must drop, and why.
type uplinkDrop struct {
	name   string
	in     []byte
	reason weftDropReason
}

// checkUplinkDrops checks that the uplink program drops each frame for its
// reason and that the receive counter rx counts none of them.
func (e *progEnv) checkUplinkDrops(t *testing.T, rx weftCounter, drops []uplinkDrop) {
	t.Helper()
	for _, c := range drops {
		checkDrop(t, e.ns, e.weftObjects, c.name, e.WeftUplinkIngress, e.uplink, c.in, c.reason)
	}
	if p, _ := counts(t, e.WeftTraffic, uint32(rx)); p != 0 {
		t.Errorf("rx counter %d = %d, want 0: a dropped packet was forwarded", rx, p)
	}
}

// TestUplinkTruncated cuts a valid VXLAN frame at every length: once the UDP
// destination port is readable the packet is ours and must be dropped as
// malformed; shorter it cannot be told from other traffic and goes to the
// kernel untouched. Nothing truncated is ever forwarded.
func TestUplinkTruncated(t *testing.T) {
	e := newProgEnv(t)
	e.track(t, true, vxlanFlow)
	full := vxlanFrame(vxlanNode, testVNI, vxlanFlow.reply())
	const portEnd = 14 + 20 + 4
	// BPF_PROG_TEST_RUN refuses IPv4 frames shorter than an IPv4 header.
	for n := 14 + 20; n < len(full); n++ {
		in := full[:n]
		before, _ := counts(t, e.WeftDrops, uint32(weftDropReasonDROP_MALFORMED))
		verdict, out, err := e.run(e.WeftUplinkIngress, in)
		if err != nil {
			t.Fatalf("cut at %d bytes: %v", n, err)
		}
		after, _ := counts(t, e.WeftDrops, uint32(weftDropReasonDROP_MALFORMED))
		switch {
		case n < portEnd && (verdict != tcActOK || !bytes.Equal(out, in) || after != before):
			t.Errorf("cut at %d bytes: verdict %d, malformed drops %d -> %d; want untouched TC_ACT_OK", n, verdict, before, after)
		case n >= portEnd && (verdict != tcActShot || after != before+1):
			t.Errorf("cut at %d bytes: verdict %d, malformed drops %d -> %d; want TC_ACT_SHOT counted", n, verdict, before, after)
		}
	}
	if p, _ := counts(t, e.WeftTraffic, uint32(weftCounterCOUNTER_VXLAN_RX)); p != 0 {
		t.Errorf("vxlan rx counter = %d: a truncated packet was forwarded", p)
	}
}

// TestVethIngress: at a pod's veth only frames for the gateway that go to a
// remote pod are taken; everything else passes unchanged (the bridge and
// the stack decide about it).
func TestVethIngress(t *testing.T) {
	e := newProgEnv(t)
	e.track(t, true, vxlanFlow)
	if verdict, _ := e.mustRun(t, e.WeftVethIngress, podFrame(vxlanFlow.packet())); verdict != tcActRedirect {
		t.Errorf("remote pod via the gateway: verdict %d, want TC_ACT_REDIRECT", verdict)
	}
	otherPodMAC := net.HardwareAddr{0x02, 0xcc, 0, 0, 0, 9}
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"bridged to another pod", ethernet(otherPodMAC, podMAC, etherTypeIPv4, vxlanFlow.packet().bytes())},
		{"Service IP", podFrame(tcpPacket(localPod, netip.MustParseAddr("10.96.0.10"), 40001, 80))},
		{"outside the pod network", podFrame(tcpPacket(localPod, netip.MustParseAddr("192.0.2.80"), 40002, 443))},
	} {
		e.checkPass(t, c.name, e.WeftVethIngress, e.veth, c.in)
	}
	if p, _ := counts(t, e.WeftTraffic, uint32(weftCounterCOUNTER_VXLAN_TX)); p != 1 {
		t.Errorf("vxlan tx counter = %d, want 1", p)
	}
}

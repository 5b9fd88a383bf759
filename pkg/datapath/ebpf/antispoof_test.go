package ebpf

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
)

// TestPodSource: a registered pod's veth drops frames whose source MAC,
// IPv4 source or ARP sender is not the pod's, counted as pod_source; the
// pod's own frames pass, and a veth whose pod is not registered (yet) is
// not checked: its traffic takes the kernel path.
func TestPodSource(t *testing.T) {
	e := newProgEnv(t)
	e.track(t, true, vxlanFlow)
	var (
		otherMAC   = net.HardwareAddr{0x02, 0xcc, 0, 0, 0, 9}
		gateway    = netip.MustParseAddr("10.244.1.1")
		own        = podFrame(vxlanFlow.packet())
		spoofedIP  = podFrame(tcpPacket(otherPod, vxlanPod, 40000, 80))
		spoofedMAC = ethernet(bridgeMAC, otherMAC, etherTypeIPv4, vxlanFlow.packet().bytes())
	)
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"another pod's source IP", spoofedIP},
		{"a source IP outside the pod network", podFrame(tcpPacket(netip.MustParseAddr("192.0.2.1"), vxlanPod, 40000, 80))},
		{"another source MAC", spoofedMAC},
		{"ARP with another pod's sender IP", arpRequest(podMAC, podMAC, otherPod, gateway)},
		{"ARP with another sender MAC", arpRequest(podMAC, otherMAC, localPod, gateway)},
		{"ARP from another source MAC", arpRequest(otherMAC, podMAC, localPod, gateway)},
	} {
		checkDrop(t, e.ns, e.weftObjects, c.name, e.WeftVethIngress, e.veth, c.in, weftDropReasonDROP_POD_SOURCE)
	}
	own6 := tcpPacket(localPod6, otherPod6, 40000, 80)
	checkDrop(t, e.ns, e.weftObjects, "IPv6 from another MAC", e.WeftVethIngress, e.veth,
		ethernet(bridgeMAC, otherMAC, etherTypeIPv6, own6.bytes()), v6Drop(weftDropReasonDROP_POD_SOURCE))
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"ARP", arpRequest(podMAC, podMAC, localPod, gateway)},
		{"ARP probe (sender 0.0.0.0)", arpRequest(podMAC, podMAC, netip.IPv4Unspecified(), localPod)},
		{"IPv6 from the pod's MAC", podFrame(own6)},
		{"to a local pod", ethernet(otherMAC, podMAC, etherTypeIPv4, tcpPacket(localPod, otherPod, 40000, 80).bytes())},
	} {
		e.checkPass(t, c.name, e.WeftVethIngress, e.veth, c.in)
	}
	if verdict, _ := e.mustRun(t, e.WeftVethIngress, own); verdict != tcActRedirect {
		t.Errorf("the pod's own established flow: verdict %d, want TC_ACT_REDIRECT", verdict)
	}

	unregistered := ifindex(t, e.ns, "vethother")
	e.checkPass(t, "another pod's source IP on an unregistered veth", e.WeftVethIngress, unregistered, spoofedIP)
	e.checkPass(t, "another source MAC on an unregistered veth", e.WeftVethIngress, unregistered, ethernet(bridgeMAC, otherMAC, 0x86dd, make([]byte, 60)))
	// A pod weftd has not registered (yet) takes the kernel path, also its
	// established flows: at its veth, and at the bridge, which sees the
	// frames its veth passes.
	for _, c := range []struct {
		name    string
		prog    *ebpf.Program
		ifindex int
		in      []byte
	}{
		{"the registered pod's established flow arriving on an unregistered veth", e.WeftVethIngress, unregistered, own},
		{"an established flow from an unregistered MAC on an unregistered veth", e.WeftVethIngress, unregistered, spoofedMAC},
		{"an established flow from an unregistered MAC at the bridge", e.WeftPodIngress, e.bridge, spoofedMAC},
	} {
		if verdict, _, err := e.runOn(c.prog, c.ifindex, c.in); err != nil || verdict != tcActOK {
			t.Errorf("%s: verdict %d, %v; want TC_ACT_OK (the kernel path)", c.name, verdict, err)
		}
	}
	if verdict, _ := e.mustRun(t, e.WeftPodIngress, own); verdict != tcActRedirect {
		t.Errorf("the registered pod's established flow at the bridge: verdict %d, want TC_ACT_REDIRECT", verdict)
	}
	if p, _ := counts(t, e.WeftDrops, uint32(weftDropReasonDROP_POD_SOURCE)); p != 6 {
		t.Errorf("IPv4 pod_source drops = %d, want the 6 spoofed frames", p)
	}
}

// TestPodToTunnel: a pod's UDP to the VXLAN port of this node or of a known
// node is dropped and counted at its veth and at the bridge (masquerade
// would give it the node's address, which passes the known-node check);
// other ports and other destinations are not.
func TestPodToTunnel(t *testing.T) {
	e := newProgEnv(t)
	udpTo := func(dst netip.Addr, port uint16) []byte {
		return podFrame(ipPacket{src: localPod, dst: dst, proto: protoUDP, sport: 40000, dport: port, payload: []byte("vxlan?")})
	}
	for _, p := range e.podSide() {
		for _, c := range []struct {
			name string
			dst  netip.Addr
		}{{"this node", nodeIP}, {"a vxlan peer", vxlanNode}, {"a host-gw peer", hostGWNode}} {
			checkDrop(t, e.ns, e.weftObjects, p.name+": UDP to "+c.name+"'s VXLAN port", p.prog, p.ifindex, udpTo(c.dst, vxlanPort), weftDropReasonDROP_POD_TO_TUNNEL)
		}
		for _, c := range []struct {
			name string
			in   []byte
		}{
			{"UDP to this node's DNS port", udpTo(nodeIP, 53)},
			{"UDP to a peer's port 8473", udpTo(vxlanNode, vxlanPort+1)},
			{"UDP to port 8472 of no node", udpTo(netip.MustParseAddr("192.168.10.9"), vxlanPort)},
			{"UDP to port 8472 of a remote pod", udpTo(vxlanPod, vxlanPort)},
			{"TCP to this node's port 8472", podFrame(tcpPacket(localPod, nodeIP, 40000, vxlanPort))},
		} {
			e.checkPass(t, p.name+": "+c.name, p.prog, p.ifindex, c.in)
		}
	}
	if p, _ := counts(t, e.WeftDrops, uint32(weftDropReasonDROP_POD_TO_TUNNEL)); p != 6 {
		t.Errorf("pod_to_tunnel drops = %d, want 6", p)
	}
}

// TestVXLANToAnyLocalAddress: VXLAN to any address of this node, arriving
// on any interface, is validated as VXLAN to the node IP is: unknown nodes
// and spoofed inner sources are dropped, established flows decapsulated.
// VXLAN the node forwards is left alone.
func TestVXLANToAnyLocalAddress(t *testing.T) {
	e := newProgEnv(t)
	var (
		second  = netip.MustParseAddr("192.168.10.50")
		onLo    = netip.MustParseAddr("172.16.0.1")
		unknown = netip.MustParseAddr("192.168.10.9")
	)
	e.ns.MustRun(t, "ip", "addr", "add", second.String()+"/24", "dev", "uplink")
	e.ns.MustRun(t, "ip", "addr", "add", onLo.String()+"/32", "dev", "lo")
	eth1, eth2 := e.addDevice(t, "eth1", 1500), e.addDevice(t, "eth2", 1500)
	// An interface the node does not forward from (the kernel only
	// delivers locally what arrives there).
	e.ns.MustRun(t, "sysctl", "-q", "-w", "net.ipv4.conf.eth2.forwarding=0")
	e.track(t, true, vxlanFlow)
	reply := vxlanFlow.reply()
	for _, c := range []struct {
		name    string
		dst     netip.Addr
		ifindex int
	}{
		{"second uplink address", second, e.uplink},
		{"second uplink address, arriving on eth1", second, eth1},
		{"second uplink address, arriving on eth2 (forwarding off)", second, eth2},
		{"node IP, arriving on eth2 (forwarding off)", nodeIP, eth2},
		{"address on lo, arriving on the uplink", onLo, e.uplink},
		{"127.0.0.1, arriving on lo", netip.MustParseAddr("127.0.0.1"), 1},
	} {
		checkDrop(t, e.ns, e.weftObjects, c.name+": unknown node", e.WeftUplinkIngress, c.ifindex,
			vxlanFrameTo(unknown, c.dst, testVNI, reply.bytes()), weftDropReasonDROP_UNKNOWN_NODE)
		checkDrop(t, e.ns, e.weftObjects, c.name+": spoofed inner source", e.WeftUplinkIngress, c.ifindex,
			vxlanFrameTo(vxlanNode, c.dst, testVNI, tcpPacket(hostGWPod, localPod, 80, 40000).bytes()), weftDropReasonDROP_SPOOFED_SOURCE)
		verdict, out, err := e.runOn(e.WeftUplinkIngress, c.ifindex, vxlanFrameTo(vxlanNode, c.dst, testVNI, reply.bytes()))
		if want := delivered(reply.bytes()); err != nil || verdict != tcActRedirect || !bytes.Equal(out, want) {
			t.Errorf("%s: established flow: verdict %d (%v), frame\n got % x\nwant % x (decapsulated)", c.name, verdict, err, out, want)
		}
	}
	e.checkPass(t, "VXLAN the node forwards", e.WeftUplinkIngress, e.uplink,
		vxlanFrameTo(unknown, netip.MustParseAddr("192.168.10.77"), testVNI, reply.bytes()))
}

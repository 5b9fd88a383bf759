package kernel_test

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/datapath/kernel"
)

func TestVXLAN(t *testing.T) {
	nodes := newCluster(t, datapath.ModeVXLAN, false)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	for _, n := range nodes {
		n.setup(t)
	}
	if _, err := n1.pod.Run("ping", "-c1", "-W1", n2.podIP.String()); err == nil {
		t.Fatal("pods reach each other before Sync programmed anything")
	}
	for _, n := range nodes {
		n.mustSync(t, peersOf(n, nodes))
	}

	dev := n1.device(t, 1)
	d := dev.LinkInfo.Data
	if dev.LinkInfo.Kind != "vxlan" || d.ID != 1 || d.Local != "192.168.10.1" || d.Link != "eth0" || d.Port != 8472 ||
		d.Learning || d.GBP || dev.MTU != 1450 || !slices.Contains(dev.Flags, "UP") || dev.Address != n1.info.VtepMAC.String() {
		t.Fatalf("flannel.1 = %+v, want vxlan id 1 local 192.168.10.1 dev eth0 port 8472 nolearning mtu 1450 up, MAC %s", dev, n1.info.VtepMAC)
	}
	if n1.info.MTU != 1450 {
		t.Errorf("Info.MTU = %d, want 1450", n1.info.MTU)
	}
	if fwd := strings.TrimSpace(n1.ns.MustRun(t, "cat", "/proc/sys/net/ipv4/ip_forward")); fwd != "1" {
		t.Errorf("ip_forward = %s after Setup", fwd)
	}
	checkVXLAN(t, n1, n2, n3)
	checkVXLAN(t, n3, n1, n2)
	pingAll(t, nodes, fam4)
	checkTraffic(t, n1, "flannel.1")

	t.Run("drift repair", func(t *testing.T) {
		n1.ns.MustRun(t, "ip", "route", "del", n2.subnet.String(), "dev", "flannel.1")
		n1.ns.MustRun(t, "ip", "neigh", "del", n3.subnet.Addr().String(), "dev", "flannel.1")
		n1.ns.MustRun(t, "bridge", "fdb", "del", n2.info.VtepMAC.String(), "dev", "flannel.1", "dst", n2.node.NodeIP.String())
		n1.ns.MustRun(t, "ip", "link", "set", "flannel.1", "mtu", "1400")
		n1.mustSync(t, peersOf(n1, nodes))
		checkVXLAN(t, n1, n2, n3)
		if mtu := n1.device(t, 1).MTU; mtu != 1450 {
			t.Errorf("MTU %d after repair, want 1450", mtu)
		}
		n1.ping(t, n2.podIP)

		mac := n1.info.VtepMAC
		n1.ns.MustRun(t, "ip", "link", "del", "flannel.1")
		n1.setup(t)
		n1.mustSync(t, peersOf(n1, nodes))
		if n1.info.VtepMAC.String() != mac.String() || n1.device(t, 1).Address != mac.String() {
			t.Errorf("recreated device has MAC %s, want the published %s", n1.info.VtepMAC, mac)
		}
		checkVXLAN(t, n1, n2, n3)
		n1.ping(t, n3.podIP)
		n3.ping(t, n1.podIP)
	})

	t.Run("stale removal", func(t *testing.T) {
		unrelated := []string{
			"10.99.0.0/24 via 192.168.10.254 dev eth0",    // outside Network
			"10.244.1.128/25 via 192.168.10.254 dev eth0", // inside the own subnet
			"10.244.77.0/24 via 10.244.1.10 dev veth0",    // inside Network, not our device
			"10.244.0.0/16 via 192.168.10.254 dev eth0",   // contains the own subnet
			"10.244.88.0/24 dev eth0 scope link",          // no gateway
		}
		for _, r := range unrelated {
			n1.ns.MustRun(t, "ip", append([]string{"route", "add"}, strings.Fields(r)...)...)
		}
		// A leftover host-gw route inside Network is ours and must go.
		n1.ns.MustRun(t, "ip", "route", "add", "10.244.66.0/24", "via", "192.168.10.2", "dev", "eth0")
		n1.ns.MustRun(t, "ip", "route", "add", "10.244.99.0/24", "via", "10.244.99.0", "dev", "flannel.1", "onlink")
		before := n1.routes(t)

		n1.mustSync(t, []datapath.Peer{n2.peer()})
		checkVXLAN(t, n1, n2)
		after := n1.routes(t)
		for _, r := range before {
			gone := !slices.Contains(after, r)
			ours := strings.HasPrefix(r, "10.244.66.0/24") || strings.HasPrefix(r, n3.subnet.String()) || strings.HasPrefix(r, "10.244.99.0/24")
			if gone != ours {
				t.Errorf("route %q: removed=%v, want %v", r, gone, ours)
			}
		}
		if _, err := n1.pod.Run("ping", "-c1", "-W1", n3.podIP.String()); err == nil {
			t.Error("a removed peer is still reachable")
		}
		n1.ping(t, n2.podIP)
		n1.mustSync(t, peersOf(n1, nodes))
		checkVXLAN(t, n1, n2, n3)
	})

	t.Run("invalid peers", func(t *testing.T) {
		peers := append(peersOf(n1, nodes),
			datapath.Peer{Subnet: netip.MustParsePrefix("10.244.50.0/24"), NodeIP: netip.MustParseAddr("192.168.10.50")}, // no VtepMAC
			datapath.Peer{Subnet: netip.MustParsePrefix("10.250.0.0/24"), NodeIP: netip.MustParseAddr("192.168.10.51"),
				VtepMAC: net.HardwareAddr{2, 0, 0, 0, 0, 0x51}}, // outside Network
			datapath.Peer{Subnet: n1.subnet, NodeIP: netip.MustParseAddr("192.168.10.52"),
				VtepMAC: net.HardwareAddr{2, 0, 0, 0, 0, 0x52}}, // own subnet
		)
		n1.mustSync(t, peers)
		checkVXLAN(t, n1, n2, n3)
	})

	t.Run("restart keeps MAC", func(t *testing.T) {
		restarted := *n1
		restarted.dp = kernel.New()
		restarted.setup(t)
		if restarted.info.VtepMAC.String() != n1.info.VtepMAC.String() {
			t.Fatalf("restart changed the VTEP MAC from %s to %s", n1.info.VtepMAC, restarted.info.VtepMAC)
		}
		restarted.mustSync(t, peersOf(n1, nodes))
		checkVXLAN(t, &restarted, n2, n3)
		restarted.ping(t, n2.podIP)
	})

	t.Run("cleanup", func(t *testing.T) {
		err := n1.ns.Do(func() error { return n1.dp.Cleanup(context.Background()) })
		if err != nil {
			t.Fatal(err)
		}
		if out, err := n1.ns.Run("ip", "link", "show", "flannel.1"); err == nil {
			t.Fatalf("flannel.1 survived Cleanup: %s", out)
		}
		for _, r := range n1.routes(t) {
			if strings.HasPrefix(r, n2.subnet.String()) || strings.HasPrefix(r, n3.subnet.String()) {
				t.Errorf("route %q survived Cleanup", r)
			}
		}
	})
}

func TestHostGW(t *testing.T) {
	nodes := newCluster(t, datapath.ModeHostGW, false)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	for _, n := range nodes {
		n.setup(t)
		if n.info.VtepMAC != nil || n.info.MTU != 1500 {
			t.Fatalf("host-gw Info = %+v, want no MAC and MTU 1500", n.info)
		}
	}
	// n3 is behind the router: its route cannot be programmed, which must
	// not keep n1 from reaching n2.
	if err := n1.sync(peersOf(n1, nodes)); err == nil || !strings.Contains(err.Error(), n3.subnet.String()) {
		t.Fatalf("sync with an off-link host-gw peer: err = %v, want an error naming %s", err, n3.subnet)
	}
	n2.mustSync(t, []datapath.Peer{n1.peer()})

	want := []string{"10.244.1.0/24 dev veth0", "10.244.2.0/24 via 192.168.10.2 dev eth0"}
	if got := podRoutes(t, n1); !slices.Equal(got, want) {
		t.Fatalf("n1 routes into the network = %q, want %q", got, want)
	}
	if out, err := n1.ns.Run("ip", "link", "show", "flannel.1"); err == nil {
		t.Errorf("host-gw created a vxlan device: %s", out)
	}
	n1.ping(t, n2.podIP)
	n2.ping(t, n1.podIP)
	if cs := n1.stats(t); len(cs) != 0 {
		t.Errorf("host-gw stats = %+v, want none", cs)
	}

	if err := n2.ns.Do(func() error { return n2.dp.Cleanup(context.Background()) }); err != nil {
		t.Fatal(err)
	}
	if got := podRoutes(t, n2); !slices.Equal(got, []string{"10.244.2.0/24 dev veth0"}) {
		t.Errorf("n2 routes into the network after Cleanup = %q, want only its own subnet's", got)
	}

	// The own subnet's route stays when no peer is left.
	n1.mustSync(t, nil)
	if got := podRoutes(t, n1); !slices.Equal(got, want[:1]) {
		t.Errorf("n1 routes into the network after an empty Sync = %q, want %q", got, want[:1])
	}
}

// podRoutes lists n's IPv4 routes into the test network.
func podRoutes(t *testing.T, n *testNode) []string {
	t.Helper()
	return podRoutesOf(t, n, fam4)
}

// podRoutesOf lists n's routes of family f into the test network.
func podRoutesOf(t *testing.T, n *testNode, f testFamily) []string {
	t.Helper()
	var out []string
	for _, r := range n.familyRoutes(t, f) {
		if pfx, err := netip.ParsePrefix(strings.Fields(r)[0]); err == nil && f.network.Overlaps(pfx) {
			out = append(out, r)
		}
	}
	return out
}

func TestDirectRouting(t *testing.T) {
	nodes := newCluster(t, datapath.ModeVXLAN, true)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	setupAll(t, nodes)

	// n2 shares n1's segment: plain route. n3 is behind the router: vxlan.
	checkVXLAN(t, n1, n3)
	if got := n1.routes(t, n2.subnet.String()); len(got) != 1 || got[0] != n2.subnet.String()+" via 192.168.10.2 dev eth0" {
		t.Fatalf("n1 route to %s = %q, want a host-gw route via 192.168.10.2 dev eth0", n2.subnet, got)
	}
	checkVXLAN(t, n3, n1, n2)

	txPackets := func() uint64 {
		for _, c := range n1.stats(t) {
			if c.Direction == "tx" {
				return c.Packets
			}
		}
		t.Fatal("no tx counter")
		return 0
	}
	before := txPackets()
	n1.ping(t, n2.podIP)
	if after := txPackets(); after != before {
		t.Errorf("traffic to the on-link peer went through flannel.1 (tx %d -> %d)", before, after)
	}
	n1.ping(t, n3.podIP)
	if after := txPackets(); after == before {
		t.Error("traffic to the routed peer did not go through flannel.1")
	}
	n3.ping(t, n2.podIP)

	// Switching DirectRouting off moves n2 to vxlan and back again.
	n1.node.DirectRouting = false
	n1.setup(t)
	n1.mustSync(t, peersOf(n1, nodes))
	checkVXLAN(t, n1, n2, n3)
	if got := podRoutes(t, n1); slices.ContainsFunc(got, func(r string) bool { return strings.Contains(r, "dev eth0") }) {
		t.Errorf("host-gw route left after DirectRouting was turned off: %q", got)
	}
	n1.ping(t, n2.podIP)
	n1.node.DirectRouting = true
	n1.setup(t)
	n1.mustSync(t, peersOf(n1, nodes))
	checkVXLAN(t, n1, n3)
	n1.ping(t, n2.podIP)
}

func TestDeviceAdoption(t *testing.T) {
	nodes := newCluster(t, datapath.ModeVXLAN, false)
	n := nodes[0]
	const mac = "02:11:22:33:44:55"

	// A compatible device that is down with a wrong MTU is kept, with its MAC.
	n.ns.MustRun(t, "ip", "link", "add", "flannel.1", "address", mac, "type", "vxlan", "id", "1",
		"local", "192.168.10.1", "dev", "eth0", "dstport", "8472", "nolearning")
	n.ns.MustRun(t, "ip", "link", "set", "flannel.1", "mtu", "1300")
	n.setup(t)
	dev := n.device(t, 1)
	if dev.Address != mac || n.info.VtepMAC.String() != mac || dev.MTU != 1450 || !slices.Contains(dev.Flags, "UP") {
		t.Fatalf("adopted device %+v (Info %+v), want MAC %s, MTU 1450, up", dev, n.info, mac)
	}

	// An incompatible device (other port) is replaced.
	n.ns.MustRun(t, "ip", "link", "del", "flannel.1")
	n.ns.MustRun(t, "ip", "link", "add", "flannel.1", "address", mac, "type", "vxlan", "id", "1",
		"local", "192.168.10.1", "dev", "eth0", "dstport", "4789", "nolearning")
	fresh := *n
	fresh.dp = kernel.New()
	fresh.node.GBP = true
	fresh.node.MTU = 1400
	fresh.setup(t)
	dev = fresh.device(t, 1)
	d := dev.LinkInfo.Data
	if d.Port != 8472 || !d.GBP || dev.MTU != 1400 || fresh.info.MTU != 1400 {
		t.Fatalf("device after Setup %+v, want port 8472, gbp, MTU 1400", dev)
	}
	if dev.Address != mac {
		t.Errorf("replaced device has MAC %s, want the old %s kept", dev.Address, mac)
	}
	if got := fresh.vxlan(t).Addrs; len(got) != 1 || got[0] != "10.244.1.0/32" {
		t.Errorf("addresses %q, want 10.244.1.0/32", got)
	}

	// SetSubnet replaces a stale address from an older lease.
	fresh.subnet = netip.MustParsePrefix("10.244.9.0/24")
	fresh.setup(t)
	if got := fresh.vxlan(t).Addrs; len(got) != 1 || got[0] != "10.244.9.0/32" {
		t.Errorf("addresses after a new subnet %q, want 10.244.9.0/32", got)
	}

	// weftd --cleanup runs Cleanup without Setup: it removes vxlan devices
	// named flannel.<N> and nothing else.
	n.ns.MustRun(t, "ip", "link", "add", "flannel.7", "type", "veth", "peer", "name", "other")
	err := n.ns.Do(func() error { return kernel.New().Cleanup(context.Background()) })
	if err != nil {
		t.Fatal(err)
	}
	if out, err := n.ns.Run("ip", "link", "show", "flannel.1"); err == nil {
		t.Errorf("flannel.1 survived Cleanup: %s", out)
	}
	n.ns.MustRun(t, "ip", "link", "show", "flannel.7")
}

package kernel_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/wireguard"
)

// checkWireGuardDevice fails t unless n's wireguard device dev is up with
// MTU 1420 (uplink - 80, flannel's for either family), has n's subnet of
// family f's network address as its only global address of the family,
// and carries f's cluster network.
func checkWireGuardDevice(t *testing.T, n *wgNode, dev string, f testFamily) {
	t.Helper()
	if l := n.link(t, dev); l.MTU != 1420 || !slices.Contains(l.Flags, "UP") {
		t.Errorf("%s: %s = %+v, want up with MTU 1420", n.ns.Name, dev, l)
	}
	want := fmt.Sprintf("%s/%d", f.subnet(n.testNode).Addr(), f.hostBits)
	out := n.ns.MustRun(t, "ip", f.flag, "-o", "addr", "show", "dev", dev, "scope", "global")
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, " "+want+" ") {
		t.Errorf("%s: addresses of %s: %q, want only %s", n.ns.Name, dev, out, want)
	}
	// ip shows the scope of IPv4 routes only (IPv6 routes have none).
	route := f.network.String() + " "
	if f.flag == "-4" {
		route += "scope link"
	}
	if out := n.ns.MustRun(t, "ip", f.flag, "route", "show", "dev", dev); !strings.Contains(out, route) {
		t.Errorf("%s: routes on %s: %q, want %q", n.ns.Name, dev, out, route)
	}
}

// wantWireGuardPeers is what n's device of family f must hold: every other
// node's subnet of the family, by its one public key, at its node IP of
// the family and the family's port, sorted by endpoint.
func wantWireGuardPeers(n *wgNode, f testFamily, port int, nodes []*wgNode) []agentPeer {
	var want []agentPeer
	for _, o := range nodes {
		if o != n {
			endpoint := fmt.Sprintf("%s:%d", f.nodeIP(o.testNode), port)
			if f.flag == "-6" {
				endpoint = fmt.Sprintf("[%s]:%d", f.nodeIP(o.testNode), port)
			}
			want = append(want, agentPeer{PublicKey: o.info.PublicKey, Endpoint: endpoint, AllowedIPs: []string{f.subnet(o.testNode).String()}})
		}
	}
	slices.SortFunc(want, func(a, b agentPeer) int { return strings.Compare(a.Endpoint, b.Endpoint) })
	return want
}

// TestWireGuardDualStack: flannel's Mode "separate": flannel-wg carries
// IPv4 over the IPv4 underlay on 51820, flannel-wg-v6 IPv6 over the IPv6
// underlay on 51821, both with the node's one key.
func TestWireGuardDualStack(t *testing.T) {
	nodes := wgStackCluster(t, dualStack)
	for _, n := range nodes {
		n.start(t)
	}
	syncAll(t, nodes)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]

	t.Run("devices", func(t *testing.T) {
		if n1.info.MTU != 1420 {
			t.Errorf("pod MTU %d, want 1420 (uplink - 80)", n1.info.MTU)
		}
		for _, n := range nodes {
			checkWireGuardDevice(t, n, wireguard.DeviceName, fam4)
			checkWireGuardDevice(t, n, wireguard.DeviceNameV6, fam6)
		}
	})

	t.Run("peers", func(t *testing.T) {
		for _, c := range []struct {
			dev  string
			f    testFamily
			port int
		}{{wireguard.DeviceName, fam4, 51820}, {wireguard.DeviceNameV6, fam6, 51821}} {
			got, want := n1.devicePeers(t, c.dev), wantWireGuardPeers(n1, c.f, c.port, nodes)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("peers of %s:\n%v\nwant\n%v", c.dev, got, want)
			}
		}
	})

	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				a.ping(t, b.podIP)
				a.ping(t, b.podIP6)
			}
		}
	}

	t.Run("TCP over both families, encrypted on the IPv6 underlay", func(t *testing.T) {
		tcpEcho(t, n1.testNode, n3.testNode, n3.podIP)
		underlay := startCapture(t, n3.ns, "eth0")
		tcpEcho(t, n1.testNode, n3.testNode, n3.podIP6)
		underlay.stop(t)
		if n := underlay.count(t, "ip6 and udp port 51821"); n == 0 {
			t.Error("no WireGuard packets over IPv6 to port 51821 on the underlay")
		}
		if n := underlay.count(t, "tcp"); n != 0 {
			t.Errorf("%d cleartext TCP packets on the underlay", n)
		}
	})

	t.Run("stats", func(t *testing.T) {
		// 1 MiB arrived over each family's device.
		if rx, _ := n3.traffic(t); rx.Bytes < 2<<20 {
			t.Errorf("%d rx bytes counted on both devices, want 2 MiB or more", rx.Bytes)
		}
	})

	t.Run("peer removed", func(t *testing.T) {
		var removed []datapath.PeerKey
		for _, p := range n3.wgPeers() {
			removed = append(removed, p.Key())
		}
		n1.agent.must(t, agentRequest{Op: "apply", Changes: datapath.Changes{Removed: removed}})
		for _, dev := range []string{wireguard.DeviceName, wireguard.DeviceNameV6} {
			if got := n1.devicePeers(t, dev); len(got) != 1 || got[0].PublicKey != n2.info.PublicKey {
				t.Errorf("peers of %s after removing node 3: %v, want only node 2's", dev, got)
			}
		}
		n1.ping(t, n2.podIP)
		n1.ping(t, n2.podIP6)
	})

	t.Run("cleanup", func(t *testing.T) {
		n2.agent.must(t, agentRequest{Op: "cleanup"})
		for _, dev := range []string{wireguard.DeviceName, wireguard.DeviceNameV6} {
			if out, err := n2.ns.Run("ip", "link", "show", dev); err == nil {
				t.Errorf("%s outlived Cleanup: %s", dev, out)
			}
		}
		if out := n2.ns.MustRun(t, "ip", "-6", "route"); strings.Contains(out, testNetwork6.String()) {
			t.Errorf("the IPv6 network route outlived Cleanup: %s", out)
		}
	})
}

// TestWireGuardIPv6Only: an IPv6-only node runs flannel-wg-v6 alone.
func TestWireGuardIPv6Only(t *testing.T) {
	nodes := wgStackCluster(t, ipv6Only)
	for _, n := range nodes {
		n.start(t)
	}
	syncAll(t, nodes)
	n1, n3 := nodes[0], nodes[2]
	for _, n := range nodes {
		if out, err := n.ns.Run("ip", "link", "show", wireguard.DeviceName); err == nil {
			t.Errorf("%s: IPv6-only node has %s: %s", n.ns.Name, wireguard.DeviceName, out)
		}
		checkWireGuardDevice(t, n, wireguard.DeviceNameV6, fam6)
	}
	if got, want := n1.devicePeers(t, wireguard.DeviceNameV6), wantWireGuardPeers(n1, fam6, 51821, nodes); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("peers of %s:\n%v\nwant\n%v", wireguard.DeviceNameV6, got, want)
	}
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				a.ping(t, b.podIP6)
			}
		}
	}
	tcpEcho(t, n3.testNode, n1.testNode, n1.podIP6)
}

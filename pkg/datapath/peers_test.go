package datapath

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
)

var (
	ownSubnet = netip.MustParsePrefix("10.244.1.0/24")
	vxNode    = Node{
		NodeIP: netip.MustParseAddr("192.168.0.1"), Uplink: "eth0",
		Network: netip.MustParsePrefix("10.244.0.0/16"), Backend: ModeVXLAN, VNI: 1, Port: 8472,
	}
	hostGWNode = Node{NodeIP: vxNode.NodeIP, Uplink: "eth0", Network: vxNode.Network, Backend: ModeHostGW}
)

// peer is a vxlan peer with subnet 10.244.<n>.0/24, node IP 192.168.0.<ip>
// and VTEP MAC 02:00:00:00:00:<mac>.
func peer(n, ip, mac byte) Peer {
	return Peer{
		Subnet:  netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, n, 0}), 24),
		NodeIP:  netip.AddrFrom4([4]byte{192, 168, 0, ip}),
		VtepMAC: net.HardwareAddr{2, 0, 0, 0, 0, mac},
	}
}

func TestSelectPeersChecks(t *testing.T) {
	pfx := netip.MustParsePrefix
	cases := []struct {
		name  string
		node  Node
		own   netip.Prefix
		peer  func(p *Peer)
		valid bool
	}{
		{"valid", vxNode, ownSubnet, func(*Peer) {}, true},
		{"own subnet unknown", vxNode, netip.Prefix{}, func(*Peer) {}, true},
		{"host-gw needs no MAC", hostGWNode, ownSubnet, func(p *Peer) { p.VtepMAC = nil }, true},
		{"no MAC", vxNode, ownSubnet, func(p *Peer) { p.VtepMAC = nil }, false},
		{"zero MAC", vxNode, ownSubnet, func(p *Peer) { p.VtepMAC = make(net.HardwareAddr, 6) }, false},
		{"multicast MAC", vxNode, ownSubnet, func(p *Peer) { p.VtepMAC = net.HardwareAddr{1, 0, 0x5e, 0, 0, 1} }, false},
		{"outside network", vxNode, ownSubnet, func(p *Peer) { p.Subnet = pfx("10.245.2.0/24") }, false},
		{"wider than network", vxNode, ownSubnet, func(p *Peer) { p.Subnet = pfx("10.0.0.0/8") }, false},
		{"own subnet", vxNode, ownSubnet, func(p *Peer) { p.Subnet = ownSubnet }, false},
		{"inside own subnet", vxNode, ownSubnet, func(p *Peer) { p.Subnet = pfx("10.244.1.128/25") }, false},
		{"unmasked", vxNode, ownSubnet, func(p *Peer) { p.Subnet = pfx("10.244.2.1/24") }, false},
		{"IPv6 subnet", vxNode, ownSubnet, func(p *Peer) { p.Subnet = pfx("fd00::/64") }, false},
		{"no node IP", vxNode, ownSubnet, func(p *Peer) { p.NodeIP = netip.Addr{} }, false},
		{"multicast node IP", vxNode, ownSubnet, func(p *Peer) { p.NodeIP = netip.MustParseAddr("224.0.0.1") }, false},
		{"own node IP", vxNode, ownSubnet, func(p *Peer) { p.NodeIP = vxNode.NodeIP }, false},
	}
	for _, c := range cases {
		p := peer(2, 2, 2)
		c.peer(&p)
		sel, err := SelectPeers(c.node, c.own, []Peer{p}, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := len(sel.Peers) == 1; got != c.valid || len(sel.Peers)+len(sel.Rejected) != 1 {
			t.Errorf("%s: kept %v, rejected %v; want valid=%v", c.name, sel.Peers, sel.Rejected, c.valid)
		}
		if !c.valid && sel.Rejected[0].Reason == "" {
			t.Errorf("%s: rejected without a reason", c.name)
		}
	}
}

// TestSelectPeersDuplicates: one subnet, or one vxlan VtepMAC claimed by two
// node IPs, goes to the peer that sorts first, whatever the input order;
// peers that share a node IP are all kept, with one VtepMAC too.
func TestSelectPeersDuplicates(t *testing.T) {
	peers := []Peer{
		peer(3, 3, 3),
		peer(2, 9, 9), // same subnet as the next, higher node IP: loses
		peer(2, 2, 2),
		peer(5, 5, 2), // same VtepMAC as 10.244.2.0/24: loses
		peer(6, 3, 6), // same node IP as 10.244.3.0/24: kept
		peer(7, 3, 3), // same node IP and VtepMAC as 10.244.3.0/24 (leased twice): kept
	}
	for _, order := range [][]int{{0, 1, 2, 3, 4, 5}, {5, 4, 3, 2, 1, 0}} {
		in := make([]Peer, len(order))
		for i, j := range order {
			in[i] = peers[j]
		}
		sel, err := SelectPeers(vxNode, ownSubnet, in, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fmt.Sprint(sel.Peers), fmt.Sprint([]Peer{withMode(peers[2]), withMode(peers[0]), withMode(peers[4]), withMode(peers[5])}); got != want {
			t.Errorf("order %v: kept\n%s\nwant\n%s", order, got, want)
		}
		var rejected []string
		for _, r := range sel.Rejected {
			rejected = append(rejected, r.Peer.Subnet.String()+"@"+r.Peer.NodeIP.String()+": "+r.Reason)
		}
		want := "10.244.2.0/24@192.168.0.9: another peer has the same subnet;10.244.5.0/24@192.168.0.5: another node IP has the same VtepMAC"
		if got := strings.Join(rejected, ";"); got != want {
			t.Errorf("order %v: rejected %q, want %q", order, got, want)
		}
	}
}

func withMode(p Peer) Peer {
	p.Mode = ModeVXLAN
	return p
}

// TestSelectPeersHostGWMAC: host-gw peers carry no VtepMAC that could clash.
func TestSelectPeersHostGWMAC(t *testing.T) {
	a, b := peer(2, 2, 0), peer(3, 3, 0)
	a.VtepMAC, b.VtepMAC = nil, nil
	sel, err := SelectPeers(hostGWNode, ownSubnet, []Peer{a, b}, nil)
	if err != nil || len(sel.Peers) != 2 || sel.Peers[0].Mode != ModeHostGW {
		t.Fatalf("SelectPeers = %+v, %v; want both host-gw peers", sel, err)
	}
}

// TestSelectPeersModes: modes of known node IPs are reused without a route
// lookup; a node IP whose mode cannot be decided leaves its peer out with an
// error, not a rejection.
func TestSelectPeersModes(t *testing.T) {
	node := vxNode
	node.DirectRouting, node.Uplink = true, "no-such-uplink"
	known, unknown := peer(2, 2, 2), peer(3, 3, 3)
	sel, err := SelectPeers(node, ownSubnet, []Peer{unknown, known}, map[netip.Addr]Mode{known.NodeIP: ModeHostGW})
	if err == nil || !strings.Contains(err.Error(), unknown.Subnet.String()) {
		t.Errorf("err = %v, want one naming %s", err, unknown.Subnet)
	}
	if len(sel.Peers) != 1 || sel.Peers[0].Subnet != known.Subnet || sel.Peers[0].Mode != ModeHostGW || len(sel.Rejected) != 0 {
		t.Errorf("selection %+v, want only %s as host-gw", sel, known.Subnet)
	}
	if len(sel.Modes) != 1 || sel.Modes[known.NodeIP] != ModeHostGW {
		t.Errorf("modes %v", sel.Modes)
	}
}

// TestRejectionLog: a rejection is logged when it appears, not again while
// it stays, and again after it went away and came back.
func TestRejectionLog(t *testing.T) {
	var buf strings.Builder
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })
	a := Rejection{peer(2, 2, 2), "reason a"}
	b := Rejection{peer(3, 3, 3), "reason b"}
	var l RejectionLog
	for _, rs := range [][]Rejection{{a}, {a, b}, {b}, {a, b}} {
		l.Log(rs)
	}
	if n := strings.Count(buf.String(), "reason a"); n != 2 {
		t.Errorf("reason a logged %d times, want 2:\n%s", n, buf.String())
	}
	if n := strings.Count(buf.String(), "reason b"); n != 1 {
		t.Errorf("reason b logged %d times, want 1:\n%s", n, buf.String())
	}
}

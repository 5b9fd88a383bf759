package datapath

import (
	"errors"
	"fmt"
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
	// dualNode runs IPv4 and IPv6; v6Node IPv6 only.
	dualNode = Node{
		NodeIP: vxNode.NodeIP, NodeIPv6: netip.MustParseAddr("fd00:100::1"), Uplink: "eth0",
		Network: vxNode.Network, IPv6Network: netip.MustParsePrefix("fd10:244::/56"), Backend: ModeVXLAN, VNI: 1, Port: 8472,
	}
	v6Node = Node{NodeIPv6: dualNode.NodeIPv6, Uplink: "eth0", IPv6Network: dualNode.IPv6Network, Backend: ModeVXLAN, VNI: 1, Port: 8472}
)

// v6Peer makes p the IPv6 peer fd10:244:0:<n>::/64 at fd00:100::<ip>.
func v6Peer(n, ip byte) func(p *Peer) {
	return func(p *Peer) {
		p.Subnet = netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0x10, 2: 0x02, 3: 0x44, 7: n}), 64)
		p.NodeIP = netip.AddrFrom16([16]byte{0xfd, 0, 1, 0, 15: ip})
	}
}

// peer is a vxlan peer with subnet 10.244.<n>.0/24, node IP 192.168.0.<ip>
// and VTEP MAC 02:00:00:00:00:<mac>.
func peer(n, ip, mac byte) Peer {
	return Peer{
		Subnet:  netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, n, 0}), 24),
		NodeIP:  netip.AddrFrom4([4]byte{192, 168, 0, ip}),
		VtepMAC: net.HardwareAddr{2, 0, 0, 0, 0, mac},
	}
}

func withMode(p Peer) Peer {
	p.Mode = ModeVXLAN
	return p
}

// rejectionLines prints each of rs as subnet@nodeIP: reason.
func rejectionLines(rs []Rejection) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Peer.Subnet.String()+"@"+r.Peer.NodeIP.String()+": "+r.Reason)
	}
	return out
}

// rejected joins the rejectionLines of rs with ";".
func rejected(rs []Rejection) string { return strings.Join(rejectionLines(rs), ";") }

func TestSelectorChecks(t *testing.T) {
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
		{"dual stack: IPv4", dualNode, ownSubnet, func(*Peer) {}, true},
		{"dual stack: IPv6", dualNode, ownSubnet, v6Peer(2, 2), true},
		{"IPv6 only: IPv6", v6Node, netip.Prefix{}, v6Peer(2, 2), true},
		{"IPv6 only: IPv4", v6Node, netip.Prefix{}, func(*Peer) {}, false},
		{"IPv6 subnet, IPv4 node IP", dualNode, ownSubnet, func(p *Peer) { v6Peer(2, 2)(p); p.NodeIP = vxNode.NodeIP }, false},
		{"IPv4 subnet, IPv6 node IP", dualNode, ownSubnet, func(p *Peer) { p.NodeIP = dualNode.NodeIPv6 }, false},
		{"IPv6 outside network", dualNode, ownSubnet, func(p *Peer) { v6Peer(2, 2)(p); p.Subnet = pfx("fd11::/64") }, false},
		{"own IPv6 node IP", dualNode, ownSubnet, func(p *Peer) { v6Peer(2, 2)(p); p.NodeIP = dualNode.NodeIPv6 }, false},
		{"own IPv6 subnet", dualNode, pfx("fd10:244:0:2::/64"), v6Peer(2, 2), false},
	}
	for _, c := range cases {
		p := peer(2, 2, 2)
		c.peer(&p)
		// The same verdict from Reset and from an Update.
		sel, err := NewSelector(c.node, c.own).Reset([]Peer{p})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := len(sel.Peers) == 1; got != c.valid || len(sel.Peers)+len(sel.Rejected) != 1 {
			t.Errorf("%s: Reset kept %v, rejected %v; want valid=%v", c.name, sel.Peers, sel.Rejected, c.valid)
		}
		if !c.valid && sel.Rejected[0].Reason == "" {
			t.Errorf("%s: rejected without a reason", c.name)
		}
		d, err := NewSelector(c.node, c.own).Update(Changes{Set: []Peer{p}})
		if err != nil || (len(d.Subnets) == 1) != c.valid || len(d.Subnets)+len(d.Rejected) != 1 {
			t.Errorf("%s: Update = %+v, %v; want valid=%v", c.name, d, err, c.valid)
		}
	}
}

// TestSelectorDuplicates: one subnet, or one vxlan VtepMAC claimed by two
// node IPs, goes to the peer that sorts first, whatever the order the peers
// come in; peers that share a node IP are all kept, with one VtepMAC too.
func TestSelectorDuplicates(t *testing.T) {
	peers := []Peer{
		peer(3, 3, 3),
		peer(2, 9, 9), // same subnet as the next, higher node IP: loses
		peer(2, 2, 2),
		peer(5, 5, 2), // same VtepMAC as 10.244.2.0/24: loses
		peer(6, 3, 6), // same node IP as 10.244.3.0/24: kept
		peer(7, 3, 3), // same node IP and VtepMAC as 10.244.3.0/24 (leased twice): kept
	}
	want := fmt.Sprint([]Peer{withMode(peers[2]), withMode(peers[0]), withMode(peers[4]), withMode(peers[5])})
	wantRejected := "10.244.2.0/24@192.168.0.9: another peer has the same subnet;10.244.5.0/24@192.168.0.5: another node IP has the same VtepMAC"
	for _, order := range [][]int{{0, 1, 2, 3, 4, 5}, {5, 4, 3, 2, 1, 0}} {
		in := make([]Peer, len(order))
		for i, j := range order {
			in[i] = peers[j]
		}
		sel, err := NewSelector(vxNode, ownSubnet).Reset(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(sel.Peers); got != want {
			t.Errorf("Reset, order %v: kept\n%s\nwant\n%s", order, got, want)
		}
		if got := rejected(sel.Rejected); got != wantRejected {
			t.Errorf("Reset, order %v: rejected %q, want %q", order, got, wantRejected)
		}
		// One peer per Update: the winner may come after the loser.
		s := NewSelector(vxNode, ownSubnet)
		var rs []Rejection
		for _, p := range in {
			d, err := s.Update(Changes{Set: []Peer{p}})
			if err != nil {
				t.Fatal(err)
			}
			rs = append(rs, d.Rejected...)
		}
		if got := fmt.Sprint(s.Selected()); got != want {
			t.Errorf("Update, order %v: kept\n%s\nwant\n%s", order, got, want)
		}
		if got := len(rs); got != 2 {
			t.Errorf("Update, order %v: %d rejections reported (%s), want 2", order, got, rejected(rs))
		}
	}
}

// TestSelectorWireGuardFamilies: a dual-stack wireguard node publishes one
// public key for both halves, with node IPs of each family (flannel-wg and
// flannel-wg-v6 are two devices); within a family the key is still one
// node IP's.
func TestSelectorWireGuardFamilies(t *testing.T) {
	node := dualNode
	node.Backend = ModeWireGuard
	key := "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
	half := func(p Peer, v6 func(*Peer)) Peer {
		p.VtepMAC, p.PublicKey = nil, key
		if v6 != nil {
			v6(&p)
		}
		return p
	}
	v4, v6 := half(peer(2, 2, 0), nil), half(peer(2, 2, 0), v6Peer(2, 2))
	thief4, thief6 := half(peer(3, 3, 0), nil), half(peer(3, 3, 0), v6Peer(3, 3))
	sel, err := NewSelector(node, ownSubnet).Reset([]Peer{v6, thief6, v4, thief4})
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, p := range sel.Peers {
		kept = append(kept, p.Subnet.String()+"@"+p.NodeIP.String())
	}
	if got, want := strings.Join(kept, ";"), "10.244.2.0/24@192.168.0.2;fd10:244:0:2::/64@fd00:100::2"; got != want {
		t.Errorf("kept %s, want both halves of the node: %s", got, want)
	}
	want := "10.244.3.0/24@192.168.0.3: another node IP has the same public key;fd10:244:0:3::/64@fd00:100::3: another node IP has the same public key"
	if got := rejected(sel.Rejected); got != want {
		t.Errorf("rejected %q, want %q", got, want)
	}
}

// TestSelectorHostGWMAC: host-gw peers carry no VtepMAC that could clash.
func TestSelectorHostGWMAC(t *testing.T) {
	a, b := peer(2, 2, 0), peer(3, 3, 0)
	a.VtepMAC, b.VtepMAC = nil, nil
	sel, err := NewSelector(hostGWNode, ownSubnet).Reset([]Peer{a, b})
	if err != nil || len(sel.Peers) != 2 || sel.Peers[0].Mode != ModeHostGW {
		t.Fatalf("Reset = %+v, %v; want both host-gw peers", sel, err)
	}
}

// fakeLookup decides modes from a table, counting lookups; a node IP not
// in the table cannot be decided.
type fakeLookup struct {
	modes   map[netip.Addr]Mode
	lookups int
}

func (f *fakeLookup) lookup(ip netip.Addr) (Mode, error) {
	f.lookups++
	if m, ok := f.modes[ip]; ok {
		return m, nil
	}
	return "", errors.New("no route")
}

// TestSelectorModes: a node IP's mode is looked up once while peers have
// it and forgotten when the last leaves; a peer whose mode cannot be
// decided is left out with an error, not a rejection, and tried again on
// the next Update.
func TestSelectorModes(t *testing.T) {
	node := vxNode
	node.DirectRouting = true
	s := NewSelector(node, ownSubnet)
	direct, routed, unknown := peer(2, 2, 2), peer(3, 3, 3), peer(4, 4, 4)
	f := &fakeLookup{modes: map[netip.Addr]Mode{direct.NodeIP: ModeHostGW, routed.NodeIP: ModeVXLAN}}
	s.lookup = f.lookup

	sel, err := s.Reset([]Peer{unknown, direct, routed})
	if err == nil || !strings.Contains(err.Error(), unknown.Subnet.String()) {
		t.Errorf("err = %v, want one naming %s", err, unknown.Subnet)
	}
	if len(sel.Peers) != 2 || sel.Peers[0].Mode != ModeHostGW || sel.Peers[1].Mode != ModeVXLAN || len(sel.Rejected) != 0 {
		t.Errorf("selection %+v, want %s host-gw and %s vxlan, none rejected", sel, direct.Subnet, routed.Subnet)
	}
	if f.lookups != 3 {
		t.Errorf("%d lookups, want 3", f.lookups)
	}

	// Another subnet of a known node IP: no lookup; the undecided peer is
	// tried again, and taken once its mode is known.
	second := peer(5, 2, 2)
	f.modes[unknown.NodeIP] = ModeVXLAN
	d, err := s.Update(Changes{Set: []Peer{second}})
	if err != nil || f.lookups != 4 {
		t.Errorf("Update: err %v, %d lookups; want none, 4", err, f.lookups)
	}
	if len(d.Subnets) != 2 || d.Subnets[0].New.Subnet != unknown.Subnet || d.Subnets[1].New.Mode != ModeHostGW {
		t.Errorf("delta %+v, want %s added and %s as host-gw", d, unknown.Subnet, second.Subnet)
	}

	// The node IP's last peer leaves: its mode is forgotten, and looked up
	// again when it comes back.
	if _, err := s.Update(Changes{Removed: []PeerKey{direct.Key(), second.Key()}}); err != nil {
		t.Fatal(err)
	}
	f.modes[direct.NodeIP] = ModeVXLAN
	d, err = s.Update(Changes{Set: []Peer{direct}})
	if err != nil || f.lookups != 5 || len(d.Subnets) != 1 || d.Subnets[0].New.Mode != ModeVXLAN {
		t.Errorf("Update = %+v, %v after %d lookups; want %s as vxlan after 5", d, err, f.lookups, direct.Subnet)
	}
}

// TestSelectorRejectsOnce: a rejection is reported when it appears, not
// again while it stays (also across Reset), and again after it went away
// and came back.
func TestSelectorRejectsOnce(t *testing.T) {
	winner, loser := peer(2, 2, 2), peer(2, 9, 9)
	invalid := peer(1, 3, 3) // this node's subnet
	s := NewSelector(vxNode, ownSubnet)
	reset := func(peers ...Peer) func() []Rejection {
		return func() []Rejection {
			sel, err := s.Reset(peers)
			if err != nil {
				t.Fatal(err)
			}
			return sel.Rejected
		}
	}
	update := func(chs ...Changes) func() []Rejection {
		return func() []Rejection {
			var rs []Rejection
			for _, ch := range chs {
				d, err := s.Update(ch)
				if err != nil {
					t.Fatal(err)
				}
				rs = append(rs, d.Rejected...)
			}
			return rs
		}
	}
	tunneled := winner
	tunneled.TunnelIP = netip.MustParseAddr("192.168.1.2")
	steps := []struct {
		name string
		do   func() []Rejection
		want string
	}{
		{"reset", reset(winner, loser), "10.244.2.0/24@192.168.0.9: another peer has the same subnet"},
		{"unrelated change", update(Changes{Set: []Peer{invalid}}), "10.244.1.0/24@192.168.0.3: subnet overlaps this node's subnet"},
		{"same component changes", update(Changes{Set: []Peer{tunneled}}), ""},
		{"reset with the same set", reset(winner, loser, invalid), ""},
		{"winner leaves", update(Changes{Removed: []PeerKey{winner.Key()}}), ""},
		{"winner back", update(Changes{Set: []Peer{winner}}), "10.244.2.0/24@192.168.0.9: another peer has the same subnet"},
		{"invalid peer leaves and comes back", update(Changes{Removed: []PeerKey{invalid.Key()}}, Changes{Set: []Peer{invalid}}),
			"10.244.1.0/24@192.168.0.3: subnet overlaps this node's subnet"},
	}
	for _, step := range steps {
		if got := rejected(step.do()); got != step.want {
			t.Errorf("%s: reported %q, want %q", step.name, got, step.want)
		}
	}
}

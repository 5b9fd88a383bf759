package kernel

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/datapath"
)

// vxPeer is a vxlan peer with subnet 10.244.<i>.0/24 on node 192.168.0.<i>.
func vxPeer(i byte, mac net.HardwareAddr) datapath.Peer {
	return datapath.Peer{
		Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, i, 0}), 24),
		NodeIP: netip.AddrFrom4([4]byte{192, 168, 0, i}), VtepMAC: mac, Mode: datapath.ModeVXLAN,
	}
}

// applyChanges makes the subnet changes to s as Apply does and returns the
// writes.
func applyChanges(s *desired, changes ...datapath.SubnetChange) writes {
	e := newEdit()
	for _, c := range changes {
		s.set(cmp.Or(c.New.Subnet, c.Old.Subnet), c.New, e)
	}
	return e.writes(s)
}

func TestEditWrites(t *testing.T) {
	mac4 := net.HardwareAddr{2, 0, 0, 0, 0, 4}
	mac5 := net.HardwareAddr{2, 0, 0, 0, 0, 5}
	movedNode := vxPeer(3, mac3)
	movedNode.NodeIP = ip("192.168.0.33")
	hostGW := vxPeer(4, nil)
	hostGW.Mode = datapath.ModeHostGW
	prev := []datapath.Peer{vxPeer(2, mac2), vxPeer(3, mac3), vxPeer(4, mac4), vxPeer(5, mac5)}
	s := buildDesired(prev, [2]int{7, 8}, 2)
	w := applyChanges(s,
		datapath.SubnetChange{Old: prev[1], New: movedNode},                       // NodeIP changed: only its fdb destination differs
		datapath.SubnetChange{Old: prev[2], New: hostGW},                          // became host-gw: route changed, neighbour and fdb removed
		datapath.SubnetChange{Old: prev[3], New: vxPeer(5, mac4)},                 // VtepMAC changed: neighbour changed, mac5 removed, mac4 moved
		datapath.SubnetChange{New: vxPeer(6, net.HardwareAddr{2, 0, 0, 0, 0, 6})}, // new
	)
	// Set entries carry the new values, deleted ones the old; the
	// unchanged peer 2 is not written.
	if len(w.routeSet) != 2 || w.routeSet[0] != (route{dst: pfx("10.244.4.0/24"), gw: ip("192.168.0.4"), link: 2}) ||
		w.routeSet[1] != (route{dst: pfx("10.244.6.0/24"), gw: ip("10.244.6.0"), link: 7, onlink: true}) || len(w.routeDel) != 0 {
		t.Errorf("route writes set %v del %v", w.routeSet, w.routeDel)
	}
	if len(w.neighSet) != 2 || !w.neighSet[0].IP.Equal(net.ParseIP("10.244.5.0")) || w.neighSet[0].HardwareAddr.String() != mac4.String() ||
		!w.neighSet[1].IP.Equal(net.ParseIP("10.244.6.0")) || w.neighSet[0].State != netlink.NUD_PERMANENT || w.neighSet[0].LinkIndex != 7 {
		t.Errorf("neighbour sets %v", w.neighSet)
	}
	if len(w.neighDel) != 1 || !w.neighDel[0].IP.Equal(net.ParseIP("10.244.4.0")) || w.neighDel[0].HardwareAddr.String() != mac4.String() {
		t.Errorf("neighbour deletes %v", w.neighDel)
	}
	if len(w.fdbSet) != 3 || !w.fdbSet[0].IP.Equal(net.ParseIP("192.168.0.33")) || // in MAC order
		w.fdbSet[1].HardwareAddr.String() != mac4.String() || !w.fdbSet[1].IP.Equal(net.ParseIP("192.168.0.5")) ||
		w.fdbSet[2].HardwareAddr.String() != "02:00:00:00:00:06" ||
		w.fdbSet[1].Family != unix.AF_BRIDGE || w.fdbSet[1].Flags != netlink.NTF_SELF || w.fdbSet[1].LinkIndex != 7 {
		t.Errorf("fdb sets %v", w.fdbSet)
	}
	if len(w.fdbDel) != 1 || w.fdbDel[0].HardwareAddr.String() != mac5.String() || !w.fdbDel[0].IP.Equal(net.ParseIP("192.168.0.5")) {
		t.Errorf("fdb deletes %v", w.fdbDel)
	}

	// Removing every peer deletes every entry with its previous values.
	var gone []datapath.SubnetChange
	for _, p := range []datapath.Peer{vxPeer(2, mac2), movedNode, hostGW, vxPeer(5, mac4), vxPeer(6, net.HardwareAddr{2, 0, 0, 0, 0, 6})} {
		gone = append(gone, datapath.SubnetChange{Old: p})
	}
	w = applyChanges(s, gone...)
	if len(w.routeSet)+len(w.neighSet)+len(w.fdbSet) != 0 || len(w.routeDel) != 5 || len(w.neighDel) != 4 || len(w.fdbDel) != 4 {
		t.Errorf("removing all: %+v", w)
	}
	if r := routeOf(w.routeDel[2]); r != (route{dst: pfx("10.244.4.0/24"), gw: ip("192.168.0.4"), link: 2}) {
		t.Errorf("host-gw route deleted as %v", r)
	}
	if len(s.routes)+len(s.macs)+len(s.fdb) != 0 {
		t.Errorf("state left after removing all: %+v", s)
	}
}

// TestEditSharedEntries: a node's subnets share its fdb entry, which stays
// while one of them does; subnets with one address share its neighbour
// entry, which points to the longer one's VTEP.
func TestEditSharedEntries(t *testing.T) {
	a, b := vxPeer(2, mac2), vxPeer(2, mac2)
	b.Subnet = pfx("10.244.20.0/24")
	s := buildDesired([]datapath.Peer{a, b}, [2]int{7, 8}, 2)
	w := applyChanges(s, datapath.SubnetChange{Old: a})
	if len(w.fdbSet)+len(w.fdbDel) != 0 || len(w.routeDel) != 1 || len(w.neighDel) != 1 || s.fdb[keyOf(mac2, ipv4)].subnets != 1 {
		t.Errorf("removing one of two subnets of a node: writes %+v, fdb %+v", w, s.fdb)
	}
	w = applyChanges(s, datapath.SubnetChange{Old: b})
	if len(w.fdbDel) != 1 || len(s.fdb) != 0 {
		t.Errorf("removing the last subnet of a node: writes %+v, fdb %+v", w, s.fdb)
	}

	wide, narrow := vxPeer(3, mac3), vxPeer(4, mac2)
	narrow.Subnet = pfx("10.244.3.0/25")
	w = applyChanges(s, datapath.SubnetChange{New: wide})
	if len(w.neighSet) != 1 || w.neighSet[0].HardwareAddr.String() != mac3.String() {
		t.Errorf("first subnet at 10.244.3.0: neighbour sets %v", w.neighSet)
	}
	w = applyChanges(s, datapath.SubnetChange{New: narrow})
	if len(w.neighSet) != 1 || w.neighSet[0].HardwareAddr.String() != mac2.String() || len(w.routeSet) != 1 {
		t.Errorf("longer subnet at 10.244.3.0: writes %+v", w)
	}
	w = applyChanges(s, datapath.SubnetChange{Old: narrow})
	if len(w.neighSet) != 1 || w.neighSet[0].HardwareAddr.String() != mac3.String() || len(w.neighDel) != 0 {
		t.Errorf("longer subnet gone: neighbour writes %+v", w)
	}
	if got := s.neighs(ipv4); len(got) != 1 || got[ip("10.244.3.0")].String() != mac3.String() {
		t.Errorf("neighs() = %v", got)
	}
}

// kernelModel is the kernel state writes make, by key.
type kernelModel struct {
	routes map[netip.Prefix]route
	neighs map[netip.Addr]string
	fdb    map[string]netip.Addr // by device index and MAC
}

// fdbKey is an fdb entry's key in a kernelModel: its device and MAC.
func fdbKey(index int, mac net.HardwareAddr) string { return fmt.Sprintf("%d %s", index, mac) }

// write applies w to k, failing t on a write that changes nothing.
func (k *kernelModel) write(t *testing.T, step string, w writes) {
	t.Helper()
	for _, f := range w.fdbSet {
		key := fdbKey(f.LinkIndex, f.HardwareAddr)
		if dst, ok := k.fdb[key]; ok && dst == addrOf(f.IP) {
			t.Fatalf("%s: fdb %s rewritten unchanged", step, key)
		}
		k.fdb[key] = addrOf(f.IP)
	}
	for _, f := range w.fdbDel {
		key := fdbKey(f.LinkIndex, f.HardwareAddr)
		if _, ok := k.fdb[key]; !ok {
			t.Fatalf("%s: fdb %s deleted but absent", step, key)
		}
		delete(k.fdb, key)
	}
	for _, n := range w.neighSet {
		if mac, ok := k.neighs[addrOf(n.IP)]; ok && mac == n.HardwareAddr.String() {
			t.Fatalf("%s: neighbour %s rewritten unchanged", step, n.IP)
		}
		k.neighs[addrOf(n.IP)] = n.HardwareAddr.String()
	}
	for _, n := range w.neighDel {
		if _, ok := k.neighs[addrOf(n.IP)]; !ok {
			t.Fatalf("%s: neighbour %s deleted but absent", step, n.IP)
		}
		delete(k.neighs, addrOf(n.IP))
	}
	for _, r := range w.routeSet {
		if k.routes[r.dst] == r {
			t.Fatalf("%s: route %s rewritten unchanged", step, r)
		}
		k.routes[r.dst] = r
	}
	for _, r := range w.routeDel {
		if k.routes[prefixOf(r.Dst)] != routeOf(r) {
			t.Fatalf("%s: route %s deleted but absent", step, routeOf(r))
		}
		delete(k.routes, prefixOf(r.Dst))
	}
}

// modelOf is the kernel state selected peers ask for, as
// FLANNEL-COMPAT.md describes it: a route per subnet; for vxlan a neighbour
// entry at the subnet's address (the longest subnet's when several share
// it) and an fdb entry per VTEP MAC, on the device of the subnet's family
// (index 7 IPv4, 8 IPv6).
func modelOf(selected map[netip.Prefix]datapath.Peer) kernelModel {
	k := kernelModel{routes: map[netip.Prefix]route{}, neighs: map[netip.Addr]string{}, fdb: map[string]netip.Addr{}}
	bits := map[netip.Addr]int{}
	for sub, p := range selected {
		if p.Mode == datapath.ModeHostGW {
			k.routes[sub] = route{dst: sub, gw: p.NodeIP, link: 2}
			continue
		}
		dev := 7
		if sub.Addr().Is6() {
			dev = 8
		}
		k.routes[sub] = route{dst: sub, gw: sub.Addr(), link: dev, onlink: true}
		if b, ok := bits[sub.Addr()]; !ok || sub.Bits() > b {
			bits[sub.Addr()] = sub.Bits()
			k.neighs[sub.Addr()] = p.VtepMAC.String()
		}
		k.fdb[fdbKey(dev, p.VtepMAC)] = p.NodeIP
	}
	return k
}

// TestEditMatchesRebuild makes random subnet changes (subnets that share an
// address, nodes with several subnets, VtepMACs that move between nodes,
// peers that turn host-gw, both families with the same MACs) and checks that the writes turn the kernel
// state into what building the state anew asks for, touching nothing
// unchanged.
func TestEditMatchesRebuild(t *testing.T) {
	subnets := []netip.Prefix{pfx("10.244.2.0/24"), pfx("10.244.2.0/25"), pfx("10.244.2.0/23"), pfx("10.244.3.0/24"), pfx("10.244.4.0/24"), pfx("10.244.5.0/24"),
		pfx("fd10:244:0:2::/64"), pfx("fd10:244:0:2::/65"), pfx("fd10:244:0:3::/64")}
	macs := []net.HardwareAddr{mac2, mac3, {2, 0, 0, 0, 0, 4}}
	for seed := range uint64(50) {
		rnd := rand.New(rand.NewPCG(seed, 13))
		selected := map[netip.Prefix]datapath.Peer{}
		s := buildDesired(nil, [2]int{7, 8}, 2)
		k := modelOf(selected)
		for i := range 200 {
			step := fmt.Sprintf("seed %d, step %d", seed, i)
			next := map[netip.Prefix]datapath.Peer{}
			for sub, p := range selected {
				next[sub] = p
			}
			for range 1 + rnd.IntN(3) {
				sub := subnets[rnd.IntN(len(subnets))]
				node := byte(1 + rnd.IntN(3))
				nodeIP := netip.AddrFrom4([4]byte{192, 168, 0, node})
				if sub.Addr().Is6() {
					nodeIP = netip.AddrFrom16([16]byte{0xfd, 15: node})
				}
				p := datapath.Peer{Subnet: sub, NodeIP: nodeIP, VtepMAC: macs[rnd.IntN(len(macs))], Mode: datapath.ModeVXLAN}
				switch rnd.IntN(4) {
				case 0:
					delete(next, sub)
					continue
				case 1:
					p.Mode, p.VtepMAC = datapath.ModeHostGW, nil
				}
				next[sub] = p
			}
			if !oneNodePerMAC(next) {
				continue // not a selection
			}
			var changes []datapath.SubnetChange
			for _, sub := range subnets {
				if old, now := selected[sub], next[sub]; !datapath.SamePeer(old, now) {
					changes = append(changes, datapath.SubnetChange{Old: old, New: now})
				}
			}
			k.write(t, step, applyChanges(s, changes...))
			selected = next
			if got, want := fmt.Sprint(k), fmt.Sprint(modelOf(selected)); got != want {
				t.Fatalf("%s: kernel after the writes\n%s\nwant\n%s", step, got, want)
			}
			// Apply leaves the state Sync would build.
			want := buildDesired(slices.Collect(maps.Values(selected)), [2]int{7, 8}, 2)
			if got, want := fmt.Sprint(*s), fmt.Sprint(*want); got != want {
				t.Fatalf("%s: state\n%s\nwant\n%s", step, got, want)
			}
		}
	}
}

// oneNodePerMAC reports whether every vxlan VtepMAC of a family in peers is
// one node IP's, as in a selection.
func oneNodePerMAC(peers map[netip.Prefix]datapath.Peer) bool {
	owner := map[string]netip.Addr{}
	for _, p := range peers {
		if p.Mode != datapath.ModeVXLAN {
			continue
		}
		key := fmt.Sprint(p.NodeIP.Is6(), p.VtepMAC)
		if o, ok := owner[key]; ok && o != p.NodeIP {
			return false
		}
		owner[key] = p.NodeIP
	}
	return true
}

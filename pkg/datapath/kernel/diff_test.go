package kernel

import (
	"net"
	"net/netip"
	"slices"
	"strings"
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

func TestDiffKeys(t *testing.T) {
	prev := map[string]int{"same": 1, "changed": 2, "gone": 3, "gone2": 4}
	next := map[string]int{"same": 1, "changed": 5, "new": 6, "a-new": 7}
	d := diffKeys(prev, next, func(a, b int) bool { return a == b }, strings.Compare)
	if !slices.Equal(d.added, []string{"a-new", "new"}) || !slices.Equal(d.changed, []string{"changed"}) ||
		!slices.Equal(d.removed, []string{"gone", "gone2"}) {
		t.Errorf("diff = %+v, want added [a-new new], changed [changed], removed [gone gone2]", d)
	}
	if d := diffKeys(next, next, func(a, b int) bool { return a == b }, strings.Compare); len(d.added)+len(d.changed)+len(d.removed) != 0 {
		t.Errorf("diff of equal maps = %+v, want empty", d)
	}
}

func TestDiffDesired(t *testing.T) {
	mac4 := net.HardwareAddr{2, 0, 0, 0, 0, 4}
	mac5 := net.HardwareAddr{2, 0, 0, 0, 0, 5}
	movedNode := vxPeer(3, mac3)
	movedNode.NodeIP = ip("192.168.0.33")
	hostGW := vxPeer(4, nil)
	hostGW.Mode = datapath.ModeHostGW
	prev := buildDesired([]datapath.Peer{vxPeer(2, mac2), vxPeer(3, mac3), vxPeer(4, mac4), vxPeer(5, mac5)}, 7, 2)
	next := buildDesired([]datapath.Peer{
		vxPeer(2, mac2), // unchanged
		movedNode,       // NodeIP changed: only its fdb destination differs
		hostGW,          // became host-gw: route changed, neighbour and fdb removed
		vxPeer(5, mac4), // VtepMAC changed: neighbour changed, fdb of mac5 removed, mac4 added
		vxPeer(6, net.HardwareAddr{2, 0, 0, 0, 0, 6}), // new
	}, 7, 2)
	d := diffDesired(prev, next)

	wantRoutes := keyDiff[netip.Prefix]{added: []netip.Prefix{pfx("10.244.6.0/24")}, changed: []netip.Prefix{pfx("10.244.4.0/24")}}
	wantNeighs := keyDiff[netip.Addr]{
		added:   []netip.Addr{ip("10.244.6.0")},
		changed: []netip.Addr{ip("10.244.5.0")},
		removed: []netip.Addr{ip("10.244.4.0")},
	}
	wantFDB := keyDiff[string]{
		added:   []string{"02:00:00:00:00:06"},
		changed: []string{mac3.String(), mac4.String()}, // mac4 moved from node .4 to node .5
		removed: []string{mac5.String()},
	}
	checkKeys(t, "routes", d.routes, wantRoutes)
	checkKeys(t, "neighs", d.neighs, wantNeighs)
	checkKeys(t, "fdb", d.fdb, wantFDB)
	if got := d.counts(); !slices.Equal(got, []any{"added", 3, "changed", 4, "removed", 2}) {
		t.Errorf("counts = %v", got)
	}

	w := writesFor(d, prev, next, 7)
	// Set entries carry the next state's values, deleted ones the previous.
	if len(w.routeSet) != 2 || w.routeSet[0] != next.routes[pfx("10.244.6.0/24")] ||
		w.routeSet[1] != (route{dst: pfx("10.244.4.0/24"), gw: ip("192.168.0.4"), link: 2}) || len(w.routeDel) != 0 {
		t.Errorf("route writes set %v del %v", w.routeSet, w.routeDel)
	}
	if len(w.neighSet) != 2 || !w.neighSet[0].IP.Equal(net.ParseIP("10.244.6.0")) ||
		!w.neighSet[1].IP.Equal(net.ParseIP("10.244.5.0")) || w.neighSet[1].HardwareAddr.String() != mac4.String() ||
		w.neighSet[1].State != netlink.NUD_PERMANENT || w.neighSet[1].LinkIndex != 7 {
		t.Errorf("neighbour sets %v", w.neighSet)
	}
	if len(w.neighDel) != 1 || !w.neighDel[0].IP.Equal(net.ParseIP("10.244.4.0")) || w.neighDel[0].HardwareAddr.String() != mac4.String() {
		t.Errorf("neighbour deletes %v", w.neighDel)
	}
	if len(w.fdbSet) != 3 || !w.fdbSet[1].IP.Equal(net.ParseIP("192.168.0.33")) || !w.fdbSet[2].IP.Equal(net.ParseIP("192.168.0.5")) ||
		w.fdbSet[2].Family != unix.AF_BRIDGE || w.fdbSet[2].Flags != netlink.NTF_SELF || w.fdbSet[2].LinkIndex != 7 {
		t.Errorf("fdb sets %v", w.fdbSet)
	}
	if len(w.fdbDel) != 1 || w.fdbDel[0].HardwareAddr.String() != mac5.String() || !w.fdbDel[0].IP.Equal(net.ParseIP("192.168.0.5")) {
		t.Errorf("fdb deletes %v", w.fdbDel)
	}

	// Removing every peer deletes every entry with its previous values.
	empty := buildDesired(nil, 7, 2)
	w = writesFor(diffDesired(next, empty), next, empty, 7)
	if len(w.routeSet)+len(w.neighSet)+len(w.fdbSet) != 0 || len(w.routeDel) != 5 || len(w.neighDel) != 4 || len(w.fdbDel) != 4 {
		t.Errorf("removing all: %+v", w)
	}
	if r := routeOf(w.routeDel[2]); r != (route{dst: pfx("10.244.4.0/24"), gw: ip("192.168.0.4"), link: 2}) {
		t.Errorf("host-gw route deleted as %v", r)
	}
}

// checkKeys fails t unless got equals want.
func checkKeys[K comparable](t *testing.T, kind string, got, want keyDiff[K]) {
	t.Helper()
	if !slices.Equal(got.added, want.added) || !slices.Equal(got.changed, want.changed) || !slices.Equal(got.removed, want.removed) {
		t.Errorf("%s diff = %+v, want %+v", kind, got, want)
	}
}

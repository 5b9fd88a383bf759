package daemon

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/lease"
)

var (
	network = netip.MustParsePrefix("10.244.0.0/16")
	ownNet  = netip.MustParsePrefix("10.244.1.0/24")
)

const goodData = `{"VNI":1,"VtepMAC":"c6:d2:8e:11:22:33"}`

func vx(subnet, ip, data string) lease.Lease {
	return lease.Lease{Subnet: netip.MustParsePrefix(subnet), Attrs: lease.Attrs{
		PublicIP: netip.MustParseAddr(ip), BackendType: "vxlan", BackendData: json.RawMessage(data)}}
}

func put(key string, l lease.Lease) lease.Change { return lease.Change{Key: key, Lease: l} }

// describe renders the keys a change touched as sorted "+subnet=ip" (in
// the table) and "-subnet=ip" (gone) items.
func describe(tab *peerTable, keys []datapath.PeerKey) string {
	var out []string
	for _, k := range keys {
		sign := "-"
		if _, ok := tab.Peer(k); ok {
			sign = "+"
		}
		out = append(out, sign+k.Subnet.String()+"="+k.NodeIP.String())
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func TestPeerTableFiltersLeases(t *testing.T) {
	hostgw := vx("10.244.5.0/24", "192.0.2.5", goodData)
	hostgw.Attrs.BackendType = "host-gw"
	tab := newPeerTable("vxlan", network, netip.Prefix{}, lease.Lease{Subnet: ownNet})
	keys := tab.update(lease.Update{Full: true, Changes: []lease.Change{
		put("own", vx("10.244.1.0/24", "192.0.2.1", goodData)),
		put("kept", vx("10.244.2.0/24", "192.0.2.2", goodData)),
		put("no-mac", vx("10.244.3.0/24", "192.0.2.3", `{}`)),
		put("outside", vx("10.245.4.0/24", "192.0.2.4", goodData)),
		put("other-backend", hostgw),
		put("bad-json", vx("10.244.6.0/24", "192.0.2.6", `nope`)),
	}})
	if got := describe(tab, keys); got != "+10.244.2.0/24=192.0.2.2" {
		t.Fatalf("changes %q, want only the usable lease", got)
	}
	if p := tab.Peers(); len(p) != 1 || p[0].VtepMAC.String() != "c6:d2:8e:11:22:33" {
		t.Fatalf("peers %+v", p)
	}

	// host-gw leases carry no MAC and need none.
	hostgw.Attrs.BackendData = nil
	tab = newPeerTable("host-gw", network, netip.Prefix{}, lease.Lease{Subnet: ownNet})
	tab.update(lease.Update{Full: true, Changes: []lease.Change{put("a", hostgw)}})
	if p := tab.Peers(); len(p) != 1 || p[0].VtepMAC != nil {
		t.Fatalf("host-gw peer: %+v", p)
	}
}

// TestPeerTableChanges: each update yields only the peers it changed, and
// a full update removes the keys it does not name.
func TestPeerTableChanges(t *testing.T) {
	tab := newPeerTable("vxlan", network, netip.Prefix{}, lease.Lease{Subnet: ownNet})
	tab.update(lease.Update{Full: true, Changes: []lease.Change{
		put("a", vx("10.244.2.0/24", "192.0.2.2", goodData)),
		put("b", vx("10.244.3.0/24", "192.0.2.3", goodData)),
	}})
	steps := []struct {
		u    lease.Update
		want string
	}{
		{lease.Update{Changes: []lease.Change{put("c", vx("10.244.4.0/24", "192.0.2.4", goodData))}}, "+10.244.4.0/24=192.0.2.4"},
		// A new PublicIP for one key: the old peer goes, the new one comes.
		{lease.Update{Changes: []lease.Change{put("a", vx("10.244.2.0/24", "192.0.2.22", goodData))}}, "+10.244.2.0/24=192.0.2.22 -10.244.2.0/24=192.0.2.2"},
		{lease.Update{Changes: []lease.Change{{Key: "b", Removed: true}}}, "-10.244.3.0/24=192.0.2.3"},
		// A lease that became unusable is removed.
		{lease.Update{Changes: []lease.Change{put("c", vx("10.244.4.0/24", "192.0.2.4", `{}`))}}, "-10.244.4.0/24=192.0.2.4"},
		{lease.Update{Full: true, Changes: []lease.Change{put("d", vx("10.244.5.0/24", "192.0.2.5", goodData))}}, "+10.244.5.0/24=192.0.2.5 -10.244.2.0/24=192.0.2.22"},
	}
	for i, s := range steps {
		if got := describe(tab, tab.update(s.u)); got != s.want {
			t.Fatalf("step %d: changes %q, want %q", i, got, s.want)
		}
	}
	if tab.Len() != 1 {
		t.Fatalf("%d peers left, want 1", tab.Len())
	}
}

// TestPeerTableSharedKey: two source keys with the same subnet and node IP
// make one peer, which stays while either holds it.
func TestPeerTableSharedKey(t *testing.T) {
	tab := newPeerTable("vxlan", network, netip.Prefix{}, lease.Lease{Subnet: ownNet})
	tab.update(lease.Update{Full: true, Changes: []lease.Change{
		put("node-b", vx("10.244.2.0/24", "192.0.2.2", goodData)),
		put("node-a", vx("10.244.2.0/24", "192.0.2.2", `{"VNI":1,"VtepMAC":"c6:d2:8e:00:00:0a"}`)),
	}})
	if p := tab.Peers(); len(p) != 1 || p[0].VtepMAC.String() != "c6:d2:8e:00:00:0a" {
		t.Fatalf("peers %+v, want one, from the first key (node-a)", p)
	}
	keys := tab.update(lease.Update{Changes: []lease.Change{{Key: "node-a", Removed: true}}})
	if p, ok := tab.Peer(keys[0]); len(keys) != 1 || !ok || p.VtepMAC.String() != "c6:d2:8e:11:22:33" {
		t.Fatalf("after node-a left: %v %+v, want node-b's peer", keys, p)
	}
	if got := describe(tab, tab.update(lease.Update{Changes: []lease.Change{{Key: "node-b", Removed: true}}})); got != "-10.244.2.0/24=192.0.2.2" {
		t.Fatalf("after node-b left: %q", got)
	}
}

// TestPeerTableOwnMoves: when the own subnet moves, the lease holding the
// new one stops being a peer and the one on the old one becomes a peer.
func TestPeerTableOwnMoves(t *testing.T) {
	tab := newPeerTable("vxlan", network, netip.Prefix{}, lease.Lease{Subnet: ownNet})
	tab.update(lease.Update{Full: true, Changes: []lease.Change{
		put("old", vx("10.244.1.0/24", "192.0.2.9", goodData)),
		put("new", vx("10.244.7.0/24", "192.0.2.1", goodData)),
	}})
	got := describe(tab, tab.setOwn(lease.Lease{Subnet: netip.MustParsePrefix("10.244.7.0/24")}))
	if want := "+10.244.1.0/24=192.0.2.9 -10.244.7.0/24=192.0.2.1"; got != want {
		t.Fatalf("changes %q, want %q", got, want)
	}
}

var (
	network6 = netip.MustParsePrefix("fd10:244::/56")
	ownNet6  = netip.MustParsePrefix("fd10:244:0:1::/64")
)

const goodData6 = `{"VNI":1,"VtepMAC":"3e:1a:a9:fe:f1:0a"}`

// dual is a dual-stack vxlan lease; subnet "" leaves the IPv4 half out.
func dual(subnet, ip, subnet6, ip6, data6 string) lease.Lease {
	l := lease.Lease{Attrs: lease.Attrs{BackendType: "vxlan"}}
	if subnet != "" {
		l = vx(subnet, ip, goodData)
	}
	if subnet6 != "" {
		a := netip.MustParseAddr(ip6)
		l.IPv6Subnet, l.Attrs.PublicIPv6, l.Attrs.BackendV6Data = netip.MustParsePrefix(subnet6), &a, json.RawMessage(data6)
	}
	return l
}

// TestPeerTableDualStack: a dual-stack lease is two peers, each half with
// its family's public IP and VTEP MAC, and each half is kept or left out
// on its own.
func TestPeerTableDualStack(t *testing.T) {
	tab := newPeerTable("vxlan", network, network6, lease.Lease{Subnet: ownNet, IPv6Subnet: ownNet6})
	keys := tab.update(lease.Update{Full: true, Changes: []lease.Change{
		put("own", dual("10.244.1.0/24", "192.0.2.1", "fd10:244:0:1::/64", "fd00::1", goodData6)),
		put("a", dual("10.244.2.0/24", "192.0.2.2", "fd10:244:0:2::/64", "fd00::2", goodData6)),
		put("v4-only", vx("10.244.3.0/24", "192.0.2.3", goodData)),
		put("v6-only", dual("", "", "fd10:244:0:4::/64", "fd00::4", goodData6)),
		put("bad-v6-mac", dual("10.244.5.0/24", "192.0.2.5", "fd10:244:0:5::/64", "fd00::5", `{}`)),
		put("v6-outside", dual("10.244.6.0/24", "192.0.2.6", "fd99::/64", "fd00::6", goodData6)),
		put("v6-v4-ip", dual("10.244.7.0/24", "192.0.2.7", "fd10:244:0:7::/64", "::ffff:192.0.2.7", goodData6)),
	}})
	want := "+10.244.2.0/24=192.0.2.2 +10.244.3.0/24=192.0.2.3 +10.244.5.0/24=192.0.2.5 +10.244.6.0/24=192.0.2.6 +10.244.7.0/24=192.0.2.7 " +
		"+fd10:244:0:2::/64=fd00::2 +fd10:244:0:4::/64=fd00::4"
	if got := describe(tab, keys); got != want {
		t.Fatalf("changes\n got %q\nwant %q", got, want)
	}
	p, ok := tab.Peer(datapath.PeerKey{Subnet: netip.MustParsePrefix("fd10:244:0:2::/64"), NodeIP: netip.MustParseAddr("fd00::2")})
	if !ok || p.VtepMAC.String() != "3e:1a:a9:fe:f1:0a" {
		t.Fatalf("IPv6 peer %+v, want BackendV6Data's VTEP MAC", p)
	}
	if p, _ := tab.Peer(datapath.PeerKey{Subnet: netip.MustParsePrefix("10.244.2.0/24"), NodeIP: netip.MustParseAddr("192.0.2.2")}); p.VtepMAC.String() != "c6:d2:8e:11:22:33" {
		t.Fatalf("IPv4 peer %+v, want BackendData's VTEP MAC", p)
	}
	// Removing a dual-stack lease removes both peers.
	if got := describe(tab, tab.update(lease.Update{Changes: []lease.Change{{Key: "a", Removed: true}}})); got != "-10.244.2.0/24=192.0.2.2 -fd10:244:0:2::/64=fd00::2" {
		t.Fatalf("removal: %q", got)
	}

	// With IPv6 off, IPv6 halves are left out.
	tab = newPeerTable("vxlan", network, netip.Prefix{}, lease.Lease{Subnet: ownNet})
	keys = tab.update(lease.Update{Full: true, Changes: []lease.Change{
		put("a", dual("10.244.2.0/24", "192.0.2.2", "fd10:244:0:2::/64", "fd00::2", goodData6)),
		put("v6-only", dual("", "", "fd10:244:0:4::/64", "fd00::4", goodData6)),
	}})
	if got := describe(tab, keys); got != "+10.244.2.0/24=192.0.2.2" {
		t.Fatalf("IPv4-only table: %q", got)
	}
	// IPv6 only: IPv4 halves are left out.
	tab = newPeerTable("vxlan", netip.Prefix{}, network6, lease.Lease{IPv6Subnet: ownNet6})
	keys = tab.update(lease.Update{Full: true, Changes: []lease.Change{
		put("a", dual("10.244.2.0/24", "192.0.2.2", "fd10:244:0:2::/64", "fd00::2", goodData6)),
	}})
	if got := describe(tab, keys); got != "+fd10:244:0:2::/64=fd00::2" {
		t.Fatalf("IPv6-only table: %q", got)
	}
}

// TestPeerTableOwnMovesPerFamily: when the own IPv6 subnet moves, only the
// IPv6 halves that hold the old or new one change.
func TestPeerTableOwnMovesPerFamily(t *testing.T) {
	tab := newPeerTable("vxlan", network, network6, lease.Lease{Subnet: ownNet, IPv6Subnet: ownNet6})
	tab.update(lease.Update{Full: true, Changes: []lease.Change{
		put("old", dual("10.244.9.0/24", "192.0.2.9", "fd10:244:0:1::/64", "fd00::9", goodData6)),
		put("new", dual("10.244.1.0/24", "192.0.2.1", "fd10:244:0:7::/64", "fd00::1", goodData6)),
	}})
	if n := tab.Len(); n != 2 {
		t.Fatalf("%d peers, want 2 (one half of each lease is ours)", n)
	}
	got := describe(tab, tab.setOwn(lease.Lease{Subnet: ownNet, IPv6Subnet: netip.MustParsePrefix("fd10:244:0:7::/64")}))
	if want := "+10.244.9.0/24=192.0.2.9 +fd10:244:0:1::/64=fd00::9 -fd10:244:0:7::/64=fd00::1"; got != want {
		t.Fatalf("changes %q, want %q", got, want)
	}
	if p, ok := tab.Peer(datapath.PeerKey{Subnet: netip.MustParsePrefix("fd10:244:0:1::/64"), NodeIP: netip.MustParseAddr("fd00::9")}); !ok || p.VtepMAC.String() != "3e:1a:a9:fe:f1:0a" {
		t.Fatalf("peer on the old own subnet %+v, want it with its VTEP MAC", p)
	}
}

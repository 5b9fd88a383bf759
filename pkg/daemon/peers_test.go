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
	tab := newPeerTable("vxlan", network, ownNet)
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
	tab = newPeerTable("host-gw", network, ownNet)
	tab.update(lease.Update{Full: true, Changes: []lease.Change{put("a", hostgw)}})
	if p := tab.Peers(); len(p) != 1 || p[0].VtepMAC != nil {
		t.Fatalf("host-gw peer: %+v", p)
	}
}

// TestPeerTableChanges: each update yields only the peers it changed, and
// a full update removes the keys it does not name.
func TestPeerTableChanges(t *testing.T) {
	tab := newPeerTable("vxlan", network, ownNet)
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
	tab := newPeerTable("vxlan", network, ownNet)
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
	tab := newPeerTable("vxlan", network, ownNet)
	tab.update(lease.Update{Full: true, Changes: []lease.Change{
		put("old", vx("10.244.1.0/24", "192.0.2.9", goodData)),
		put("new", vx("10.244.7.0/24", "192.0.2.1", goodData)),
	}})
	got := describe(tab, tab.setOwn(netip.MustParsePrefix("10.244.7.0/24")))
	if want := "+10.244.1.0/24=192.0.2.9 -10.244.7.0/24=192.0.2.1"; got != want {
		t.Fatalf("changes %q, want %q", got, want)
	}
}

package ebpf

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/pkg/datapath"
)

// testNodeConfig is a vxlan node whose peers the tests below select.
var testNodeConfig = datapath.Node{
	NodeIP: netip.MustParseAddr("192.168.0.1"), Network: netip.MustParsePrefix("10.244.0.0/16"), Backend: datapath.ModeVXLAN,
}

// vxlanPeer is a peer in subnet 10.244.<i>.0/24 leased by nodeIP.
func vxlanPeer(i int, nodeIP string) datapath.Peer {
	return datapath.Peer{
		Subnet:  netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i)),
		NodeIP:  netip.MustParseAddr(nodeIP),
		VtepMAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(i)},
	}
}

// TestDesiredSharedNodeIP: two leases of one node IP both go into the remote
// subnets map, as the kernel datapath routes both; the known nodes map counts
// both leases for the address. Peers the selector rejects are left out. A
// peer's TunnelIP becomes a known node address too.
func TestDesiredSharedNodeIP(t *testing.T) {
	nodeIP := netip.MustParseAddr("192.168.0.2")
	low, high := vxlanPeer(2, nodeIP.String()), vxlanPeer(3, nodeIP.String())
	bad := datapath.Peer{Subnet: netip.MustParsePrefix("10.99.0.0/24"), NodeIP: netip.MustParseAddr("192.168.0.9"), VtepMAC: high.VtepMAC}
	sel, err := datapath.NewSelector(testNodeConfig, netip.Prefix{}).Reset([]datapath.Peer{high, bad, low})
	if err != nil {
		t.Fatal(err)
	}
	w := desired(sel.Peers)
	if len(w.peers.have) != 2 {
		t.Fatalf("remote subnets %v, want %s and %s", w.peers.have, low.Subnet, high.Subnet)
	}
	for _, p := range []datapath.Peer{low, high} {
		if v, ok := w.peers.have[lpmKey(p.Subnet)]; !ok || v.NodeIp != addrKey(nodeIP) || v.VtepMac != mac6(p.VtepMAC) {
			t.Errorf("remote subnet %s = %+v (present %v)", p.Subnet, v, ok)
		}
	}
	if len(w.nodes.have) != 1 || w.nodes.have[addrKey(nodeIP)] != (weftKnownNode{Leases: 2}) {
		t.Errorf("known nodes %v, want only %s with 2 leases", w.nodes.have, nodeIP)
	}

	tunnel := netip.MustParseAddr("192.168.1.2")
	low.TunnelIP = tunnel
	w = desired([]datapath.Peer{low})
	if v := w.peers.have[lpmKey(low.Subnet)]; v.TunnelIp != addrKey(tunnel) {
		t.Errorf("remote subnet %s tunnel source %s, want %s", low.Subnet, addrOf(v.TunnelIp), tunnel)
	}
	if w.nodes.have[addrKey(tunnel)].Leases != 1 || w.nodes.have[addrKey(nodeIP)].Leases != 1 {
		t.Errorf("known nodes %v, want %s and %s with one lease each", w.nodes.have, nodeIP, tunnel)
	}
}

// describeWrites lists x's edits, sorted: "peers del 10.244.2.0/24",
// "nodes put 192.168.0.2 leases 1".
func describeWrites(x writes) string {
	var out []string
	for _, k := range x.peers.delKeys {
		out = append(out, fmt.Sprintf("peers del %s", prefixOfKey(k)))
	}
	for i, k := range x.peers.putKeys {
		v := x.peers.putVals[i]
		out = append(out, fmt.Sprintf("peers put %s via %s %s", prefixOfKey(k), addrOf(v.NodeIp), net.HardwareAddr(v.VtepMac[:])))
	}
	for _, k := range x.nodes.delKeys {
		out = append(out, fmt.Sprintf("nodes del %s", addrOf(k)))
	}
	for i, k := range x.nodes.putKeys {
		out = append(out, fmt.Sprintf("nodes put %s leases %d", addrOf(k), x.nodes.putVals[i].Leases))
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// TestWrittenChange: a change writes only the entries whose value changed
// (a node IP's lease count included), and leaves written equal to what the
// whole selection asks for.
func TestWrittenChange(t *testing.T) {
	sel := datapath.NewSelector(testNodeConfig, netip.MustParsePrefix("10.244.1.0/24"))
	all, err := sel.Reset([]datapath.Peer{vxlanPeer(2, "192.168.0.2"), vxlanPeer(3, "192.168.0.2"), vxlanPeer(4, "192.168.0.4")})
	if err != nil {
		t.Fatal(err)
	}
	w := desired(all.Peers)
	newMAC := vxlanPeer(4, "192.168.0.4")
	newMAC.VtepMAC = net.HardwareAddr{2, 0, 0, 0, 0, 0x44}
	for _, c := range []struct {
		name    string
		changes datapath.Changes
		want    []string
	}{
		{"nothing", datapath.Changes{}, nil},
		{"same peer again", datapath.Changes{Set: []datapath.Peer{vxlanPeer(2, "192.168.0.2")}}, nil},
		{"one of two leases of a node IP removed", datapath.Changes{Removed: []datapath.PeerKey{vxlanPeer(3, "192.168.0.2").Key()}}, []string{
			"nodes put 192.168.0.2 leases 1",
			"peers del 10.244.3.0/24",
		}},
		{"VtepMAC changed", datapath.Changes{Set: []datapath.Peer{newMAC}}, []string{
			"peers put 10.244.4.0/24 via 192.168.0.4 02:00:00:00:00:44",
		}},
		{"lease moved to another subnet of the node IP", datapath.Changes{
			Set:     []datapath.Peer{vxlanPeer(5, "192.168.0.4")},
			Removed: []datapath.PeerKey{newMAC.Key()},
		}, []string{
			"peers del 10.244.4.0/24",
			"peers put 10.244.5.0/24 via 192.168.0.4 02:00:00:00:00:05",
		}},
		{"subnet moved to another node IP", datapath.Changes{
			Set:     []datapath.Peer{vxlanPeer(5, "192.168.0.6")},
			Removed: []datapath.PeerKey{vxlanPeer(5, "192.168.0.4").Key()},
		}, []string{
			"nodes del 192.168.0.4",
			"nodes put 192.168.0.6 leases 1",
			"peers put 10.244.5.0/24 via 192.168.0.6 02:00:00:00:00:05",
		}},
		{"last lease of a node IP removed", datapath.Changes{Removed: []datapath.PeerKey{vxlanPeer(2, "192.168.0.2").Key()}}, []string{
			"nodes del 192.168.0.2",
			"peers del 10.244.2.0/24",
		}},
	} {
		delta, err := sel.Update(c.changes)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got, want := describeWrites(w.change(delta)), strings.Join(c.want, "\n"); got != want {
			t.Errorf("%s: writes\n%s\nwant\n%s", c.name, got, want)
		}
		whole := desired(sel.Selected())
		if !maps.Equal(w.peers.have, whole.peers.have) || !maps.Equal(w.nodes.have, whole.nodes.have) {
			t.Errorf("%s: written %v %v, want as the whole selection %v %v", c.name, w.peers.have, w.nodes.have, whole.peers.have, whole.nodes.have)
		}
	}
}

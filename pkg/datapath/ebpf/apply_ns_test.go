package ebpf

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/pkg/datapath"
)

// applyNodes starts two vxlan nodes with pods, syncs them and checks that
// pod traffic flows; it returns the first node's datapath and its peers.
func applyNodes(t *testing.T) ([2]*testNode, *Datapath, []datapath.Peer) {
	t.Helper()
	nodes := runningNodes(t, datapath.ModeVXLAN, AttachTCX)
	o := nodes[1]
	return nodes, nodes[0].dp.(*Datapath), []datapath.Peer{{Subnet: o.subnet, NodeIP: o.node.NodeIP, VtepMAC: o.info.VtepMAC}}
}

// fakePeer is a peer that is only programmed, never sent to.
func fakePeer(i int) datapath.Peer {
	return datapath.Peer{
		Subnet:  netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", 100+i)),
		NodeIP:  netip.MustParseAddr(fmt.Sprintf("192.168.50.%d", 100+i)),
		VtepMAC: net.HardwareAddr{0x02, 0xfe, 0, 0, 0, byte(i)},
	}
}

// checkMaps compares n's remote subnets and known nodes maps with what
// peers (vxlan) ask for.
func checkMaps(t *testing.T, n *testNode, peers []datapath.Peer) {
	t.Helper()
	var (
		wantPeers []PeerEntry
		wantNodes []KnownNode
		leases    = map[netip.Addr]int{}
	)
	for _, p := range peers {
		wantPeers = append(wantPeers, PeerEntry{Subnet: p.Subnet, NodeIP: p.NodeIP, VtepMAC: p.VtepMAC, Mode: datapath.ModeVXLAN})
		leases[p.NodeIP]++
	}
	for ip, n := range leases {
		wantNodes = append(wantNodes, KnownNode{NodeIP: ip, Leases: n})
	}
	slices.SortFunc(wantPeers, func(a, b PeerEntry) int { return a.Subnet.Compare(b.Subnet) })
	slices.SortFunc(wantNodes, func(a, b KnownNode) int { return a.NodeIP.Compare(b.NodeIP) })
	gotPeers, err := ReadPeers(n.bpfDir)
	must(t, err)
	gotNodes, err := ReadNodes(n.bpfDir)
	must(t, err)
	if fmt.Sprint(gotPeers) != fmt.Sprint(wantPeers) {
		t.Errorf("remote subnets map\n%v\nwant\n%v", gotPeers, wantPeers)
	}
	if !slices.Equal(gotNodes, wantNodes) {
		t.Errorf("known nodes map\n%v\nwant\n%v", gotNodes, wantNodes)
	}
}

// checkRoute checks whether the slow path routes subnet on n.
func checkRoute(t *testing.T, n *testNode, subnet netip.Prefix, want bool) {
	t.Helper()
	out := n.ns.MustRun(t, "ip", "-4", "route", "show", subnet.String())
	if got := strings.Contains(out, "flannel.1"); got != want {
		t.Errorf("route to %s via flannel.1: %v, want %v:\n%s", subnet, got, want, out)
	}
}

// dropPinned deletes key from the pinned map name of n, as a user might.
func dropPinned(t *testing.T, n *testNode, name string, key any) {
	t.Helper()
	m, err := pinnedMap(n.bpfDir, name)
	must(t, err)
	defer m.Close()
	must(t, m.Delete(key))
}

// TestApply: after a Sync, Apply adds, changes and removes peers in the
// maps and the slow path, while pod traffic keeps flowing.
func TestApply(t *testing.T) {
	nodes, dp, base := applyNodes(t)
	n, ctx := nodes[0], context.Background()
	moved := fakePeer(2)
	moved.NodeIP, moved.VtepMAC = netip.MustParseAddr("192.168.50.99"), net.HardwareAddr{0x02, 0xfe, 0, 0, 0, 99}
	steps := []struct {
		name    string
		changes datapath.Changes
		peers   []datapath.Peer // the peer set after the change
	}{
		{"add", datapath.Changes{Set: []datapath.Peer{fakePeer(1), fakePeer(2)}}, append(slices.Clone(base), fakePeer(1), fakePeer(2))},
		{"change", datapath.Changes{Set: []datapath.Peer{moved}, Removed: []datapath.PeerKey{fakePeer(2).Key()}}, append(slices.Clone(base), fakePeer(1), moved)},
		{"remove", datapath.Changes{Removed: []datapath.PeerKey{fakePeer(1).Key()}}, append(slices.Clone(base), moved)},
	}
	for _, s := range steps {
		must(t, dp.Apply(ctx, s.changes))
		t.Run(s.name, func(t *testing.T) {
			checkMaps(t, n, s.peers)
			for _, p := range s.peers {
				checkRoute(t, n, p.Subnet, true)
			}
		})
	}
	checkRoute(t, n, fakePeer(1).Subnet, false)
	checkFastPath(t, nodes, BackendVXLAN)
}

// TestApplyAfterFailure: a failed Apply makes the next one a full Sync,
// which repairs the maps and the slow path, not only what it changes.
func TestApplyAfterFailure(t *testing.T) {
	nodes, dp, base := applyNodes(t)
	n, ctx := nodes[0], context.Background()
	// Without its device the slow path cannot add the new peer's route.
	n.ns.MustRun(t, "ip", "link", "del", "flannel.1")
	if err := dp.Apply(ctx, datapath.Changes{Set: []datapath.Peer{fakePeer(1)}}); err == nil {
		t.Fatal("Apply without the vxlan device succeeded")
	}
	// The maps come before the slow path and do not depend on it.
	checkMaps(t, n, append(slices.Clone(base), fakePeer(1)))
	dropPinned(t, n, MapPeers, lpmKey(base[0].Subnet))
	must(t, dp.Apply(ctx, datapath.Changes{Set: []datapath.Peer{fakePeer(2)}}))
	peers := append(slices.Clone(base), fakePeer(1), fakePeer(2))
	checkMaps(t, n, peers)
	for _, p := range peers {
		checkRoute(t, n, p.Subnet, true)
	}
	waitPing(t, n.pod, nodes[1].podIP)
	checkFastPath(t, nodes, BackendVXLAN)
}

// TestApplyWritesOnlyTheChange: Apply writes the entries of the peers it
// is given and trusts what it wrote last for the others: an entry deleted
// behind its back stays deleted until the next Sync restores it. Removing
// one of two subnets a node IP leases keeps the node IP known, with one
// lease.
func TestApplyWritesOnlyTheChange(t *testing.T) {
	nodes, dp, base := applyNodes(t)
	n, ctx := nodes[0], context.Background()
	other := base[0]
	dropPinned(t, n, MapPeers, lpmKey(other.Subnet))
	dropPinned(t, n, MapNodes, addrKey(other.NodeIP))

	// second is a second subnet leased by fakePeer(1)'s node.
	second := fakePeer(2)
	second.NodeIP, second.VtepMAC = fakePeer(1).NodeIP, fakePeer(1).VtepMAC
	must(t, dp.Apply(ctx, datapath.Changes{Set: []datapath.Peer{fakePeer(1), second}}))
	checkMaps(t, n, []datapath.Peer{fakePeer(1), second})
	must(t, dp.Apply(ctx, datapath.Changes{Removed: []datapath.PeerKey{second.Key()}}))
	checkMaps(t, n, []datapath.Peer{fakePeer(1)})

	must(t, dp.Sync(ctx, []datapath.Peer{other, fakePeer(1)}))
	checkMaps(t, n, []datapath.Peer{other, fakePeer(1)})
	// The next Apply starts from what Sync wrote: removing the repaired
	// entry deletes it.
	must(t, dp.Apply(ctx, datapath.Changes{Removed: []datapath.PeerKey{other.Key()}}))
	checkMaps(t, n, []datapath.Peer{fakePeer(1)})
}

// TestTwoLeasesOneNodeIP: a node IP that leases two subnets is known once,
// with both leases counted, and its VXLAN is accepted for inner sources in
// either subnet (as the kernel datapath accepts it), not in a third.
func TestTwoLeasesOneNodeIP(t *testing.T) {
	nodes := newTestNodes(t, datapath.ModeVXLAN)
	n := nodes[0]
	n.addPod(t, 1450)
	dp := n.startEBPF(t, AttachTCX)
	other, mac := nodes[1].node.NodeIP, net.HardwareAddr{0x02, 0xfe, 0, 0, 0, 2}
	peers := []datapath.Peer{
		{Subnet: netip.MustParsePrefix("10.244.2.0/24"), NodeIP: other, VtepMAC: mac},
		{Subnet: netip.MustParsePrefix("10.244.3.0/24"), NodeIP: other, VtepMAC: mac},
	}
	must(t, dp.Sync(context.Background(), peers))
	checkMaps(t, n, peers)
	if known, err := ReadNodes(n.bpfDir); err != nil || len(known) != 1 || known[0].Leases != 2 {
		t.Fatalf("known nodes %+v (%v), want %s with 2 leases", known, err, other)
	}
	uplink := ifindex(t, n.ns, "eth0")
	from := func(src netip.Addr) []byte {
		return vxlanFrameTo(other, n.node.NodeIP, 1, tcpPacket(src, n.podIP, 40000, 80).bytes())
	}
	for _, p := range peers {
		src := p.Subnet.Addr().Next().Next()
		verdict, _, err := testRun(n.ns, dp.objs.WeftUplinkIngress, uplink, from(src))
		must(t, err)
		if verdict != tcActOK { // validated; no conntrack entry: the kernel path
			t.Errorf("inner source %s from %s: verdict %d, want TC_ACT_OK", src, other, verdict)
		}
	}
	if d := dropCounts(t, dp.objs); d != (allDrops{}) {
		t.Errorf("drops %v for inner sources of both leased subnets", d)
	}
	checkDrop(t, n.ns, dp.objs, "inner source in no subnet of the node", dp.objs.WeftUplinkIngress, uplink,
		from(netip.MustParseAddr("10.244.4.2")), weftDropReasonDROP_SPOOFED_SOURCE)
}

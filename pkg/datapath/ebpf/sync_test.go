package ebpf

import (
	"net"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/pkg/datapath"
)

// TestDesiredSharedNodeIP: two leases of one node IP both go into the remote
// subnets map, as the kernel datapath routes both; the known nodes map counts
// both leases for the address. Peers datapath.SelectPeers rejects are left
// out. A peer's TunnelIP becomes a known node address too.
func TestDesiredSharedNodeIP(t *testing.T) {
	d := &Datapath{node: datapath.Node{
		NodeIP: netip.MustParseAddr("192.168.0.1"), Network: netip.MustParsePrefix("10.244.0.0/16"), Backend: datapath.ModeVXLAN,
	}}
	nodeIP := netip.MustParseAddr("192.168.0.2")
	low := datapath.Peer{Subnet: netip.MustParsePrefix("10.244.2.0/24"), NodeIP: nodeIP, VtepMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
	high := datapath.Peer{Subnet: netip.MustParsePrefix("10.244.3.0/24"), NodeIP: nodeIP, VtepMAC: net.HardwareAddr{2, 0, 0, 0, 0, 3}}
	bad := datapath.Peer{Subnet: netip.MustParsePrefix("10.99.0.0/24"), NodeIP: netip.MustParseAddr("192.168.0.9"), VtepMAC: high.VtepMAC}
	w, err := d.desired([]datapath.Peer{high, bad, low}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.peers) != 2 {
		t.Fatalf("remote subnets %v, want %s and %s", w.peers, low.Subnet, high.Subnet)
	}
	for _, p := range []datapath.Peer{low, high} {
		key := weftLpmKey{Prefixlen: 24, Addr: be32(p.Subnet.Addr())}
		if v, ok := w.peers[key]; !ok || v.NodeIp != be32(nodeIP) || v.VtepMac != mac6(p.VtepMAC) {
			t.Errorf("remote subnet %s = %+v (present %v)", p.Subnet, v, ok)
		}
	}
	if len(w.nodes) != 1 || w.nodes[be32(nodeIP)] != (weftKnownNode{Leases: 2}) {
		t.Errorf("known nodes %v, want only %s with 2 leases", w.nodes, nodeIP)
	}

	tunnel := netip.MustParseAddr("192.168.1.2")
	low.TunnelIP = tunnel
	w, err = d.desired([]datapath.Peer{low}, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := weftLpmKey{Prefixlen: 24, Addr: be32(low.Subnet.Addr())}
	if v := w.peers[key]; v.TunnelIp != be32(tunnel) {
		t.Errorf("remote subnet %s tunnel source %s, want %s", low.Subnet, addrOf(v.TunnelIp), tunnel)
	}
	if w.nodes[be32(tunnel)].Leases != 1 || w.nodes[be32(nodeIP)].Leases != 1 {
		t.Errorf("known nodes %v, want %s and %s with one lease each", w.nodes, nodeIP, tunnel)
	}
}

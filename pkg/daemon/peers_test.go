package daemon

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/pkg/lease"
)

func TestPeersFromLeases(t *testing.T) {
	network := netip.MustParsePrefix("10.244.0.0/16")
	own := netip.MustParsePrefix("10.244.1.0/24")
	vx := func(subnet, ip, data string) lease.Lease {
		return lease.Lease{Subnet: netip.MustParsePrefix(subnet), Attrs: lease.Attrs{
			PublicIP: netip.MustParseAddr(ip), BackendType: "vxlan", BackendData: json.RawMessage(data)}}
	}
	good := `{"VNI":1,"VtepMAC":"c6:d2:8e:11:22:33"}`
	hostgw := vx("10.244.5.0/24", "192.0.2.5", good)
	hostgw.Attrs.BackendType = "host-gw"
	leases := []lease.Lease{
		vx("10.244.1.0/24", "192.0.2.1", good),   // own
		vx("10.244.2.0/24", "192.0.2.2", good),   // kept
		vx("10.244.3.0/24", "192.0.2.3", `{}`),   // no MAC
		vx("10.245.4.0/24", "192.0.2.4", good),   // outside network
		hostgw,                                   // other backend
		vx("10.244.6.0/24", "192.0.2.6", `nope`), // bad JSON
	}
	peers := peersFromLeases(own, "vxlan", network, leases)
	if len(peers) != 1 {
		t.Fatalf("got %d peers, want 1: %+v", len(peers), peers)
	}
	p := peers[0]
	if p.Subnet.String() != "10.244.2.0/24" || p.NodeIP.String() != "192.0.2.2" || p.VtepMAC.String() != "c6:d2:8e:11:22:33" {
		t.Fatalf("wrong peer %+v", p)
	}

	// host-gw leases carry no MAC and need none.
	hostgw.Attrs.BackendData = nil
	if got := peersFromLeases(own, "host-gw", network, []lease.Lease{hostgw}); len(got) != 1 || got[0].VtepMAC != nil {
		t.Fatalf("host-gw peer: %+v", got)
	}
}

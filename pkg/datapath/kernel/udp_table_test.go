package kernel

import (
	"net/netip"
	"testing"

	"github.com/weftnet/weft/pkg/datapath"
)

func TestPeerTable(t *testing.T) {
	pfx, addr := netip.MustParsePrefix, netip.MustParseAddr
	peer := func(sub, ip string) datapath.Peer { return datapath.Peer{Subnet: pfx(sub), NodeIP: addr(ip)} }
	tb := newPeerTable()
	tb.setOwn(addr("10.244.1.0"))
	n2, n3 := peer("10.244.2.0/24", "192.168.10.2"), peer("10.244.3.0/24", "192.168.20.3")
	half := peer("10.244.3.128/25", "192.168.10.5")
	tb.reset([]datapath.Peer{n2, n3, half})

	route := func(dst, want string) {
		t.Helper()
		got, ok := tb.route(addr(dst))
		if want == "" {
			if ok || got != addr("10.244.1.0") {
				t.Errorf("route(%s) = %s, %v; want no route with ICMP source 10.244.1.0", dst, got, ok)
			}
			return
		}
		if !ok || got != addr(want) {
			t.Errorf("route(%s) = %s, %v; want %s", dst, got, ok, want)
		}
	}
	route("10.244.2.77", "192.168.10.2")
	route("10.244.3.10", "192.168.20.3")
	route("10.244.3.200", "192.168.10.5") // longest match
	route("10.244.4.1", "")

	admit := func(from, src string, want dropReason) {
		t.Helper()
		if got := tb.admit(addr(from), addr(src)); got != want {
			t.Errorf("admit(%s, %s) = %s, want %s", from, src, dropNames[got], dropNames[want])
		}
	}
	admit("192.168.10.2", "10.244.2.10", dropNone)
	admit("192.168.10.9", "10.244.2.10", dropUnknownNode)
	admit("192.168.10.2", "10.244.3.10", dropSpoofedSource)
	admit("192.168.10.2", "10.244.1.10", dropSpoofedSource)
	admit("192.168.20.3", "10.244.3.200", dropSpoofedSource)

	// n3 moves to another node IP, half goes away, a new subnet appears.
	moved := peer("10.244.3.0/24", "192.168.20.33")
	tb.apply([]datapath.SubnetChange{
		{Old: n3, New: moved},
		{Old: half},
		{New: peer("10.244.4.0/24", "192.168.10.2")},
	})
	route("10.244.3.200", "192.168.20.33")
	route("10.244.4.1", "192.168.10.2")
	admit("192.168.20.3", "10.244.3.10", dropUnknownNode)
	admit("192.168.10.5", "10.244.3.200", dropUnknownNode)
	admit("192.168.20.33", "10.244.3.200", dropNone)
	admit("192.168.10.2", "10.244.4.9", dropNone)

	tb.apply([]datapath.SubnetChange{{Old: n2}})
	admit("192.168.10.2", "10.244.4.9", dropNone) // still has 10.244.4.0/24
	route("10.244.2.1", "")
	if len(tb.subnets) != 2 || len(tb.nodes) != 2 || tb.lens[24] != 2 || tb.lens[25] != 0 {
		t.Errorf("table after changes: subnets %v nodes %v", tb.subnets, tb.nodes)
	}
	tb.reset(nil)
	route("10.244.3.1", "")
	admit("192.168.20.33", "10.244.3.1", dropUnknownNode)
}

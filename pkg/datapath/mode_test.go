package datapath

import (
	"net/netip"
	"testing"
)

func TestAssignModesWithoutDirectRouting(t *testing.T) {
	peers := []Peer{{Subnet: netip.MustParsePrefix("10.244.2.0/24"), NodeIP: netip.MustParseAddr("192.0.2.2")}}
	for _, backend := range []Mode{ModeVXLAN, ModeHostGW} {
		got, err := AssignModes(Node{Backend: backend}, peers)
		if err != nil || got[0].Mode != backend {
			t.Fatalf("backend %s: got %+v, %v", backend, got, err)
		}
		if peers[0].Mode != "" {
			t.Fatal("AssignModes changed its input")
		}
	}
}

func TestAssignModeCachedUsesKnownMode(t *testing.T) {
	// With DirectRouting a cache miss would need a route lookup on an uplink
	// that does not exist here: the known mode must be used without one.
	node := Node{Backend: ModeVXLAN, DirectRouting: true, Uplink: "no-such-uplink"}
	p := Peer{Subnet: netip.MustParsePrefix("10.244.2.0/24"), NodeIP: netip.MustParseAddr("192.0.2.2")}
	known := map[netip.Addr]Mode{p.NodeIP: ModeHostGW}
	into := map[netip.Addr]Mode{}
	got, err := AssignModeCached(node, p, known, into)
	if err != nil || got.Mode != ModeHostGW || into[p.NodeIP] != ModeHostGW {
		t.Fatalf("got %+v, %v, recorded %v", got, err, into)
	}
	// A miss does the lookup, and its error names the peer.
	if _, err := AssignModeCached(node, p, nil, into); err == nil {
		t.Fatal("lookup on a missing uplink succeeded")
	}
}

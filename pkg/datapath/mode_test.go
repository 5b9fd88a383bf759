package datapath

import (
	"net/netip"
	"strings"
	"testing"
)

// TestDirectMode reads the routing table of the test's own namespace only:
// an address on lo is reached without a gateway.
func TestDirectMode(t *testing.T) {
	loopback := netip.MustParseAddr("127.0.0.2")
	if mode, err := directMode("lo", loopback); err != nil || mode != ModeHostGW {
		t.Errorf("directMode(lo, %s) = %q, %v; want host-gw", loopback, mode, err)
	}
	if _, err := directMode("no-such-uplink", loopback); err == nil || !strings.Contains(err.Error(), "no-such-uplink") {
		t.Errorf("lookup on a missing uplink: err = %v, want one naming it", err)
	}
}

package ebpf

import (
	"strings"
	"testing"

	"github.com/weftnet/weft/test/testns"
)

// TestTracking: the tracking table (inet: both families) is created,
// replaced (and an older version's ip table with it) and removed (with an
// older version's), and removing it when it is not there is no error (weftd --cleanup on a node
// that never ran the ebpf datapath).
func TestTracking(t *testing.T) {
	testns.RequireRoot(t)
	ns := testns.New(t, testns.Prefix(), "track")
	must(t, ns.Do(removeTracking))
	ns.MustRun(t, "nft", "add", "table", "ip", trackingTable)
	must(t, ns.Do(ensureTracking))
	if out, err := ns.Run("nft", "list", "table", "ip", trackingTable); err == nil {
		t.Errorf("the IPv4-only table of an older weft is left:\n%s", out)
	}
	must(t, ns.Do(ensureTracking))
	out := ns.MustRun(t, "nft", "list", "table", "inet", trackingTable)
	for _, want := range []string{"hook prerouting", "ct state invalid counter"} {
		if !strings.Contains(out, want) {
			t.Errorf("table inet %s:\n%s\nwant %q", trackingTable, out, want)
		}
	}
	ns.MustRun(t, "nft", "add", "table", "ip", trackingTable) // as a node never upgraded would have it
	must(t, ns.Do(removeTracking))
	for _, family := range []string{"inet", "ip"} {
		if out, err := ns.Run("nft", "list", "table", family, trackingTable); err == nil {
			t.Errorf("table %s left after removeTracking:\n%s", family, out)
		}
	}
}

package ebpf

import (
	"strings"
	"testing"

	"github.com/weftnet/weft/test/testns"
)

// TestTracking: the tracking table is created, replaced and removed, and
// removing it when it is not there is no error (weftd --cleanup on a node
// that never ran the ebpf datapath).
func TestTracking(t *testing.T) {
	testns.RequireRoot(t)
	ns := testns.New(t, testns.Prefix(), "track")
	must(t, ns.Do(removeTracking))
	must(t, ns.Do(ensureTracking))
	must(t, ns.Do(ensureTracking))
	out := ns.MustRun(t, "nft", "list", "table", "ip", trackingTable)
	for _, want := range []string{"hook prerouting", "ct state invalid counter"} {
		if !strings.Contains(out, want) {
			t.Errorf("table ip %s:\n%s\nwant %q", trackingTable, out, want)
		}
	}
	must(t, ns.Do(removeTracking))
	if out, err := ns.Run("nft", "list", "table", "ip", trackingTable); err == nil {
		t.Errorf("table left after removeTracking:\n%s", out)
	}
}

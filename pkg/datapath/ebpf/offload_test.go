package ebpf

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/conntrack"
)

// TestCandidates: a flow is marked once it has asked for offloadAfter, not
// again while the mark is recent, and a flow that stopped asking is
// forgotten.
func TestCandidates(t *testing.T) {
	flow := conntrack.Tuple{
		Src:   netip.MustParseAddrPort("10.244.1.2:40000"),
		Dst:   netip.MustParseAddrPort("10.244.2.2:80"),
		Proto: 6,
	}
	c := newCandidates()
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at   time.Duration
		want bool
	}{
		{0, false},                               // first request
		{offloadAfter / 2, false},                // too young: a short connection ends here
		{offloadAfter, true},                     // still asking: mark it
		{offloadAfter + time.Millisecond, false}, // requests from before the mark
		{offloadAfter + markedRecently, false},   // mark expired: a new window starts
		{offloadAfter + markedRecently + offloadAfter, true},
	}
	for _, s := range steps {
		if got := c.due(flow, t0.Add(s.at)); got != s.want {
			t.Fatalf("due at +%v = %v, want %v", s.at, got, s.want)
		}
	}
	c.due(flow, t0.Add(time.Hour)) // asks once more, then stops
	c.prune(t0.Add(time.Hour + forgetAfter))
	if len(c.first) != 0 || len(c.marked) != 0 {
		t.Fatalf("after prune: %d waiting, %d marked, want none", len(c.first), len(c.marked))
	}
}

// TestDecodeFlowSize: a record of another size (an earlier version's
// struct flow, e.g. b1590d9's with 4-byte addresses) is refused.
func TestDecodeFlowSize(t *testing.T) {
	size := binary.Size(weftFlow{})
	for _, n := range []int{0, 16, size - 1, size + 8} {
		if _, err := decodeFlow(make([]byte, n)); err == nil {
			t.Errorf("decodeFlow of %d bytes (want %d) succeeded", n, size)
		}
	}
	if _, err := decodeFlow(make([]byte, size)); err != nil {
		t.Errorf("decodeFlow of %d bytes: %v", size, err)
	}
}

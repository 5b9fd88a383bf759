package ebpf

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
)

// TestMapWritesResume: batch writes and deletes finish one entry at a time
// after the kernel stops at a failing entry (here a key already deleted).
func TestMapWritesResume(t *testing.T) {
	objs := newProgEnv(t).weftObjects
	m := objs.WeftNodes
	var (
		keys   []weftAddr
		values []weftKnownNode
	)
	for i := range 5 {
		k := addrKey(netip.AddrFrom4([4]byte{192, 168, 1, byte(i)}))
		keys, values = append(keys, k), append(values, weftKnownNode{Leases: uint32(i + 1)})
	}
	must(t, putAll(m, keys, values))
	got, err := dump[weftAddr, weftKnownNode](m)
	must(t, err)
	for i, k := range keys {
		if got[k] != values[i] {
			t.Errorf("after putAll, entry %s = %+v, want %+v", addrOf(k), got[k], values[i])
		}
	}
	must(t, m.Delete(keys[1]))
	must(t, deleteAll(m, keys))
	for _, k := range keys {
		var v weftKnownNode
		if err := m.Lookup(k, &v); !errors.Is(err, ebpf.ErrKeyNotExist) {
			t.Errorf("entry %s still there after deleteAll (lookup: %v)", addrOf(k), err)
		}
	}
	// The test node's own entries were left alone.
	if got, err := dump[weftAddr, weftKnownNode](m); err != nil || len(got) != 4 {
		t.Errorf("known nodes after deleteAll: %v, %v; want the 4 entries newProgEnv wrote", got, err)
	}
}

// TestDumpLPM: dump reads an LPM trie of several batches completely.
func TestDumpLPM(t *testing.T) {
	objs := newProgEnv(t).weftObjects
	var (
		keys []weftLpmKey
		vals []weftPeer
	)
	for i := range 3 * batchSize {
		keys = append(keys, lpmKey(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200, byte(i >> 4), byte(i << 4)}), 28)))
		vals = append(vals, weftPeer{NodeIp: addrKey(netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i)})), Mode: uint8(weftModeMODE_VXLAN)})
	}
	must(t, putAll(objs.WeftPeers, keys, vals))
	got, err := dump[weftLpmKey, weftPeer](objs.WeftPeers)
	must(t, err)
	if len(got) != len(keys)+4 {
		t.Fatalf("dumped %d entries, want %d", len(got), len(keys)+4)
	}
	for i, k := range keys {
		if got[k] != vals[i] {
			t.Fatalf("entry %d: %+v, want %+v", i, got[k], vals[i])
		}
	}
}

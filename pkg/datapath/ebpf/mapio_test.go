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
		keys   []uint32
		values []weftKnownNode
	)
	for i := range 5 {
		k := be32(netip.AddrFrom4([4]byte{192, 168, 1, byte(i)}))
		keys, values = append(keys, k), append(values, weftKnownNode{Leases: uint32(i + 1)})
	}
	must(t, putAll(m, keys, values))
	got, err := dump[uint32, weftKnownNode](m)
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
	if got, err := dump[uint32, weftKnownNode](m); err != nil || len(got) != 2 {
		t.Errorf("known nodes after deleteAll: %v, %v; want the 2 entries newProgEnv wrote", got, err)
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
		keys = append(keys, weftLpmKey{Prefixlen: 28, Addr: be32(netip.AddrFrom4([4]byte{10, 200, byte(i >> 4), byte(i << 4)}))})
		vals = append(vals, weftPeer{NodeIp: uint32(i + 1), Mode: uint8(weftModeMODE_VXLAN)})
	}
	must(t, putAll(objs.WeftPeers, keys, vals))
	got, err := dump[weftLpmKey, weftPeer](objs.WeftPeers)
	must(t, err)
	if len(got) != len(keys)+2 {
		t.Fatalf("dumped %d entries, want %d", len(got), len(keys)+2)
	}
	for i, k := range keys {
		if got[k] != vals[i] {
			t.Fatalf("entry %d: %+v, want %+v", i, got[k], vals[i])
		}
	}
}

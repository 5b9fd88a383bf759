package ebpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// Map reads and writes go in batches (BPF_MAP_*_BATCH, one system call for
// many entries) where the kernel has them for the map's type, and one entry
// per call otherwise. With thousands of peers that is the difference between
// a few calls and tens of thousands per pass.

// batchSize is how many entries dump asks for per call. Hash maps fail a
// batch smaller than one of their buckets; no bucket gets near this.
const batchSize = 1024

// dump returns every entry of m.
func dump[K comparable, V any](m *ebpf.Map) (map[K]V, error) {
	if !perCPU(m.Type()) {
		out, err := dumpBatch[K, V](m)
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return out, err
		}
	}
	out := map[K]V{}
	var (
		k K
		v V
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read map %s: %w", m, err)
	}
	return out, nil
}

// dumpBatch is dump with batch lookups; its error matches
// ebpf.ErrNotSupported when the kernel has none for m.
func dumpBatch[K comparable, V any](m *ebpf.Map) (map[K]V, error) {
	out := map[K]V{}
	keys, values := make([]K, batchSize), make([]V, batchSize)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, values, nil)
		for i := range n {
			out[keys[i]] = values[i]
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist): // the end
			return out, nil
		case err != nil:
			return nil, fmt.Errorf("read map %s: %w", m, err)
		}
	}
}

// perCPU reports whether maps of type t hold one value per CPU, which
// batch lookups return in another layout.
func perCPU(t ebpf.MapType) bool {
	switch t {
	case ebpf.PerCPUArray, ebpf.PerCPUHash, ebpf.LRUCPUHash, ebpf.PerCPUCGroupStorage:
		return true
	}
	return false
}

// reconcile makes the contents of m equal to want, reading what m holds
// first: it repairs entries changed or deleted behind weftd's back.
func reconcile[K, V comparable](m *ebpf.Map, want map[K]V) error {
	have, err := dump[K, V](m)
	if err != nil {
		return err
	}
	return update(m, have, want)
}

// update changes m, believed to hold have, to hold want: it deletes and
// writes only the entries that differ.
func update[K, V comparable](m *ebpf.Map, have, want map[K]V) error {
	return diff(have, want).write(m)
}

// diff returns the edits that change have into want.
func diff[K, V comparable](have, want map[K]V) *edits[K, V] {
	e := new(edits[K, V])
	for k, v := range want {
		old, had := have[k]
		e.add(k, old, had, v, true)
	}
	for k, v := range have {
		if _, ok := want[k]; !ok {
			e.add(k, v, true, v, false)
		}
	}
	return e
}

// edits are the deletes and writes that change a map entry by entry.
type edits[K, V comparable] struct {
	putKeys []K
	putVals []V
	delKeys []K
}

// add records what changes the entry of k from old (present if had) to v
// (present if ok): nothing when they are equal.
func (e *edits[K, V]) add(k K, old V, had bool, v V, ok bool) {
	switch {
	case ok && (!had || old != v):
		e.putKeys = append(e.putKeys, k)
		e.putVals = append(e.putVals, v)
	case !ok && had:
		e.delKeys = append(e.delKeys, k)
	}
}

// len is how many entries the edits write or delete.
func (e *edits[K, V]) len() int { return len(e.putKeys) + len(e.delKeys) }

// write makes the edits to m. Deletes go first so a full map makes room.
func (e *edits[K, V]) write(m *ebpf.Map) error {
	return errors.Join(deleteAll(m, e.delKeys), putAll(m, e.putKeys, e.putVals))
}

// putAll writes keys[i] -> values[i] into m for every i, trying them all
// and joining the errors.
func putAll[K, V any](m *ebpf.Map, keys []K, values []V) error {
	if len(keys) == 0 {
		return nil
	}
	n, err := m.BatchUpdate(keys, values, nil)
	if err == nil {
		return nil
	}
	var errs []error
	for i := resumeAt(n, len(keys), err); i < len(keys); i++ {
		if err := m.Put(keys[i], values[i]); err != nil {
			errs = append(errs, fmt.Errorf("update map %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

// deleteAll deletes keys from m; keys already missing are no error.
func deleteAll[K any](m *ebpf.Map, keys []K) error {
	if len(keys) == 0 {
		return nil
	}
	n, err := m.BatchDelete(keys, nil)
	if err == nil {
		return nil
	}
	var errs []error
	for i := resumeAt(n, len(keys), err); i < len(keys); i++ {
		if err := m.Delete(keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("delete from map %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

// resumeAt returns where to go on one entry at a time after a batch call
// over total entries failed with err, reporting n done. The kernel stops at
// the first entry that fails (a key deleted meanwhile, a full map) and
// reports how many it completed; a call it refused as a whole (no batch
// support for the map type, bad arguments) leaves n at total or zero, and
// everything is redone: writes and deletes are idempotent.
func resumeAt(n, total int, err error) int {
	if n >= total || errors.Is(err, ebpf.ErrNotSupported) {
		return 0
	}
	return n
}

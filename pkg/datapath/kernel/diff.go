package kernel

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
)

// keyDiff is how one kind of entry changed between two desired states: keys
// only in the next state (added), in both with different values (changed)
// and only in the previous one (removed), each sorted.
type keyDiff[K comparable] struct {
	added, changed, removed []K
}

// diffKeys compares prev with next by key, values with same.
func diffKeys[K comparable, V any](prev, next map[K]V, same func(a, b V) bool, cmp func(a, b K) int) keyDiff[K] {
	var d keyDiff[K]
	for k, v := range next {
		old, ok := prev[k]
		switch {
		case !ok:
			d.added = append(d.added, k)
		case !same(old, v):
			d.changed = append(d.changed, k)
		}
	}
	for k := range prev {
		if _, ok := next[k]; !ok {
			d.removed = append(d.removed, k)
		}
	}
	slices.SortFunc(d.added, cmp)
	slices.SortFunc(d.changed, cmp)
	slices.SortFunc(d.removed, cmp)
	return d
}

// stateDiff is how one desired state changed into the next.
type stateDiff struct {
	routes keyDiff[netip.Prefix]
	neighs keyDiff[netip.Addr]
	fdb    keyDiff[string]
}

// counts returns the numbers of entries added, changed and removed, as
// log attributes.
func (d stateDiff) counts() []any {
	return []any{
		"added", len(d.routes.added) + len(d.neighs.added) + len(d.fdb.added),
		"changed", len(d.routes.changed) + len(d.neighs.changed) + len(d.fdb.changed),
		"removed", len(d.routes.removed) + len(d.neighs.removed) + len(d.fdb.removed),
	}
}

// diffDesired compares two desired states entry by entry.
func diffDesired(prev, next desired) stateDiff {
	return stateDiff{
		routes: diffKeys(prev.routes, next.routes, func(a, b route) bool { return a == b }, netip.Prefix.Compare),
		neighs: diffKeys(prev.neighs, next.neighs, func(a, b net.HardwareAddr) bool { return bytes.Equal(a, b) }, netip.Addr.Compare),
		// The key is the MAC: only the destination can differ.
		fdb: diffKeys(prev.fdb, next.fdb, func(a, b fdbEntry) bool { return a.dst == b.dst }, strings.Compare),
	}
}

// writes are the kernel changes that turn one desired state into the next.
type writes struct {
	fdbSet, fdbDel     []netlink.Neigh
	neighSet, neighDel []netlink.Neigh
	routeSet           []route
	routeDel           []netlink.Route
}

// writesFor returns the writes for d, the diff from prev to next, with
// neighbour and fdb entries on the vxlan device at index. Added and changed
// entries are set: the kernel replaces a route, neighbour or fdb
// destination in place, so a changed peer never loses its entries.
func writesFor(d stateDiff, prev, next desired, index int) writes {
	var w writes
	for _, mac := range slices.Concat(d.fdb.added, d.fdb.changed) {
		w.fdbSet = append(w.fdbSet, next.fdb[mac].netlink(index))
	}
	for _, mac := range d.fdb.removed {
		w.fdbDel = append(w.fdbDel, prev.fdb[mac].netlink(index))
	}
	for _, ip := range slices.Concat(d.neighs.added, d.neighs.changed) {
		w.neighSet = append(w.neighSet, neighOf(ip, next.neighs[ip], index))
	}
	for _, ip := range d.neighs.removed {
		w.neighDel = append(w.neighDel, neighOf(ip, prev.neighs[ip], index))
	}
	for _, dst := range slices.Concat(d.routes.added, d.routes.changed) {
		w.routeSet = append(w.routeSet, next.routes[dst])
	}
	for _, dst := range d.routes.removed {
		w.routeDel = append(w.routeDel, prev.routes[dst].netlink())
	}
	return w
}

package kernel

import (
	"bytes"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
)

// edit records the entries of a desired state that subnet changes touch,
// with their values from before the first change, so that only touched
// entries whose value changed are written.
type edit struct {
	routes map[netip.Prefix]prior[route]
	neighs map[netip.Addr]prior[net.HardwareAddr]
	fdb    map[macKey]prior[fdbEntry]
}

// prior is an entry's value before an edit; ok is false if there was none.
type prior[V any] struct {
	v  V
	ok bool
}

func newEdit() *edit {
	return &edit{
		routes: map[netip.Prefix]prior[route]{},
		neighs: map[netip.Addr]prior[net.HardwareAddr]{},
		fdb:    map[macKey]prior[fdbEntry]{},
	}
}

// remember records v (present or not) as k's value before the edit, unless
// one is recorded.
func remember[K comparable, V any](m map[K]prior[V], k K, v V, ok bool) {
	if _, seen := m[k]; !seen {
		m[k] = prior[V]{v, ok}
	}
}

// changed returns, in cmp order, the keys of before whose entry now has a
// value it did not have before (by same), and those whose entry is gone.
func changed[K comparable, V any](before map[K]prior[V], now func(K) (V, bool), same func(a, b V) bool, cmp func(a, b K) int) (set, del []K) {
	for k, b := range before {
		v, ok := now(k)
		switch {
		case ok && (!b.ok || !same(b.v, v)):
			set = append(set, k)
		case !ok && b.ok:
			del = append(del, k)
		}
	}
	slices.SortFunc(set, cmp)
	slices.SortFunc(del, cmp)
	return set, del
}

// lookup is m's index operation as a function.
func lookup[K comparable, V any](m map[K]V) func(K) (V, bool) {
	return func(k K) (V, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// writes are kernel changes: entries to set (add or replace) and delete.
type writes struct {
	fdbSet, fdbDel     []netlink.Neigh
	neighSet, neighDel []netlink.Neigh
	routeSet           []route
	routeDel           []netlink.Route
}

// writes returns the kernel changes that turn the entries e touched from
// their values before the edit into those of s. Entries set replace what
// the kernel has at their key in place (a route, neighbour or fdb
// destination), so a changed peer never loses its entries; deleted ones
// carry their old values.
func (e *edit) writes(s *desired) writes {
	var w writes
	set, del := changed(e.fdb, lookup(s.fdb), func(a, b fdbEntry) bool { return a.dst == b.dst }, compareMACs)
	for _, k := range set {
		w.fdbSet = append(w.fdbSet, s.fdb[k].netlink(s.vxlanIndex[k.family().index]))
	}
	for _, k := range del {
		w.fdbDel = append(w.fdbDel, e.fdb[k].v.netlink(s.vxlanIndex[k.family().index]))
	}
	ips, gone := changed(e.neighs, s.neigh, func(a, b net.HardwareAddr) bool { return bytes.Equal(a, b) }, netip.Addr.Compare)
	for _, ip := range ips {
		mac, _ := s.neigh(ip)
		w.neighSet = append(w.neighSet, neighOf(ip, mac, s.vxlanOf(ip)))
	}
	for _, ip := range gone {
		w.neighDel = append(w.neighDel, neighOf(ip, e.neighs[ip].v, s.vxlanOf(ip)))
	}
	dsts, stale := changed(e.routes, lookup(s.routes), func(a, b route) bool { return a == b }, netip.Prefix.Compare)
	for _, dst := range dsts {
		w.routeSet = append(w.routeSet, s.routes[dst])
	}
	for _, dst := range stale {
		w.routeDel = append(w.routeDel, e.routes[dst].v.netlink())
	}
	return w
}

package kernel

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/vishvananda/netlink"
)

// writer makes one pass's kernel changes on one netlink handle. It tries
// every entry, logs each at debug level (thousands per pass at scale) and
// counts them for the pass's one summary line.
type writer struct {
	h     *netlink.Handle
	start time.Time
	// Entries written (added or changed) and removed, by kind.
	routesSet, routesDel int
	neighsSet, neighsDel int
	fdbSet, fdbDel       int
	errs                 []error
}

// newWriter starts a pass on h.
func newWriter(h *netlink.Handle) *writer {
	return &writer{h: h, start: time.Now()}
}

// fdb sets and then deletes vxlan forwarding database entries.
func (w *writer) fdb(set, del []netlink.Neigh) {
	for _, n := range set {
		if err := w.h.NeighSet(&n); err != nil {
			w.errs = append(w.errs, fmt.Errorf("program fdb %s dst %s: %w", n.HardwareAddr, n.IP, err))
			continue
		}
		w.fdbSet++
		slog.Debug("programmed fdb entry", "mac", n.HardwareAddr.String(), "dst", n.IP.String())
	}
	for _, n := range del {
		if err := ignoreNotFound(w.h.NeighDel(&n)); err != nil {
			w.errs = append(w.errs, fmt.Errorf("remove stale fdb %s dst %s: %w", n.HardwareAddr, n.IP, err))
			continue
		}
		w.fdbDel++
		slog.Debug("removed stale fdb entry", "mac", n.HardwareAddr.String(), "dst", n.IP.String())
	}
}

// neighs sets and then deletes neighbour entries.
func (w *writer) neighs(set, del []netlink.Neigh) {
	for _, n := range set {
		if err := w.h.NeighSet(&n); err != nil {
			w.errs = append(w.errs, fmt.Errorf("program neighbour %s: %w", n.String(), err))
			continue
		}
		w.neighsSet++
		slog.Debug("programmed neighbour", "ip", n.IP.String(), "mac", n.HardwareAddr.String())
	}
	for _, n := range del {
		if err := ignoreNotFound(w.h.NeighDel(&n)); err != nil {
			w.errs = append(w.errs, fmt.Errorf("remove stale neighbour %s: %w", n.String(), err))
			continue
		}
		w.neighsDel++
		slog.Debug("removed stale neighbour", "ip", n.IP.String(), "mac", n.HardwareAddr.String())
	}
}

// routes adds or replaces set and then deletes del. A deletion names the
// route's device and gateway, so it cannot remove a route that replaced it.
func (w *writer) routes(set []route, del []netlink.Route) {
	for _, r := range set {
		nr := r.netlink()
		if err := w.h.RouteReplace(&nr); err != nil {
			w.errs = append(w.errs, fmt.Errorf("program route %s: %w", r, err))
			continue
		}
		w.routesSet++
		slog.Debug("programmed route", "route", r.String())
	}
	for _, r := range del {
		if err := ignoreNotFound(w.h.RouteDel(&r)); err != nil {
			w.errs = append(w.errs, fmt.Errorf("remove stale route %s: %w", routeOf(r), err))
			continue
		}
		w.routesDel++
		slog.Debug("removed stale route", "route", routeOf(r).String())
	}
}

// err returns the errors of all failed entries, joined.
func (w *writer) err() error { return errors.Join(w.errs...) }

// summary logs msg with the pass's counts and attrs, unless the pass
// neither wrote nor failed anything (a resync of a clean node is silent).
func (w *writer) summary(msg string, attrs ...any) {
	if w.routesSet+w.routesDel+w.neighsSet+w.neighsDel+w.fdbSet+w.fdbDel+len(w.errs) == 0 {
		return
	}
	slog.Info(msg, append(attrs,
		"routes_set", w.routesSet, "routes_removed", w.routesDel,
		"neighs_set", w.neighsSet, "neighs_removed", w.neighsDel,
		"fdb_set", w.fdbSet, "fdb_removed", w.fdbDel,
		"failed", len(w.errs), "took", time.Since(w.start).Round(time.Microsecond).String())...)
}

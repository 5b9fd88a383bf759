package kernel

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	"github.com/weftnet/weft/pkg/datapath"
)

// Apply changes the peer set by changes and writes only the entries (for
// udp, the peer table entries) of the subnets whose selected peer changed,
// and of those only the ones whose value differs from what the last Sync
// or Apply programmed, without
// reading the kernel state: drift is left to the next Sync. When the
// previous write failed, or Setup or a new subnet came since, it rewrites
// the whole selection as Sync does.
func (d *Datapath) Apply(ctx context.Context, changes datapath.Changes) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sel == nil {
		return errors.New("apply: no Sync since Setup")
	}
	delta, err := d.sel.Update(changes)
	datapath.LogRejections(delta.Rejected)
	return errors.Join(err, d.applyDelta(delta))
}

// ApplyDelta is Apply for a datapath that uses this one as its slow path
// and selects the peers itself, with the Selector it gave SyncSelection:
// delta is what that Selector's Update returned.
func (d *Datapath) ApplyDelta(ctx context.Context, delta datapath.Delta) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sel == nil {
		return errors.New("apply: no Sync since Setup")
	}
	return d.applyDelta(delta)
}

// applyDelta writes the entries of the subnets in delta, or the whole
// selection when nothing valid is recorded. Caller holds d.mu; d.sel is
// set.
func (d *Datapath) applyDelta(delta datapath.Delta) error {
	if d.node.Backend == datapath.ModeWireGuard {
		return d.applyWireGuard(delta)
	}
	state := d.last
	if state == nil {
		return d.program(d.sel.Selected())
	}
	if len(delta.Subnets) == 0 {
		return nil
	}
	if d.node.Backend == datapath.ModeUDP {
		d.peers.apply(delta.Subnets)
		return nil
	}
	d.last = nil
	h, err := openHandle()
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	defer h.Close()

	e := newEdit()
	for _, c := range delta.Subnets {
		state.set(cmp.Or(c.New.Subnet, c.Old.Subnet), c.New, e)
	}
	x := e.writes(state)
	w := newWriter(h)
	w.fdb(x.fdbSet, x.fdbDel)
	w.neighs(x.neighSet, x.neighDel)
	w.routes(x.routeSet, x.routeDel)
	w.summary("applied peer changes", "subnets", len(delta.Subnets))
	if err := w.err(); err != nil {
		return err
	}
	d.last = state
	return nil
}

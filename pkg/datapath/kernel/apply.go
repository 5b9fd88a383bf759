package kernel

import (
	"context"
	"errors"
	"fmt"

	"github.com/weftnet/weft/pkg/datapath"
)

// applied is what the last successful Sync or Apply programmed.
type applied struct {
	// vxlanIndex (0 for host-gw) and uplinkIndex are the devices it used.
	vxlanIndex, uplinkIndex int
	state                   desired
}

// Apply changes the peer set by changes and writes only what differs from
// what the last Sync or Apply programmed, without reading the kernel state:
// drift is left to the next Sync. When the previous write failed, or Setup
// or a new subnet came since, it rewrites the whole selection.
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
	prev := d.last
	if prev == nil {
		return errors.Join(err, d.program(d.sel.Selected()))
	}
	d.last = nil
	h, herr := openHandle()
	if herr != nil {
		return fmt.Errorf("apply: %w", herr)
	}
	defer h.Close()

	next := buildDesired(d.sel.Selected(), prev.vxlanIndex, prev.uplinkIndex)
	diff := diffDesired(prev.state, next)
	x := writesFor(diff, prev.state, next, prev.vxlanIndex)
	w := newWriter(h)
	w.fdb(x.fdbSet, x.fdbDel)
	w.neighs(x.neighSet, x.neighDel)
	w.routes(x.routeSet, x.routeDel)
	w.summary("applied peer changes", append([]any{"changes", len(changes.Set) + len(changes.Removed)}, diff.counts()...)...)
	if err := errors.Join(err, w.err()); err != nil {
		return err
	}
	d.last = &applied{vxlanIndex: prev.vxlanIndex, uplinkIndex: prev.uplinkIndex, state: next}
	return nil
}

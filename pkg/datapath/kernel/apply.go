package kernel

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	"github.com/weftnet/weft/pkg/datapath"
)

// Apply changes the peer set by changes and writes only the entries of the
// subnets whose selected peer changed, and of those only the ones whose
// value differs from what the last Sync or Apply programmed, without
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
	state := d.last
	if state == nil {
		return errors.Join(err, d.program(d.sel.Selected()))
	}
	if len(delta.Subnets) == 0 {
		return err
	}
	d.last = nil
	h, herr := openHandle()
	if herr != nil {
		return errors.Join(err, fmt.Errorf("apply: %w", herr))
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
	w.summary("applied peer changes", "changes", len(changes.Set)+len(changes.Removed), "subnets", len(delta.Subnets))
	if werr := w.err(); werr != nil {
		return errors.Join(err, werr)
	}
	d.last = state
	return err
}

package kernel

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/pkg/datapath"
)

// applied is what the last successful Sync or Apply programmed.
type applied struct {
	// vxlanIndex (0 for host-gw) and uplinkIndex are the devices it used.
	vxlanIndex, uplinkIndex int
	state                   desired
	// modes holds the mode of every programmed peer's node IP, so Apply
	// decides modes (a route lookup each with DirectRouting) only for node
	// IPs it has not seen.
	modes map[netip.Addr]datapath.Mode
}

// Apply makes the forwarding state equal to peers by writing only what
// differs from what the last Sync or Apply programmed, without reading the
// kernel state: drift is left to the next Sync. When there is nothing to
// compare with (no success yet, the previous call failed, or Setup or a new
// subnet came since), it does a full Sync.
func (d *Datapath) Apply(ctx context.Context, peers []datapath.Peer) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	prev := d.last
	if prev == nil {
		return d.sync(peers)
	}
	d.last = nil
	h, err := openHandle()
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	defer h.Close()

	next, modes, err := d.wanted(peers, prev.modes, prev.vxlanIndex, prev.uplinkIndex)
	diff := diffDesired(prev.state, next)
	x := writesFor(diff, prev.state, next, prev.vxlanIndex)
	w := newWriter(h)
	w.fdb(x.fdbSet, x.fdbDel)
	w.neighs(x.neighSet, x.neighDel)
	w.routes(x.routeSet, x.routeDel)
	w.summary("applied peer changes", append([]any{"peers", len(peers)}, diff.counts()...)...)
	if err := errors.Join(err, w.err()); err != nil {
		return err
	}
	d.last = &applied{vxlanIndex: prev.vxlanIndex, uplinkIndex: prev.uplinkIndex, state: next, modes: modes}
	return nil
}

package ebpf

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/pkg/datapath"
)

// Sync makes the remote subnets and known nodes maps equal to peers (as
// datapath.Selector selects them), reading them back to repair drift, then
// syncs the kernel slow path, makes the endpoint maps equal to the endpoint
// records (syncEndpoints) and re-attaches what drifted (after an upgrade's
// load: swaps the programs in, once the maps are written). The maps come first:
// the fast path needs nothing from the slow path (encap and host-gw
// redirects resolve only the peer's node IP on the uplink; IPv6 GSO packets
// use flannel-v6.<VNI>'s fdb entry, but only of established flows, whose
// handshake needed it already), so pods reach a new peer as early as
// possible, while host-originated traffic waits for its route. Errors are
// joined after trying everything; on success Apply starts from what was
// written.
func (d *Datapath) Sync(ctx context.Context, peers []datapath.Peer) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.inNS(func() error {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.last = nil
		if d.objs == nil {
			return errors.New("sync: Setup has not succeeded yet")
		}
		// One selection serves the maps and the kernel slow path.
		if d.sel == nil {
			d.sel = datapath.NewSelector(d.node, d.subnets()...)
		}
		sel, err := d.sel.Reset(peers)
		datapath.LogRejections(sel.Rejected)
		want := desired(sel.Peers)
		mapsErr := want.reconcile(d.objs)
		errs := []error{err, mapsErr}
		if err := d.slow.SyncSelection(ctx, d.sel); err != nil {
			errs = append(errs, fmt.Errorf("kernel slow path: %w", err))
		}
		epErr, linksErr := d.syncEndpoints(), d.refreshLinks()
		// The maps are filled when every write to them succeeded.
		filled := errors.Join(mapsErr, epErr, linksErr) == nil
		errs = append(errs, epErr, linksErr, d.swapIn(filled))
		if err := errors.Join(errs...); err != nil {
			return err
		}
		d.last = want
		return nil
	})
}

// Apply changes the peer set by changes and writes only the map entries
// of the subnets whose selected peer changed, and of those only the ones
// whose value changed, without reading the maps back (drift is left to the
// next Sync); then it applies changes to the kernel slow path. When the
// previous Sync or Apply failed, or Setup or a new subnet came since, it
// rewrites the maps from the whole selection instead.
func (d *Datapath) Apply(ctx context.Context, changes datapath.Changes) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.inNS(func() error {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.objs == nil || d.sel == nil {
			return errors.New("apply: no Sync since Setup")
		}
		delta, err := d.sel.Update(changes)
		datapath.LogRejections(delta.Rejected)
		errs := []error{err, d.applyMaps(delta)}
		if err := d.slow.ApplyDelta(ctx, delta); err != nil {
			d.last = nil
			errs = append(errs, fmt.Errorf("kernel slow path: %w", err))
		}
		return errors.Join(errs...)
	})
}

// applyMaps is Apply's part on the remote subnets and known nodes maps:
// the entries of the subnets in delta, or all when nothing valid is
// recorded. Caller holds d.mu, and d.sel is set.
func (d *Datapath) applyMaps(delta datapath.Delta) error {
	var err error
	last := d.last
	d.last = nil
	if last == nil {
		last = desired(d.sel.Selected())
		err = errors.Join(err, last.reconcile(d.objs))
	} else {
		w := last.change(delta)
		err = errors.Join(err, w.to(d.objs))
	}
	if err != nil {
		return err
	}
	d.last = last
	return nil
}

// subnets are this node's pod subnets as the node config holds them, one
// per family (zero while there is none).
func (d *Datapath) subnets() []netip.Prefix {
	out := make([]netip.Prefix, len(d.cfg.Family))
	for i, f := range d.cfg.Family {
		out[i] = prefixOf(f.Subnet, f.SubnetLen)
	}
	return out
}

package kernel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/datapath"
)

// Sync makes routes, neighbour and fdb entries (for udp, the forwarding
// loop's peer table) equal to peers. It first repairs the vxlan device (or
// the udp forwarder and flannel0) and its address if they drifted, skips peers
// that must not be programmed (logging each once while it lasts), and
// returns the errors of all peers joined, after trying every one. When its
// writes succeed it records what it programmed, for Apply to start from.
func (d *Datapath) Sync(ctx context.Context, peers []datapath.Peer) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.last = nil
	if !d.ok {
		return errors.New("sync: Setup has not succeeded yet")
	}
	if d.sel == nil {
		d.sel = datapath.NewSelector(d.node, d.subnets[:]...)
	}
	sel, err := d.sel.Reset(peers)
	datapath.LogRejections(sel.Rejected)
	return errors.Join(err, d.program(sel.Peers))
}

// SyncSelection is Sync for a datapath that uses this one as its slow path
// and selects the peers itself (one selection serves both): it programs
// what sel selected, reading the kernel back as Sync does, and keeps sel
// for ApplyDelta.
func (d *Datapath) SyncSelection(ctx context.Context, sel *datapath.Selector) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.last = nil
	if !d.ok {
		return errors.New("sync: Setup has not succeeded yet")
	}
	d.sel = sel
	return d.program(sel.Selected())
}

// program makes the kernel state equal to what the selected peers ask for,
// reading it back to repair drift, and records it for Apply. Caller holds
// d.mu.
func (d *Datapath) program(selected []datapath.Peer) error {
	d.last = nil
	h, err := openHandle()
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	defer h.Close()
	uplink, err := findUplink(h, d.node.Uplink)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if d.node.Backend == datapath.ModeWireGuard {
		return d.programWireGuard(h, uplink, selected)
	}
	uplinkIndex, vxlanIndex := uplink.Attrs().Index, [2]int{}
	switch d.node.Backend {
	case datapath.ModeUDP:
		if _, err := d.ensureUDP(h, uplink); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
		d.peers.reset(selected)
		// The forwarding loop carries the peers: the kernel needs no
		// entry for them (stale host-gw routes still go below).
		selected = nil
	case datapath.ModeVXLAN:
		if vxlanIndex, _, err = d.ensureVXLAN(h, uplink); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
	}

	want := buildDesired(selected, vxlanIndex, uplinkIndex)
	var errs []error
	w := newWriter(h)
	for _, f := range families {
		if index := vxlanIndex[f.index]; index != 0 {
			errs = append(errs, syncFDB(w, index, f, want.fdbOf(f), d.node.Learning))
			errs = append(errs, syncNeighs(w, index, f, want.neighs(f)))
		}
	}
	errs = append(errs, d.syncRoutes(w, vxlanIndex, uplinkIndex, want.routes))
	errs = append(errs, w.err())
	w.summary("synced datapath", "peers", len(selected))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	d.last = want
	return nil
}

// ownedRoutes lists the main-table routes this datapath owns, of each
// family the node runs: all on the family's vxlan device (vxlanIndex by
// family.index, 0: none) except the kernel's own, and those via a gateway
// on the uplink into the family's network, except into this node's subnet.
func (d *Datapath) ownedRoutes(h *netlink.Handle, vxlanIndex [2]int, uplinkIndex int) ([]netlink.Route, error) {
	var owned []netlink.Route
	for _, f := range families {
		_, network := f.of(d.node)
		if !network.IsValid() {
			continue
		}
		if vxlanIndex[f.index] != 0 {
			routes, err := listLinkRoutes(h, vxlanIndex[f.index], f)
			if err != nil {
				return nil, err
			}
			for _, r := range routes {
				if r.Protocol != unix.RTPROT_KERNEL {
					owned = append(owned, r)
				}
			}
		}
		routes, err := listLinkRoutes(h, uplinkIndex, f)
		if err != nil {
			return nil, err
		}
		for _, r := range routes {
			if r.Gw != nil && ownedUplinkDst(network, d.subnets[f.index], prefixOf(r.Dst)) {
				owned = append(owned, r)
			}
		}
	}
	return owned, nil
}

// ownedUplinkDst reports whether a gateway route to dst on the uplink is
// ours: dst lies inside network and does not touch the own subnet.
func ownedUplinkDst(network, own, dst netip.Prefix) bool {
	if !dst.IsValid() || dst.Bits() < network.Bits() || !network.Contains(dst.Addr()) {
		return false
	}
	return !own.IsValid() || !own.Overlaps(dst)
}

// listLinkRoutes lists family f's main-table routes out of one link. With
// strict checking the kernel filters the dump by link and table; without it
// (kernels before 4.20) it sends every route and the library filters. It is
// on only for this dump: the library's neighbour dumps fail strict checks.
func listLinkRoutes(h *netlink.Handle, index int, f *family) ([]netlink.Route, error) {
	if err := h.SetStrictCheck(true); err == nil {
		defer func() { _ = h.SetStrictCheck(false) }()
	}
	filter := &netlink.Route{LinkIndex: index, Table: unix.RT_TABLE_MAIN}
	routes, err := listRetry(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(f.netlink, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list %s routes on link %d: %w", f.name, index, err)
	}
	return routes, nil
}

// syncRoutes adds and replaces the wanted routes, then deletes owned
// routes that no peer backs.
func (d *Datapath) syncRoutes(w *writer, vxlanIndex [2]int, uplinkIndex int, want map[netip.Prefix]route) error {
	current, err := d.ownedRoutes(w.h, vxlanIndex, uplinkIndex)
	if err != nil {
		return err
	}
	w.routes(planRoutes(current, want))
	return nil
}

// syncNeighs makes the neighbour table of family f's vxlan device (at
// index) equal to want.
func syncNeighs(w *writer, index int, f *family, want map[netip.Addr]net.HardwareAddr) error {
	current, err := listRetry(func() ([]netlink.Neigh, error) { return w.h.NeighList(index, f.netlink) })
	if err != nil {
		return fmt.Errorf("list neighbours on link %d: %w", index, err)
	}
	w.neighs(planNeighs(current, want, index))
	return nil
}

// syncFDB makes the forwarding database of family f's vxlan device (at
// index) equal to want.
func syncFDB(w *writer, index int, f *family, want map[macKey]fdbEntry, learning bool) error {
	current, err := listRetry(func() ([]netlink.Neigh, error) { return w.h.NeighList(index, unix.AF_BRIDGE) })
	if err != nil {
		return fmt.Errorf("list fdb on link %d: %w", index, err)
	}
	w.fdb(planFDB(current, want, index, f, learning))
	return nil
}

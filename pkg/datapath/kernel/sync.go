package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/datapath"
)

// Sync makes routes, neighbour and fdb entries equal to peers. It first
// repairs the vxlan device and its address if they drifted, skips (and logs)
// peers that must not be programmed, and returns the errors of all peers
// joined, after trying every one.
func (d *Datapath) Sync(ctx context.Context, peers []datapath.Peer) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.ok {
		return errors.New("sync: Setup has not succeeded yet")
	}
	uplink, err := findUplink(d.node.Uplink)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	vxlanIndex := 0
	if d.node.Backend == datapath.ModeVXLAN {
		dev, err := d.ensureDevice(uplink)
		if err != nil {
			return fmt.Errorf("sync: %w", err)
		}
		if d.subnet.IsValid() {
			if err := ensureAddress(dev, d.subnet); err != nil {
				return fmt.Errorf("sync: %w", err)
			}
		}
		vxlanIndex = dev.Attrs().Index
	}

	var (
		errs     []error
		rejected []rejection
		valid    []datapath.Peer
	)
	for _, p := range peers {
		if reason := checkPeer(d.node, d.subnet, p); reason != "" {
			rejected = append(rejected, rejection{p, reason})
			continue
		}
		// One peer at a time, so a peer whose mode cannot be decided
		// does not hold up the others.
		assigned, err := datapath.AssignModes(d.node, []datapath.Peer{p})
		if err != nil {
			errs = append(errs, fmt.Errorf("peer %s: %w", p.Subnet, err))
			continue
		}
		valid = append(valid, assigned[0])
	}
	want, dups := buildDesired(valid, vxlanIndex, uplink.Attrs().Index)
	d.logRejections(append(rejected, dups...))

	if vxlanIndex != 0 {
		errs = append(errs, syncFDB(vxlanIndex, want.fdb, d.node.Learning))
		errs = append(errs, syncNeighs(vxlanIndex, want.neighs))
	}
	errs = append(errs, d.syncRoutes(vxlanIndex, uplink.Attrs().Index, want.routes))
	return errors.Join(errs...)
}

// logRejections warns about each rejected peer once while it stays rejected.
func (d *Datapath) logRejections(rs []rejection) {
	now := make(map[string]bool, len(rs))
	for _, r := range rs {
		k := r.key()
		now[k] = true
		if !d.rejected[k] {
			slog.Warn("not programming peer", "subnet", r.peer.Subnet.String(), "node_ip", r.peer.NodeIP.String(),
				"vtep_mac", r.peer.VtepMAC.String(), "reason", r.reason)
		}
	}
	d.rejected = now
}

// ownedRoutes lists the IPv4 main-table routes this datapath owns: all on
// the vxlan device (vxlanIndex 0: none) except the kernel's own, and those
// via a gateway on the uplink into Network, except into this node's subnet.
func (d *Datapath) ownedRoutes(vxlanIndex, uplinkIndex int) ([]netlink.Route, error) {
	var owned []netlink.Route
	if vxlanIndex != 0 {
		routes, err := listLinkRoutes(vxlanIndex)
		if err != nil {
			return nil, err
		}
		for _, r := range routes {
			if r.Protocol != unix.RTPROT_KERNEL {
				owned = append(owned, r)
			}
		}
	}
	routes, err := listLinkRoutes(uplinkIndex)
	if err != nil {
		return nil, err
	}
	for _, r := range routes {
		if r.Gw != nil && ownedUplinkDst(d.node.Network, d.subnet, prefixOf(r.Dst)) {
			owned = append(owned, r)
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

// listLinkRoutes lists the IPv4 main-table routes out of one link.
func listLinkRoutes(index int) ([]netlink.Route, error) {
	filter := &netlink.Route{LinkIndex: index, Table: unix.RT_TABLE_MAIN}
	routes, err := listRetry(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_V4, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes on link %d: %w", index, err)
	}
	return routes, nil
}

// syncRoutes adds and replaces the wanted routes, then deletes owned
// routes that no peer backs.
func (d *Datapath) syncRoutes(vxlanIndex, uplinkIndex int, want map[netip.Prefix]route) error {
	current, err := d.ownedRoutes(vxlanIndex, uplinkIndex)
	if err != nil {
		return err
	}
	add, del := planRoutes(current, want)
	var errs []error
	for _, r := range add {
		nr := r.netlink()
		if err := netlink.RouteReplace(&nr); err != nil {
			errs = append(errs, fmt.Errorf("program route %s: %w", r, err))
			continue
		}
		slog.Info("programmed route", "route", r.String())
	}
	for _, r := range del {
		if err := ignoreNotFound(netlink.RouteDel(&r)); err != nil {
			errs = append(errs, fmt.Errorf("remove stale route %s: %w", routeOf(r), err))
			continue
		}
		slog.Info("removed stale route", "route", routeOf(r).String())
	}
	return errors.Join(errs...)
}

// syncNeighs makes the IPv4 neighbour table of the vxlan device equal to want.
func syncNeighs(index int, want map[netip.Addr]net.HardwareAddr) error {
	current, err := listRetry(func() ([]netlink.Neigh, error) { return netlink.NeighList(index, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("list neighbours on link %d: %w", index, err)
	}
	set, del := planNeighs(current, want, index)
	var errs []error
	for _, n := range set {
		if err := netlink.NeighSet(&n); err != nil {
			errs = append(errs, fmt.Errorf("program neighbour %s: %w", n.String(), err))
			continue
		}
		slog.Info("programmed neighbour", "ip", n.IP.String(), "mac", n.HardwareAddr.String())
	}
	for _, n := range del {
		if err := ignoreNotFound(netlink.NeighDel(&n)); err != nil {
			errs = append(errs, fmt.Errorf("remove stale neighbour %s: %w", n.String(), err))
			continue
		}
		slog.Info("removed stale neighbour", "ip", n.IP.String(), "mac", n.HardwareAddr.String())
	}
	return errors.Join(errs...)
}

// syncFDB makes the vxlan device's forwarding database equal to want.
func syncFDB(index int, want map[string]fdbEntry, learning bool) error {
	current, err := listRetry(func() ([]netlink.Neigh, error) { return netlink.NeighList(index, unix.AF_BRIDGE) })
	if err != nil {
		return fmt.Errorf("list fdb on link %d: %w", index, err)
	}
	set, del := planFDB(current, want, index, learning)
	var errs []error
	for _, n := range set {
		if err := netlink.NeighSet(&n); err != nil {
			errs = append(errs, fmt.Errorf("program fdb %s dst %s: %w", n.HardwareAddr, n.IP, err))
			continue
		}
		slog.Info("programmed fdb entry", "mac", n.HardwareAddr.String(), "dst", n.IP.String())
	}
	for _, n := range del {
		if err := ignoreNotFound(netlink.NeighDel(&n)); err != nil {
			errs = append(errs, fmt.Errorf("remove stale fdb %s dst %s: %w", n.HardwareAddr, n.IP, err))
			continue
		}
		slog.Info("removed stale fdb entry", "mac", n.HardwareAddr.String(), "dst", n.IP.String())
	}
	return errors.Join(errs...)
}

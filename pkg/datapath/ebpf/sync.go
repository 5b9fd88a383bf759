package ebpf

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/pkg/datapath"
)

// Sync makes the remote subnets and known nodes maps equal to peers (modes
// from datapath.AssignModes), syncs the kernel slow path, forgets endpoints
// whose veth is gone and re-attaches what drifted. Errors are joined after
// trying everything.
func (d *Datapath) Sync(ctx context.Context, peers []datapath.Peer) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.inNS(func() error {
		var errs []error
		if err := d.slow.Sync(ctx, peers); err != nil {
			errs = append(errs, fmt.Errorf("kernel slow path: %w", err))
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.objs == nil {
			return errors.New("sync: Setup has not succeeded yet")
		}
		subnets, nodes, err := d.desired(peers)
		errs = append(errs, err,
			reconcile(d.objs.WeftPeers, subnets),
			reconcile(d.objs.WeftNodes, nodes),
			d.forgetGoneEndpoints(),
			d.refreshBridge(),
			d.attachAll())
		return errors.Join(errs...)
	})
}

// desired turns peers into the contents of the remote subnets and known
// nodes maps. Peers that must not be programmed are left out (the kernel
// slow path logs why); a subnet or node IP claimed twice goes to the peer
// with the lowest subnet, every time. Caller is in d.ns.
func (d *Datapath) desired(peers []datapath.Peer) (map[weftLpmKey]weftPeer, map[uint32]weftKnownNode, error) {
	own := netip.Prefix{}
	if d.cfg.SubnetLen != 0 {
		own = netip.PrefixFrom(addrOf(d.cfg.Subnet), int(d.cfg.SubnetLen))
	}
	sorted := slices.SortedFunc(slices.Values(peers), func(a, b datapath.Peer) int {
		return cmp.Or(a.Subnet.Addr().Compare(b.Subnet.Addr()), a.Subnet.Bits()-b.Subnet.Bits())
	})
	subnets := map[weftLpmKey]weftPeer{}
	nodes := map[uint32]weftKnownNode{}
	var errs []error
	for _, p := range sorted {
		if !d.acceptable(own, p) {
			continue
		}
		assigned, err := datapath.AssignModes(d.node, []datapath.Peer{p})
		if err != nil {
			errs = append(errs, fmt.Errorf("peer %s: %w", p.Subnet, err))
			continue
		}
		p = assigned[0]
		key := weftLpmKey{Prefixlen: uint32(p.Subnet.Bits()), Addr: be32(p.Subnet.Addr())}
		node := be32(p.NodeIP)
		if _, dup := subnets[key]; dup {
			continue
		}
		if _, dup := nodes[node]; dup {
			slog.Warn("node IP leases two subnets; accepting traffic from the first only",
				"node", p.NodeIP, "subnet", p.Subnet)
			continue
		}
		v := weftPeer{NodeIp: node, VtepMac: mac6(p.VtepMAC), Mode: uint8(weftModeMODE_VXLAN)}
		if p.Mode == datapath.ModeHostGW {
			v.Mode = uint8(weftModeMODE_HOST_GW)
		}
		subnets[key] = v
		nodes[node] = weftKnownNode{Subnet: key.Addr, Prefixlen: key.Prefixlen}
	}
	return subnets, nodes, errors.Join(errs...)
}

// acceptable reports whether p can be programmed next to own subnet.
func (d *Datapath) acceptable(own netip.Prefix, p datapath.Peer) bool {
	switch {
	case !p.Subnet.IsValid() || !p.Subnet.Addr().Is4() || p.Subnet != p.Subnet.Masked():
		return false
	case !d.node.Network.Contains(p.Subnet.Addr()) || p.Subnet.Bits() < d.node.Network.Bits():
		return false
	case own.IsValid() && own.Overlaps(p.Subnet):
		return false
	case !p.NodeIP.Is4() || p.NodeIP.IsUnspecified() || p.NodeIP.IsMulticast() || p.NodeIP == d.node.NodeIP:
		return false
	case d.node.Backend == datapath.ModeVXLAN && !unicastMAC(p.VtepMAC):
		return false
	}
	return true
}

// unicastMAC reports whether mac is a non-zero unicast Ethernet address.
func unicastMAC(mac net.HardwareAddr) bool {
	return len(mac) == 6 && mac[0]&1 == 0 && !slices.Equal(mac, make(net.HardwareAddr, 6))
}

// reconcile makes the contents of m equal to want.
func reconcile[K, V comparable](m *ebpf.Map, want map[K]V) error {
	have := map[K]V{}
	var (
		k K
		v V
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		have[k] = v
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read map %s: %w", m, err)
	}
	var errs []error
	for k, v := range want {
		if cur, ok := have[k]; !ok || cur != v {
			if err := m.Put(k, v); err != nil {
				errs = append(errs, fmt.Errorf("update map %s: %w", m, err))
			}
		}
	}
	for k := range have {
		if _, ok := want[k]; ok {
			continue
		}
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("delete from map %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

// forgetGoneEndpoints deletes endpoints whose host veth no longer exists (a
// pod deleted without a CNI DEL reaching the plugin). Caller is in d.ns.
func (d *Datapath) forgetGoneEndpoints() error {
	var (
		ip uint32
		ep weftEndpoint
	)
	var gone []uint32
	it := d.objs.WeftEndpoints.Iterate()
	for it.Next(&ip, &ep) {
		if _, err := netlink.LinkByIndex(int(ep.HostIfindex)); errors.As(err, new(netlink.LinkNotFoundError)) {
			gone = append(gone, ip)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read endpoints map: %w", err)
	}
	for _, ip := range gone {
		if err := d.objs.WeftEndpoints.Delete(ip); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete endpoint %s: %w", addrOf(ip), err)
		}
		slog.Info("forgot endpoint whose veth is gone", "pod", addrOf(ip))
	}
	return nil
}

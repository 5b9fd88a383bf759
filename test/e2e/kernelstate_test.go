package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/lease"
	"github.com/weftnet/weft/test/cluster"
)

// flannel's kernel vxlan device and its settings (FLANNEL-COMPAT.md).
const (
	vxlanDev  = "flannel.1"
	vxlanVNI  = 1
	vxlanPort = 8472
	// vxlanMTU is the underlay's 1500 minus 50 bytes of encapsulation.
	vxlanMTU = 1450
	// vxlanMTUv6 is flannel-v6.1's: 1500 minus 70 bytes of encapsulation
	// in IPv6 (FLANNEL-COMPAT.md "Dual stack").
	vxlanMTUv6 = 1430
)

// vxlanDevOf is flannel's vxlan device for pod traffic of family f:
// flannel.1, or flannel-v6.1 over the IPv6 underlay.
func vxlanDevOf(f cluster.Family) string { return cluster.BackendDevice("vxlan", f) }

// vxlanMTUOf is the MTU of vxlanDevOf(f).
func vxlanMTUOf(f cluster.Family) int {
	if f == cluster.IPv6 {
		return vxlanMTUv6
	}
	return vxlanMTU
}

// podMTU is the pods' MTU (FLANNEL_MTU) of backend in a cluster of stack:
// the smallest of the families' device MTUs (weft's documented
// difference: flanneld publishes uplink - 50 even in dual stack).
func podMTU(backend string, stack cluster.Stack) int {
	if backend != "vxlan" {
		return 1500
	}
	mtu := 1500
	for _, f := range stack.Families() {
		mtu = min(mtu, vxlanMTUOf(f))
	}
	return mtu
}

// peer is another node as a node's kernel state must reflect it, one
// family of it (as the datapath's peers; see cluster.Etcd.Leases).
type peer struct {
	subnet   netip.Prefix
	publicIP netip.Addr
	vtepMAC  net.HardwareAddr // vxlan only
}

// family is the peer's address family.
func (p peer) family() cluster.Family { return cluster.FamilyOf(p.subnet.Addr()) }

// peersOf returns the leases of own's family other than own as peers.
func peersOf(leases map[netip.Prefix]lease.Attrs, own netip.Prefix) ([]peer, error) {
	var out []peer
	for subnet, a := range leases {
		if subnet == own || subnet.Addr().Is4() != own.Addr().Is4() {
			continue
		}
		p, err := peerOf(subnet, a)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// peerOf returns the lease of subnet as a peer.
func peerOf(subnet netip.Prefix, a lease.Attrs) (peer, error) {
	p := peer{subnet: subnet, publicIP: a.PublicIP}
	if a.BackendType == "vxlan" {
		mac, err := (lease.Lease{Subnet: subnet, Attrs: a}).VtepMAC()
		if err != nil {
			return peer{}, err
		}
		p.vtepMAC = mac
	}
	return p, nil
}

// withPeers calls f, once per family of the cluster, with a netlink handle
// in node n's namespace, n's own subnet of the family and the other leases
// of the family as peers.
func withPeers(n *cluster.Node, leases map[netip.Prefix]lease.Attrs, f func(h *netlink.Handle, own netip.Prefix, peers []peer) error) error {
	subnets, err := n.Subnets()
	if err != nil {
		return err
	}
	h, err := n.NS.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	for _, own := range subnets {
		peers, err := peersOf(leases, own)
		if err != nil {
			return err
		}
		if err := f(h, own, peers); err != nil {
			return err
		}
	}
	return nil
}

// vxlanDevice checks node n's vxlan device of own's family as flannel
// creates it and returns it: VNI 1, port 8472, no learning; flannel.1 with
// MTU 1450 and address <own subnet>.0/32, flannel-v6.1 with MTU 1430,
// local = the node's IPv6 underlay address and address <own subnet>::/128
// (beside its link-local one).
func vxlanDevice(h *netlink.Handle, own netip.Prefix) (*netlink.Vxlan, error) {
	f := cluster.FamilyOf(own.Addr())
	name, mtu := vxlanDevOf(f), vxlanMTUOf(f)
	link, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	vx, ok := link.(*netlink.Vxlan)
	if !ok {
		return nil, fmt.Errorf("%s is a %s, not vxlan", name, link.Type())
	}
	if vx.VxlanId != vxlanVNI || vx.Port != vxlanPort || vx.Learning || vx.MTU != mtu {
		return nil, fmt.Errorf("%s: vni %d port %d learning %v mtu %d, want vni %d port %d nolearning mtu %d",
			name, vx.VxlanId, vx.Port, vx.Learning, vx.MTU, vxlanVNI, vxlanPort, mtu)
	}
	if local, _ := netip.AddrFromSlice(vx.SrcAddr); f == cluster.IPv6 && !local.Is6() {
		return nil, fmt.Errorf("%s: local %s, want the node's IPv6 underlay address", name, vx.SrcAddr)
	}
	addrs, err := h.AddrList(link, f.Netlink())
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", name, err)
	}
	var global []string
	for _, a := range addrs {
		if !a.IP.IsLinkLocalUnicast() {
			global = append(global, a.IPNet.String())
		}
	}
	want := netip.PrefixFrom(own.Addr(), own.Addr().BitLen()).String()
	if len(global) != 1 || global[0] != want {
		return nil, fmt.Errorf("%s addresses %v, want only %s", name, global, want)
	}
	return vx, nil
}

// vxlanPeerState reports which of flannel's three entries for p exist on
// dev (flannel.1, or flannel-v6.1 for an IPv6 peer): the route "<subnet>
// via <subnet's first address> dev <dev> onlink", the permanent neighbour
// <subnet's first address> -> VtepMAC and the fdb entry VtepMAC ->
// PublicIP. An entry that exists but differs is an error.
func vxlanPeerState(h *netlink.Handle, dev netlink.Link, p peer) (route, neigh, fdb bool, err error) {
	gw := p.subnet.Addr()
	idx, name, fam := dev.Attrs().Index, dev.Attrs().Name, p.family().Netlink()
	routes, err := h.RouteListFiltered(fam, &netlink.Route{Dst: prefixNet(p.subnet)}, netlink.RT_FILTER_DST)
	if err != nil {
		return false, false, false, fmt.Errorf("routes to %s: %w", p.subnet, err)
	}
	for _, r := range routes {
		route = true
		if r.LinkIndex != idx || !ipIs(r.Gw, gw) || r.Flags&unix.RTNH_F_ONLINK == 0 {
			return route, neigh, fdb, fmt.Errorf("route %s, want %s via %s dev %s onlink", r, p.subnet, gw, name)
		}
	}
	neighs, err := h.NeighList(idx, fam)
	if err != nil {
		return route, false, false, fmt.Errorf("neighbours on %s: %w", name, err)
	}
	for _, n := range neighs {
		if ipIs(n.IP, gw) {
			neigh = true
			if !bytes.Equal(n.HardwareAddr, p.vtepMAC) || n.State&netlink.NUD_PERMANENT == 0 {
				return route, neigh, fdb, fmt.Errorf("neighbour %s lladdr %s state %#x, want %s permanent", gw, n.HardwareAddr, n.State, p.vtepMAC)
			}
		}
	}
	fdbs, err := h.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		return route, neigh, false, fmt.Errorf("fdb of %s: %w", name, err)
	}
	for _, f := range fdbs {
		if bytes.Equal(f.HardwareAddr, p.vtepMAC) {
			fdb = true
			if !ipIs(f.IP, p.publicIP) {
				return route, neigh, fdb, fmt.Errorf("fdb %s dst %s, want dst %s", f.HardwareAddr, f.IP, p.publicIP)
			}
		}
	}
	return route, neigh, fdb, nil
}

// checkVXLANPeer requires all three of flannel's entries for p.
func checkVXLANPeer(h *netlink.Handle, dev netlink.Link, p peer) error {
	route, neigh, fdb, err := vxlanPeerState(h, dev, p)
	if err != nil {
		return err
	}
	if !route || !neigh || !fdb {
		return fmt.Errorf("peer %s (%s): route %v neigh %v fdb %v, want all", p.subnet, p.publicIP, route, neigh, fdb)
	}
	return nil
}

// checkVXLANPeerGone requires that none of flannel's entries for p is left.
func checkVXLANPeerGone(n *cluster.Node, p peer) error {
	h, err := n.NS.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	name := vxlanDevOf(p.family())
	dev, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("%s on %s: %w", name, n.Name, err)
	}
	route, neigh, fdb, err := vxlanPeerState(h, dev, p)
	if route || neigh || fdb {
		return errors.Join(err, fmt.Errorf("%s still has peer %s: route %v neigh %v fdb %v", n.Name, p.subnet, route, neigh, fdb))
	}
	return nil
}

// checkRouteMode requires that node n routes p's subnet as mode does:
// "vxlan" through flannel.1 (flannel-v6.1 for an IPv6 peer), "host-gw"
// via p's PublicIP (of p's family) on eth0.
func checkRouteMode(h *netlink.Handle, p peer, mode string) error {
	if mode == "udp" || mode == "wireguard" {
		return checkRouteDev(h, p, cluster.BackendDevice(mode, p.family()))
	}
	routes, err := h.RouteListFiltered(p.family().Netlink(), &netlink.Route{Dst: prefixNet(p.subnet)}, netlink.RT_FILTER_DST)
	if err != nil {
		return fmt.Errorf("routes to %s: %w", p.subnet, err)
	}
	if len(routes) != 1 {
		return fmt.Errorf("%d routes to %s, want 1", len(routes), p.subnet)
	}
	r := routes[0]
	dev, gw := vxlanDevOf(p.family()), p.subnet.Addr()
	if mode == "host-gw" {
		dev, gw = "eth0", p.publicIP
	}
	link, err := h.LinkByIndex(r.LinkIndex)
	if err != nil {
		return fmt.Errorf("route %s: %w", r, err)
	}
	if link.Attrs().Name != dev || !ipIs(r.Gw, gw) {
		return fmt.Errorf("route %s via %s dev %s, want %s: via %s dev %s", p.subnet, r.Gw, link.Attrs().Name, mode, gw, dev)
	}
	return nil
}

// checkRouteDev requires the kernel to route p's subnet out of dev: udp and
// wireguard route the whole pod network through one device, as flannel
// does (its address on the device makes the route; the device finds the
// peer).
func checkRouteDev(h *netlink.Handle, p peer, dev string) error {
	routes, err := h.RouteGet(p.subnet.Addr().Next().AsSlice())
	if err != nil || len(routes) == 0 {
		return fmt.Errorf("route to %s: %v", p.subnet, err)
	}
	link, err := h.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return fmt.Errorf("route to %s: %w", p.subnet, err)
	}
	if link.Attrs().Name != dev {
		return fmt.Errorf("%s is routed out of %s, want %s", p.subnet, link.Attrs().Name, dev)
	}
	return nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func ipIs(ip net.IP, a netip.Addr) bool {
	b, ok := netip.AddrFromSlice(ip)
	return ok && b.Unmap() == a
}

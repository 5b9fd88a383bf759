// Package kernel is weft's kernel datapath: a vxlan device flannel.<VNI>
// (and flannel-v6.<VNI> over an IPv6 underlay), routes, neighbour and fdb
// entries programmed exactly as flannel's vxlan and host-gw backends do, for
// IPv4 and IPv6 alike, and for the udp backend (IPv4 only) a TUN device
// flannel0 with a forwarding loop in the process, as flanneld's, so weft and
// flannel nodes interoperate.
//
// Every method works in the network namespace of the calling OS thread: each
// call opens one netlink socket there and uses it for all its requests.
package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/wireguard"
)

// Datapath is the kernel datapath. The zero value is not usable; call New.
type Datapath struct {
	mu sync.Mutex
	// node is set by Setup; ok reports whether Setup has succeeded once.
	node datapath.Node
	ok   bool
	// subnets are this node's own pod subnets (from SetSubnet), by
	// family.index; invalid while unknown or the family is off.
	subnets [2]netip.Prefix
	// macs are the VTEP MACs this process has reported, by family.index;
	// a device recreated after drift gets its MAC back so published leases
	// stay valid.
	macs [2]net.HardwareAddr
	// sel holds the peer set of the last Sync and the Applies since, and
	// which of its peers are programmed; nil until a Sync after Setup.
	sel *datapath.Selector
	// last is what the last Sync or Apply programmed, if its writes
	// succeeded and no Setup or subnet change came after it; Apply updates
	// it in place. nil makes Apply rewrite the whole selection.
	last *desired
	// udp is the udp backend's running forwarder (nil otherwise); peers is
	// the table it forwards by and udpStats its counters.
	udp      *udpTunnel
	peers    *peerTable
	udpStats *udpCounters
	// wg is the wireguard backend's state.
	wg wgState
}

var (
	_ datapath.Datapath = (*Datapath)(nil)
	_ datapath.Applier  = (*Datapath)(nil)
)

// New returns a kernel datapath; nothing is touched until Setup.
func New() *Datapath {
	return &Datapath{peers: newPeerTable(), udpStats: &udpCounters{}}
}

// Name returns "kernel".
func (d *Datapath) Name() string { return "kernel" }

// Setup turns forwarding on for the node's families and, for vxlan,
// creates or adopts flannel.<VNI> (IPv4) and flannel-v6.<VNI> (IPv6), one
// per enabled family, keeping a compatible existing device (and its MAC),
// and deletes the device of a family that is off. Info.MTU is the smallest
// of the families'. For udp it opens the TUN device flannel0 and the UDP
// socket on the node IP and starts forwarding between them (it keeps a
// running forwarder).
func (d *Datapath) Setup(ctx context.Context, node datapath.Node) (datapath.Info, error) {
	if err := ctx.Err(); err != nil {
		return datapath.Info{}, err
	}
	node, err := normalize(node)
	if err != nil {
		return datapath.Info{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// The device may be recreated below and the node may differ: what
	// Apply knows is void.
	d.last, d.sel = nil, nil
	h, err := openHandle()
	if err != nil {
		return datapath.Info{}, err
	}
	defer h.Close()
	uplink, err := findUplink(h, node.Uplink)
	if err != nil {
		return datapath.Info{}, err
	}
	if err := enableForwarding(node, uplink.Attrs().Name); err != nil {
		return datapath.Info{}, err
	}
	d.node, d.ok = node, true
	for _, f := range families {
		if !f.on(node) {
			d.subnets[f.index] = netip.Prefix{}
		}
	}
	if node.Backend != datapath.ModeUDP {
		if err := d.closeUDP(); err != nil {
			return datapath.Info{}, err
		}
	}
	switch node.Backend {
	case datapath.ModeHostGW:
		return datapath.Info{MTU: uplink.Attrs().MTU}, nil
	case datapath.ModeUDP:
		slog.Info("udp backend on the kernel datapath: every pod packet between nodes is copied through weftd " +
			"(about 0.02x the throughput of plain routing); the ebpf datapath or the vxlan backend avoid the copy")
		dev, err := d.ensureUDP(h, uplink)
		if err != nil {
			return datapath.Info{}, err
		}
		return datapath.Info{MTU: dev.Attrs().MTU}, nil
	}
	if node.Backend == datapath.ModeWireGuard {
		return d.setupWireGuard(h, uplink)
	}
	_, info, err := d.ensureVXLAN(h, uplink)
	return info, err
}

// SetSubnet records this node's pod subnet of subnet's family; for vxlan
// it puts the subnet's network address as a /32 (IPv4) or /128 (IPv6) on
// the family's device, for wireguard as a /32 on the device (which also
// routes the cluster network through it), for udp with the Network's
// prefix length on flannel0, replacing any other address of the family.
func (d *Datapath) SetSubnet(ctx context.Context, subnet netip.Prefix) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !subnet.IsValid() || subnet.Addr().Is4In6() || subnet != subnet.Masked() {
		return fmt.Errorf("set subnet: %s is not a masked IPv4 or IPv6 prefix", subnet)
	}
	f := familyOf(subnet.Addr())
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.ok {
		return errors.New("set subnet: Setup has not succeeded yet")
	}
	if !f.on(d.node) {
		return fmt.Errorf("set subnet %s: this node does not run %s", subnet, f.name)
	}
	if subnet != d.subnets[f.index] {
		// The own subnet decides which peers and uplink routes are valid.
		d.last = nil
		if d.sel != nil {
			if err := d.sel.SetOwn(subnet); err != nil {
				slog.Warn("select peers for the new subnet", "err", err)
			}
		}
	}
	d.subnets[f.index] = subnet
	if d.node.Backend == datapath.ModeHostGW {
		return nil
	}
	h, err := openHandle()
	if err != nil {
		return fmt.Errorf("set subnet %s: %w", subnet, err)
	}
	defer h.Close()
	if d.node.Backend == datapath.ModeWireGuard {
		return d.ensureWireGuardSubnet(h)
	}
	name, bits := f.deviceName(d.node.VNI), f.hostBits()
	if d.node.Backend == datapath.ModeUDP {
		d.peers.setOwn(subnet.Addr())
		name, bits = TUNName, d.node.Network.Bits()
	}
	dev, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("set subnet %s: find %s: %w", subnet, name, err)
	}
	if err := ensureAddress(h, dev, subnet, bits); err != nil {
		return fmt.Errorf("set subnet %s: %w", subnet, err)
	}
	return nil
}

// Stats returns the vxlan or wireguard device's packet, byte, drop and
// error counters (backend "vxlan-kernel", "wireguard-kernel"; a dual-stack
// vxlan node's two devices summed), or the udp forwarding loop's
// ("udp-kernel"); host-gw has none.
func (d *Datapath) Stats() ([]datapath.Counter, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.ok || d.node.Backend == datapath.ModeHostGW {
		return nil, nil
	}
	if d.node.Backend == datapath.ModeUDP {
		return d.udpStats.counters(), nil
	}
	h, err := openHandle()
	if err != nil {
		return nil, fmt.Errorf("read stats: %w", err)
	}
	defer h.Close()
	var sum netlink.LinkStatistics
	for _, name := range d.deviceNames() {
		dev, err := h.LinkByName(name)
		if err != nil {
			return nil, fmt.Errorf("read stats of %s: %w", name, err)
		}
		s := dev.Attrs().Statistics
		if s == nil {
			return nil, fmt.Errorf("read stats of %s: kernel reported none", name)
		}
		sum.RxPackets += s.RxPackets
		sum.RxBytes += s.RxBytes
		sum.TxPackets += s.TxPackets
		sum.TxBytes += s.TxBytes
		sum.RxDropped += s.RxDropped
		sum.TxDropped += s.TxDropped
		sum.RxErrors += s.RxErrors
		sum.TxErrors += s.TxErrors
	}
	backend := string(d.node.Backend) + "-kernel"
	return []datapath.Counter{
		{Backend: backend, Direction: "rx", Packets: sum.RxPackets, Bytes: sum.RxBytes},
		{Backend: backend, Direction: "tx", Packets: sum.TxPackets, Bytes: sum.TxBytes},
		{Backend: backend, Reason: "device_rx_dropped", Packets: sum.RxDropped},
		{Backend: backend, Reason: "device_tx_dropped", Packets: sum.TxDropped},
		{Backend: backend, Reason: "device_rx_errors", Packets: sum.RxErrors},
		{Backend: backend, Reason: "device_tx_errors", Packets: sum.TxErrors},
	}, nil
}

// Close releases nothing for vxlan and host-gw: all state lives in the
// kernel and stays there so a restarted process adopts it without
// interrupting traffic. For udp it stops the forwarding loop and closes its
// fds (flannel0 goes with them: the process is the forwarder), and it stops
// a userspace wireguard device, which cannot outlive the process.
func (d *Datapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return errors.Join(d.closeUDP(), d.closeWireGuard())
}

// Cleanup deletes the flannel.<VNI> and flannel-v6.<VNI>, flannel0 or
// flannel-wg device (and with it every route on it; it stops the udp
// forwarder, and for a userspace wireguard device removes its UAPI socket)
// and the host-gw routes this datapath owns on the uplink. Without a prior
// Setup the node is unknown: it then deletes every vxlan device named
// flannel.<N> or flannel-v6.<N>, flannel0 and flannel-wg, and leaves
// host-gw routes alone (it cannot tell them apart).
func (d *Datapath) Cleanup(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.last = nil
	h, err := openHandle()
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	defer h.Close()
	errs := []error{d.closeUDP(), wireguard.Delete(h, d.wg.dev, wireguard.DeviceName)}
	d.wg.dev = nil
	if !d.ok {
		return errors.Join(append(errs, deleteAllDevices(h))...)
	}
	switch d.node.Backend {
	case datapath.ModeVXLAN:
		for _, f := range families {
			errs = append(errs, deleteDevice(h, f.deviceName(d.node.VNI)))
		}
	case datapath.ModeUDP:
		errs = append(errs, deleteDevice(h, TUNName))
	}
	if uplink, err := findUplink(h, d.node.Uplink); err != nil {
		errs = append(errs, err)
	} else {
		errs = append(errs, d.cleanupUplinkRoutes(h, uplink.Attrs().Index))
	}
	return errors.Join(errs...)
}

// cleanupUplinkRoutes deletes every route this datapath owns on the uplink.
func (d *Datapath) cleanupUplinkRoutes(h *netlink.Handle, uplinkIndex int) error {
	routes, err := d.ownedRoutes(h, [2]int{}, uplinkIndex)
	if err != nil {
		return err
	}
	w := newWriter(h)
	w.routes(nil, routes)
	w.summary("removed host-gw routes")
	return w.err()
}

// normalize checks node and fills in defaults.
func normalize(node datapath.Node) (datapath.Node, error) {
	switch {
	case node.Backend != datapath.ModeVXLAN && node.Backend != datapath.ModeHostGW &&
		node.Backend != datapath.ModeUDP && node.Backend != datapath.ModeWireGuard:
		return node, fmt.Errorf("backend %q is not supported by the kernel datapath: use vxlan, host-gw, udp or wireguard", node.Backend)
	case node.Uplink == "":
		return node, errors.New("no uplink interface: set --iface")
	}
	for _, f := range families {
		if err := checkFamily(node, f); err != nil {
			return node, err
		}
	}
	switch {
	case len(node.Families()) == 0:
		return node, errors.New("no address family enabled: set EnableIPv4 or EnableIPv6 in net-conf.json")
	case (node.Backend == datapath.ModeUDP || node.Backend == datapath.ModeWireGuard) && !ipv4.on(node):
		return node, fmt.Errorf("the %s backend needs IPv4: set EnableIPv4 in net-conf.json or use vxlan or host-gw", node.Backend)
	case (node.Backend == datapath.ModeUDP || node.Backend == datapath.ModeWireGuard) && ipv6.on(node):
		return node, fmt.Errorf("the %s backend carries IPv4 only: set EnableIPv6 to false in net-conf.json or use vxlan or host-gw", node.Backend)
	}
	node.Network, node.IPv6Network = node.Network.Masked(), node.IPv6Network.Masked()
	if node.Backend == datapath.ModeHostGW {
		return node, nil
	}
	if node.MTU < 0 {
		return node, fmt.Errorf("MTU %d is negative: set Backend.MTU in net-conf.json to 0 (automatic) or a size", node.MTU)
	}
	if node.Backend == datapath.ModeWireGuard {
		return normalizeWireGuard(node)
	}
	if node.VNI < 0 || node.VNI >= 1<<24 {
		return node, fmt.Errorf("VNI %d out of range: set Backend.VNI in net-conf.json to 0..16777215", node.VNI)
	}
	if node.Port == 0 {
		node.Port = DefaultPort
		if node.Backend == datapath.ModeUDP {
			node.Port = DefaultUDPPort
		}
	}
	if node.Port < 0 || node.Port > 65535 {
		return node, fmt.Errorf("%s port %d out of range: set Backend.Port in net-conf.json to 1..65535", node.Backend, node.Port)
	}
	return node, nil
}

// checkFamily checks node's node IP and network of family f: both of the
// family, or both unset (the family is off).
func checkFamily(node datapath.Node, f *family) error {
	ip, network := f.of(node)
	flag, key := "--public-ip", "Network"
	if f == ipv6 {
		flag, key = "--public-ipv6", "IPv6Network"
	}
	switch {
	case ip.IsValid() && familyOf(ip) != f:
		return fmt.Errorf("%s node IP %s is not %s: set %s or --iface to an interface with an %s address", f.name, ip, f.name, flag, f.name)
	case network.IsValid() && familyOf(network.Addr()) != f:
		return fmt.Errorf("network %s is not an %s prefix: fix %s in net-conf.json", network, f.name, key)
	case ip.IsValid() && !network.IsValid():
		return fmt.Errorf("%s node IP %s without an %s network: set %s in net-conf.json", f.name, ip, f.name, key)
	case network.IsValid() && !ip.IsValid():
		return fmt.Errorf("%s network %s without an %s node IP: set %s or --iface to an interface with an %s address", f.name, network, f.name, flag, f.name)
	}
	return nil
}

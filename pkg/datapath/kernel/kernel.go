// Package kernel is weft's kernel datapath: a vxlan device flannel.<VNI>,
// routes, neighbour and fdb entries programmed exactly as flannel's vxlan
// and host-gw backends do, and for the udp backend a TUN device flannel0
// with a forwarding loop in the process, as flanneld's, so weft and flannel
// nodes interoperate.
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
)

// Datapath is the kernel datapath. The zero value is not usable; call New.
type Datapath struct {
	mu sync.Mutex
	// node is set by Setup; ok reports whether Setup has succeeded once.
	node datapath.Node
	ok   bool
	// subnet is this node's own pod subnet (from SetSubnet).
	subnet netip.Prefix
	// mac is the VTEP MAC this process has reported; a device recreated
	// after drift gets it back so published leases stay valid.
	mac net.HardwareAddr
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

// Setup turns IPv4 forwarding on and, for vxlan, creates or adopts the
// flannel.<VNI> device. It keeps a compatible existing device (and its MAC).
// For udp it opens the TUN device flannel0 and the UDP socket on the node
// IP and starts forwarding between them (it keeps a running forwarder).
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
	if err := enableForwarding(); err != nil {
		return datapath.Info{}, err
	}
	h, err := openHandle()
	if err != nil {
		return datapath.Info{}, err
	}
	defer h.Close()
	uplink, err := findUplink(h, node.Uplink)
	if err != nil {
		return datapath.Info{}, err
	}
	d.node, d.ok = node, true
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
	dev, err := d.ensureDevice(h, uplink)
	if err != nil {
		return datapath.Info{}, err
	}
	if d.subnet.IsValid() {
		if err := ensureAddress(h, dev, d.subnet, 32); err != nil {
			return datapath.Info{}, err
		}
	}
	return datapath.Info{VtepMAC: d.mac, MTU: dev.Attrs().MTU}, nil
}

// SetSubnet records this node's pod subnet; for vxlan it puts the subnet's
// network address as a /32 on the device, for udp with the Network's prefix
// length on flannel0, replacing any other address.
func (d *Datapath) SetSubnet(ctx context.Context, subnet netip.Prefix) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !subnet.IsValid() || !subnet.Addr().Is4() || subnet != subnet.Masked() {
		return fmt.Errorf("set subnet: %s is not a masked IPv4 prefix", subnet)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.ok {
		return errors.New("set subnet: Setup has not succeeded yet")
	}
	if subnet != d.subnet {
		// The own subnet decides which peers and uplink routes are valid.
		d.last = nil
		if d.sel != nil {
			if err := d.sel.SetOwn(subnet); err != nil {
				slog.Warn("select peers for the new subnet", "err", err)
			}
		}
	}
	d.subnet = subnet
	d.peers.setOwn(subnet.Addr())
	if d.node.Backend == datapath.ModeHostGW {
		return nil
	}
	h, err := openHandle()
	if err != nil {
		return fmt.Errorf("set subnet %s: %w", subnet, err)
	}
	defer h.Close()
	name, bits := DeviceName(d.node.VNI), 32
	if d.node.Backend == datapath.ModeUDP {
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

// Stats returns the vxlan device's packet, byte, drop and error counters,
// or the udp forwarding loop's (backend "udp-kernel"); host-gw has none.
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
	dev, err := h.LinkByName(DeviceName(d.node.VNI))
	if err != nil {
		return nil, fmt.Errorf("read stats of %s: %w", DeviceName(d.node.VNI), err)
	}
	s := dev.Attrs().Statistics
	if s == nil {
		return nil, fmt.Errorf("read stats of %s: kernel reported none", DeviceName(d.node.VNI))
	}
	const backend = "vxlan-kernel"
	return []datapath.Counter{
		{Backend: backend, Direction: "rx", Packets: s.RxPackets, Bytes: s.RxBytes},
		{Backend: backend, Direction: "tx", Packets: s.TxPackets, Bytes: s.TxBytes},
		{Backend: backend, Reason: "device_rx_dropped", Packets: s.RxDropped},
		{Backend: backend, Reason: "device_tx_dropped", Packets: s.TxDropped},
		{Backend: backend, Reason: "device_rx_errors", Packets: s.RxErrors},
		{Backend: backend, Reason: "device_tx_errors", Packets: s.TxErrors},
	}, nil
}

// Close releases nothing for vxlan and host-gw: all state lives in the
// kernel and stays there so a restarted process adopts it without
// interrupting traffic. For udp it stops the forwarding loop and closes its
// fds; flannel0 goes with them (the process is the forwarder).
func (d *Datapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closeUDP()
}

// Cleanup deletes the flannel.<VNI> device (and with it every route on it),
// stops the udp forwarder and deletes flannel0, and deletes the host-gw
// routes this datapath owns on the uplink. Without a prior Setup the node
// is unknown: it then deletes every vxlan device named flannel.<N> and
// flannel0, and leaves host-gw routes alone (it cannot tell them apart).
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
	errs := []error{d.closeUDP()}
	if !d.ok {
		return errors.Join(append(errs, deleteAllDevices(h))...)
	}
	switch d.node.Backend {
	case datapath.ModeVXLAN:
		errs = append(errs, deleteDevice(h, DeviceName(d.node.VNI)))
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
	routes, err := d.ownedRoutes(h, 0, uplinkIndex)
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
	case node.Backend != datapath.ModeVXLAN && node.Backend != datapath.ModeHostGW && node.Backend != datapath.ModeUDP:
		return node, fmt.Errorf("backend %q is not supported by the kernel datapath: use vxlan, host-gw or udp", node.Backend)
	case !node.NodeIP.Is4():
		return node, fmt.Errorf("node IP %s is not IPv4: set --public-ip or --iface to an IPv4 interface", node.NodeIP)
	case node.Uplink == "":
		return node, errors.New("no uplink interface: set --iface")
	case !node.Network.IsValid() || !node.Network.Addr().Is4():
		return node, fmt.Errorf("network %s is not an IPv4 prefix: fix Network in net-conf.json", node.Network)
	}
	node.Network = node.Network.Masked()
	if node.Backend == datapath.ModeHostGW {
		return node, nil
	}
	if node.VNI < 0 || node.VNI >= 1<<24 {
		return node, fmt.Errorf("VNI %d out of range: set Backend.VNI in net-conf.json to 0..16777215", node.VNI)
	}
	if node.MTU < 0 {
		return node, fmt.Errorf("MTU %d is negative: set Backend.MTU in net-conf.json to 0 (automatic) or a size", node.MTU)
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

package kernel

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/wireguard"
)

// DefaultWireGuardPort is flannel's wireguard ListenPort (the IPv4
// device's) and DefaultWireGuardPortV6 its ListenPortV6 (the IPv6 one's).
const (
	DefaultWireGuardPort   = 51820
	DefaultWireGuardPortV6 = 51821
)

// wireguardOverhead is what WireGuard adds to a packet, as flannel counts
// it for either underlay: outer IPv6 header (40; IPv4's 20 leaves room),
// UDP (8), WireGuard header (16) and tag (16).
const wireguardOverhead = 80

// wgState is the wireguard backend's part of a Datapath: flannel's Mode
// "separate", a device per enabled family (flannel-wg over IPv4,
// flannel-wg-v6 over IPv6), each with its own port and the IPv4 or IPv6
// peers, both with the node's one private key.
type wgState struct {
	// devs are the families' devices by family.index; nil while not set
	// up or the family is off.
	devs [2]*wireguard.Device
	// public is this node's public key, reported in Info.
	public   wgtypes.Key
	settings wireguard.PeerSettings
	// peers are each family's device peers as the last Sync or Apply
	// wrote them; valid while d.last is not nil.
	peers [2]map[wgtypes.Key]wireguard.Peer
}

// wgName is the name of family f's wireguard device, as flannel names it.
func wgName(f *family) string {
	if f == ipv6 {
		return wireguard.DeviceNameV6
	}
	return wireguard.DeviceName
}

// wgPort is the ListenPort of family f's wireguard device.
func (d *Datapath) wgPort(f *family) int {
	if f == ipv6 {
		return d.node.WireGuard.PortV6
	}
	return d.node.Port
}

// normalizeWireGuard checks the wireguard settings of node and fills in the
// default ports.
func normalizeWireGuard(node datapath.Node) (datapath.Node, error) {
	for _, p := range []struct {
		port *int
		def  int
		key  string
	}{{&node.Port, DefaultWireGuardPort, "ListenPort"}, {&node.WireGuard.PortV6, DefaultWireGuardPortV6, "ListenPortV6"}} {
		if *p.port == 0 {
			*p.port = p.def
		}
		if *p.port < 0 || *p.port > 65535 {
			return node, fmt.Errorf("wireguard port %d out of range: set Backend.%s in net-conf.json to 1..65535", *p.port, p.key)
		}
	}
	switch {
	case ipv4.on(node) && ipv6.on(node) && node.Port == node.WireGuard.PortV6:
		return node, fmt.Errorf("wireguard ListenPort and ListenPortV6 are both %d: the IPv4 and IPv6 devices need a port each", node.Port)
	case node.WireGuard.KeyFile == "":
		return node, errors.New("no wireguard private key file: set WIREGUARD_KEY_FILE")
	case node.WireGuard.Keepalive < 0:
		return node, fmt.Errorf("wireguard keepalive %s is negative: fix Backend.PersistentKeepaliveInterval in net-conf.json", node.WireGuard.Keepalive)
	}
	if node.WireGuard.PSK != "" {
		if _, err := wgtypes.ParseKey(node.WireGuard.PSK); err != nil {
			return node, fmt.Errorf("wireguard PSK is not a base64 key (%w): fix Backend.PSK in net-conf.json", err)
		}
	}
	return node, nil
}

// setupWireGuard loads (or creates) the private key and ensures each
// enabled family's device with that key and the family's port, and its
// address and route when the subnet is known; it deletes the device of a
// family that is off. Caller holds d.mu; d.node is set.
func (d *Datapath) setupWireGuard(h *netlink.Handle, uplink netlink.Link) (datapath.Info, error) {
	key, err := wireguard.LoadOrCreateKey(d.node.WireGuard.KeyFile)
	if err != nil {
		return datapath.Info{}, err
	}
	d.wg.public = key.PublicKey()
	d.wg.settings = wireguard.PeerSettings{Keepalive: d.node.WireGuard.Keepalive}
	if d.node.WireGuard.PSK != "" {
		psk, _ := wgtypes.ParseKey(d.node.WireGuard.PSK) // checked by normalize
		d.wg.settings.PSK = &psk
	}
	mtu := d.node.MTU
	if mtu == 0 {
		mtu = uplink.Attrs().MTU - wireguardOverhead
	}
	for _, f := range families {
		if !f.on(d.node) {
			if err := d.deleteWireGuard(h, f); err != nil {
				return datapath.Info{}, err
			}
			continue
		}
		if err := d.ensureWireGuardDevice(h, f, key, mtu); err != nil {
			return datapath.Info{}, err
		}
	}
	return datapath.Info{PublicKey: d.wg.public.String(), MTU: mtu}, nil
}

// ensureWireGuardDevice ensures family f's device with private key key,
// the family's port and MTU mtu, and its address and route when the
// subnet is known.
func (d *Datapath) ensureWireGuardDevice(h *netlink.Handle, f *family, key wgtypes.Key, mtu int) error {
	name, port := wgName(f), d.wgPort(f)
	dev, err := wireguard.Ensure(h, d.wg.devs[f.index], name, mtu)
	d.wg.devs[f.index] = dev
	if err != nil {
		return err
	}
	if err := dev.Configure(wgtypes.Config{PrivateKey: &key, ListenPort: &port}); err != nil {
		return err
	}
	if err := d.ensureWireGuardSubnet(h, f); err != nil {
		return err
	}
	slog.Info("wireguard device ready", "device", name, "family", f.name, "public_key", d.wg.public.String(),
		"port", port, "mtu", mtu, "userspace", dev.Userspace())
	return nil
}

// ensureWireGuardSubnet puts the own subnet's network address of family f
// as a /32 (/128) on the family's device and routes the family's cluster
// network through it, as flannel does; nothing while the subnet is
// unknown.
func (d *Datapath) ensureWireGuardSubnet(h *netlink.Handle, f *family) error {
	subnet := d.subnets[f.index]
	if !subnet.IsValid() {
		return nil
	}
	name := wgName(f)
	dev, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := ensureAddress(h, dev, subnet, f.hostBits()); err != nil {
		return err
	}
	_, network := f.of(d.node)
	r := &netlink.Route{LinkIndex: dev.Attrs().Index, Dst: ipNet(network), Scope: netlink.SCOPE_LINK}
	if err := h.RouteReplace(r); err != nil {
		return fmt.Errorf("route %s dev %s: %w", network, name, err)
	}
	return nil
}

// programWireGuard makes each device's peers equal to what the selected
// peers of its family ask for, repairing the devices, their addresses and
// routes first, and records them for Apply. Caller holds d.mu (and is
// program).
func (d *Datapath) programWireGuard(h *netlink.Handle, uplink netlink.Link, selected []datapath.Peer) error {
	if d.wireguardMissing(h) {
		// Gone (a userspace device after Close, or deleted): set it up again.
		if _, err := d.setupWireGuard(h, uplink); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
	}
	var want [2]map[wgtypes.Key]wireguard.Peer
	for _, f := range families {
		if f.on(d.node) {
			want[f.index] = map[wgtypes.Key]wireguard.Peer{}
			if err := d.ensureWireGuardSubnet(h, f); err != nil {
				return fmt.Errorf("sync: %w", err)
			}
		}
	}
	for _, p := range selected {
		d.addSubnet(want[familyOf(p.Subnet.Addr()).index], p)
	}
	for _, f := range families {
		if f.on(d.node) {
			if err := d.syncWireGuardPeers(f, want[f.index]); err != nil {
				return fmt.Errorf("sync: %w", err)
			}
		}
	}
	d.wg.peers = want
	d.last = &desired{} // marks d.wg.peers valid for Apply
	return nil
}

// syncWireGuardPeers makes the peers of family f's device equal to want.
func (d *Datapath) syncWireGuardPeers(f *family, want map[wgtypes.Key]wireguard.Peer) error {
	dev := d.wg.devs[f.index]
	have, err := dev.Peers()
	if err != nil {
		return err
	}
	var cfg wgtypes.Config
	for _, p := range have {
		if _, ok := want[p.PublicKey]; !ok {
			cfg.Peers = append(cfg.Peers, wireguard.RemoveConfig(p.PublicKey))
		}
	}
	removed := len(cfg.Peers)
	for _, p := range want {
		cfg.Peers = append(cfg.Peers, d.wg.settings.Config(p))
	}
	if err := dev.Configure(cfg); err != nil {
		return err
	}
	slog.Debug("synced wireguard peers", "device", wgName(f), "peers", len(want), "removed", removed)
	return nil
}

// wireguardMissing reports whether the device of an enabled family is not
// set up or its link is gone.
func (d *Datapath) wireguardMissing(h *netlink.Handle) bool {
	for _, f := range families {
		if !f.on(d.node) {
			continue
		}
		if d.wg.devs[f.index] == nil {
			return true
		}
		if _, err := h.LinkByName(wgName(f)); err != nil {
			return true
		}
	}
	return false
}

// applyWireGuard reconfigures only the peers whose subnets changed in
// delta, each on its family's device, or all when nothing valid is
// recorded. Caller holds d.mu.
func (d *Datapath) applyWireGuard(delta datapath.Delta) error {
	if d.last == nil {
		return d.program(d.sel.Selected())
	}
	d.last = nil
	touched := [2]map[wgtypes.Key]bool{{}, {}}
	for _, c := range delta.Subnets {
		if c.Old.Subnet.IsValid() {
			f := familyOf(c.Old.Subnet.Addr())
			key, _ := wgtypes.ParseKey(c.Old.PublicKey) // the Selector checked it
			p := d.wg.peers[f.index][key]
			p.AllowedIPs = slices.DeleteFunc(p.AllowedIPs, func(s netip.Prefix) bool { return s == c.Old.Subnet })
			d.wg.peers[f.index][key] = p
			touched[f.index][key] = true
		}
		if c.New.Subnet.IsValid() {
			f := familyOf(c.New.Subnet.Addr())
			touched[f.index][d.addSubnet(d.wg.peers[f.index], c.New)] = true
		}
	}
	for _, f := range families {
		if len(touched[f.index]) == 0 {
			continue
		}
		peers := d.wg.peers[f.index]
		var cfg wgtypes.Config
		for key := range touched[f.index] {
			p := peers[key]
			if len(p.AllowedIPs) == 0 {
				delete(peers, key)
				cfg.Peers = append(cfg.Peers, wireguard.RemoveConfig(key))
				continue
			}
			cfg.Peers = append(cfg.Peers, d.wg.settings.Config(p))
		}
		if err := d.wg.devs[f.index].Configure(cfg); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
	}
	d.last = &desired{}
	return nil
}

// addSubnet adds selected peer p's subnet to its public key's entry in
// peers (its family's device's) and returns the key.
func (d *Datapath) addSubnet(peers map[wgtypes.Key]wireguard.Peer, p datapath.Peer) wgtypes.Key {
	key, _ := wgtypes.ParseKey(p.PublicKey) // the Selector checked it
	wp := peers[key]
	wp.PublicKey = key
	wp.Endpoint = netip.AddrPortFrom(p.NodeIP, uint16(d.wgPort(familyOf(p.Subnet.Addr()))))
	wp.AllowedIPs = append(wp.AllowedIPs, p.Subnet)
	peers[key] = wp
	return key
}

// closeWireGuard stops the userspace devices; kernel ones stay.
func (d *Datapath) closeWireGuard() error {
	var errs []error
	for i, dev := range d.wg.devs {
		if dev != nil {
			errs = append(errs, dev.Close())
			d.wg.devs[i], d.last = nil, nil
		}
	}
	return errors.Join(errs...)
}

// deleteWireGuard stops and deletes family f's device (kernel or
// userspace, ours or left by another process) and its UAPI socket.
func (d *Datapath) deleteWireGuard(h *netlink.Handle, f *family) error {
	err := wireguard.Delete(h, d.wg.devs[f.index], wgName(f))
	d.wg.devs[f.index], d.wg.peers[f.index] = nil, nil
	return err
}

// deviceNames are the devices whose counters Stats reports: the wireguard
// or vxlan device of each enabled family.
func (d *Datapath) deviceNames() []string {
	var names []string
	for _, f := range families {
		switch {
		case !f.on(d.node):
		case d.node.Backend == datapath.ModeWireGuard:
			names = append(names, wgName(f))
		default:
			names = append(names, f.deviceName(d.node.VNI))
		}
	}
	return names
}

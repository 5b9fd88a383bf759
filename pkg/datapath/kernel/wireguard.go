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

// DefaultWireGuardPort is flannel's wireguard ListenPort.
const DefaultWireGuardPort = 51820

// wireguardOverhead is what WireGuard over IPv4 adds to a packet, as flannel
// counts it: outer IPv4 (20), UDP (8), WireGuard header and tag (32), and
// room for an IPv6 outer header (20 more).
const wireguardOverhead = 80

// wgState is the wireguard backend's part of a Datapath.
type wgState struct {
	dev *wireguard.Device
	// public is this node's public key, reported in Info.
	public   wgtypes.Key
	settings wireguard.PeerSettings
	// peers is the device's peers as the last Sync or Apply wrote them;
	// valid while d.last is not nil.
	peers map[wgtypes.Key]wireguard.Peer
}

// normalizeWireGuard checks the wireguard settings of node and fills in the
// default port.
func normalizeWireGuard(node datapath.Node) (datapath.Node, error) {
	if node.Port == 0 {
		node.Port = DefaultWireGuardPort
	}
	switch {
	case node.Port < 0 || node.Port > 65535:
		return node, fmt.Errorf("wireguard port %d out of range: set Backend.ListenPort in net-conf.json to 1..65535", node.Port)
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

// setupWireGuard loads (or creates) the private key, ensures the device and
// its private key and port, and its address and route when the subnet is
// known. Caller holds d.mu; d.node is set.
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
	port := d.node.Port
	d.wg.dev, err = wireguard.Ensure(h, d.wg.dev, wireguard.DeviceName, mtu)
	if err != nil {
		return datapath.Info{}, err
	}
	if err := d.wg.dev.Configure(wgtypes.Config{PrivateKey: &key, ListenPort: &port}); err != nil {
		return datapath.Info{}, err
	}
	if err := d.ensureWireGuardSubnet(h); err != nil {
		return datapath.Info{}, err
	}
	slog.Info("wireguard device ready", "device", wireguard.DeviceName, "public_key", d.wg.public.String(),
		"port", port, "mtu", mtu, "userspace", d.wg.dev.Userspace())
	return datapath.Info{PublicKey: d.wg.public.String(), MTU: mtu}, nil
}

// ensureWireGuardSubnet puts the own subnet's network address as a /32 on
// the device and routes the cluster network through it, as flannel does;
// nothing while the subnet is unknown.
func (d *Datapath) ensureWireGuardSubnet(h *netlink.Handle) error {
	if !d.subnets[ipv4.index].IsValid() {
		return nil
	}
	dev, err := h.LinkByName(wireguard.DeviceName)
	if err != nil {
		return fmt.Errorf("find %s: %w", wireguard.DeviceName, err)
	}
	if err := ensureAddress(h, dev, d.subnets[ipv4.index], 32); err != nil {
		return err
	}
	r := &netlink.Route{LinkIndex: dev.Attrs().Index, Dst: ipNet(d.node.Network), Scope: netlink.SCOPE_LINK}
	if err := h.RouteReplace(r); err != nil {
		return fmt.Errorf("route %s dev %s: %w", d.node.Network, wireguard.DeviceName, err)
	}
	return nil
}

// programWireGuard makes the device's peers equal to what the selected
// peers ask for, repairing the device, its address and route first, and
// records them for Apply. Caller holds d.mu (and is program).
func (d *Datapath) programWireGuard(h *netlink.Handle, uplink netlink.Link, selected []datapath.Peer) error {
	if d.wg.dev == nil || !d.wireguardUp(h) {
		// Gone (a userspace device after Close, or deleted): set it up again.
		if _, err := d.setupWireGuard(h, uplink); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
	} else if err := d.ensureWireGuardSubnet(h); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	want := map[wgtypes.Key]wireguard.Peer{}
	for _, p := range selected {
		d.addSubnet(want, p)
	}
	have, err := d.wg.dev.Peers()
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	var cfg wgtypes.Config
	for _, p := range have {
		if _, ok := want[p.PublicKey]; !ok {
			cfg.Peers = append(cfg.Peers, wireguard.RemoveConfig(p.PublicKey))
		}
	}
	for _, p := range want {
		cfg.Peers = append(cfg.Peers, d.wg.settings.Config(p))
	}
	if err := d.wg.dev.Configure(cfg); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	slog.Debug("synced wireguard peers", "peers", len(want), "removed", len(cfg.Peers)-len(want))
	d.wg.peers = want
	d.last = &desired{} // marks d.wg.peers valid for Apply
	return nil
}

// wireguardUp reports whether the device's link exists.
func (d *Datapath) wireguardUp(h *netlink.Handle) bool {
	_, err := h.LinkByName(wireguard.DeviceName)
	return err == nil
}

// applyWireGuard reconfigures only the peers whose subnets changed in
// delta, or all when nothing valid is recorded. Caller holds d.mu.
func (d *Datapath) applyWireGuard(delta datapath.Delta) error {
	if d.last == nil || d.wg.peers == nil {
		return d.program(d.sel.Selected())
	}
	d.last = nil
	touched := map[wgtypes.Key]bool{}
	for _, c := range delta.Subnets {
		if c.Old.Subnet.IsValid() {
			key, _ := wgtypes.ParseKey(c.Old.PublicKey) // the Selector checked it
			p := d.wg.peers[key]
			p.AllowedIPs = slices.DeleteFunc(p.AllowedIPs, func(s netip.Prefix) bool { return s == c.Old.Subnet })
			d.wg.peers[key] = p
			touched[key] = true
		}
		if c.New.Subnet.IsValid() {
			touched[d.addSubnet(d.wg.peers, c.New)] = true
		}
	}
	var cfg wgtypes.Config
	for key := range touched {
		p := d.wg.peers[key]
		if len(p.AllowedIPs) == 0 {
			delete(d.wg.peers, key)
			cfg.Peers = append(cfg.Peers, wireguard.RemoveConfig(key))
			continue
		}
		cfg.Peers = append(cfg.Peers, d.wg.settings.Config(p))
	}
	if err := d.wg.dev.Configure(cfg); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	d.last = &desired{}
	return nil
}

// addSubnet adds selected peer p's subnet to its public key's entry in
// peers and returns the key.
func (d *Datapath) addSubnet(peers map[wgtypes.Key]wireguard.Peer, p datapath.Peer) wgtypes.Key {
	key, _ := wgtypes.ParseKey(p.PublicKey) // the Selector checked it
	wp := peers[key]
	wp.PublicKey = key
	wp.Endpoint = netip.AddrPortFrom(p.NodeIP, uint16(d.node.Port))
	wp.AllowedIPs = append(wp.AllowedIPs, p.Subnet)
	peers[key] = wp
	return key
}

// closeWireGuard stops a userspace device; a kernel one stays.
func (d *Datapath) closeWireGuard() error {
	if d.wg.dev == nil {
		return nil
	}
	err := d.wg.dev.Close()
	d.wg.dev, d.last = nil, nil
	return err
}

// deviceNames are the devices whose counters Stats reports: the wireguard
// device, or the vxlan device of each enabled family.
func (d *Datapath) deviceNames() []string {
	if d.node.Backend == datapath.ModeWireGuard {
		return []string{wireguard.DeviceName}
	}
	var names []string
	for _, f := range families {
		if f.on(d.node) {
			names = append(names, f.deviceName(d.node.VNI))
		}
	}
	return names
}

package ebpf

import (
	"errors"
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/datapath/kernel"
	"github.com/weftnet/weft/pkg/netconf"
)

// configKey is the node config array's only index.
const configKey = uint32(0)

// writeNodeConfig fills the node config from d.node (its families, its
// backend's mode and port), the slow path's VTEP MACs (info) and vxlan
// devices, the uplink and the bridge, and stores it. A family the node does not have is zeroed
// (off). The caller holds d.mu and runs in d.ns.
func (d *Datapath) writeNodeConfig(info datapath.Info) error {
	uplink, err := netlink.LinkByName(d.node.Uplink)
	if err != nil {
		return fmt.Errorf("find uplink %q: %w (set --iface to an existing interface)", d.node.Uplink, err)
	}
	c := d.cfg
	vteps := [weftFamilyFAMILY_MAX]net.HardwareAddr{info.VtepMAC, info.VtepMACv6}
	var fams [weftFamilyFAMILY_MAX]weftFamilyConfig
	for _, f := range d.node.Families() {
		i := familyOf(f.NodeIP)
		var vtep net.HardwareAddr
		if d.node.Backend == datapath.ModeVXLAN {
			vtep = vteps[i]
		}
		// An earlier process's subnet stays until SetSubnet.
		fams[i] = familyConfig(f.NodeIP, prefixOf(c.Family[i].Subnet, c.Family[i].SubnetLen), f.Network, vtep)
	}
	c.Family = fams
	c.UplinkIfindex = uint32(uplink.Attrs().Index)
	c.CtRefreshJiffies = ctRefreshJiffies()
	c.Vni, c.Port, c.Mode = 0, 0, 0
	switch d.node.Backend {
	case datapath.ModeVXLAN:
		c.Vni = uint32(d.node.VNI)
		c.Port = portOr(d.node.Port, kernel.DefaultPort)
		c.Mode = uint8(weftModeMODE_VXLAN)
	case datapath.ModeUDP:
		c.Port = portOr(d.node.Port, netconf.DefaultUDPPort)
		c.Mode = uint8(weftModeMODE_UDP)
	}
	d.cfg = c
	return d.refreshLinks()
}

// portOr is port, or def when port is 0 (unset).
func portOr(port, def int) uint16 {
	if port == 0 {
		return uint16(def)
	}
	return uint16(port)
}

// refreshLinks puts the current ifindexes of the bridge and of the vxlan
// devices of the node's families, and the bridge's MAC (zero while a link
// does not exist), into the node config and stores it if they changed.
func (d *Datapath) refreshLinks() error {
	c := d.cfg
	c.BridgeIfindex, c.BridgeMac = 0, [6]uint8{}
	br, err := optionalLink(d.opts.Bridge)
	if err != nil {
		return err
	}
	if br != nil {
		c.BridgeIfindex = uint32(br.Attrs().Index)
		c.BridgeMac = mac6(br.Attrs().HardwareAddr)
	}
	devices := [weftFamilyFAMILY_MAX]string{kernel.DeviceName(d.node.VNI), kernel.DeviceNameV6(d.node.VNI)}
	for i := range c.Family {
		fc := &c.Family[i]
		fc.VxlanIfindex = 0
		if fc.NodeIp == (weftAddr{}) || d.node.Backend != datapath.ModeVXLAN {
			continue
		}
		dev, err := optionalLink(devices[i])
		if err != nil {
			return err
		}
		if dev != nil {
			fc.VxlanIfindex = uint32(dev.Attrs().Index)
		}
	}
	var stored weftNodeConfig
	if err := d.objs.WeftConfig.Lookup(configKey, &stored); err == nil && stored == c {
		d.cfg = c
		return nil
	}
	d.cfg = c
	return d.putNodeConfig()
}

// putNodeConfig stores d.cfg.
func (d *Datapath) putNodeConfig() error {
	if err := d.objs.WeftConfig.Update(configKey, &d.cfg, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write node config map: %w", err)
	}
	return nil
}

// optionalLink finds the link called name; nil when there is none.
func optionalLink(name string) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find link %s: %w", name, err)
	}
	return l, nil
}

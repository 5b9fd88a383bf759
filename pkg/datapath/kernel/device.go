package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/datapath"
)

// DefaultPort is the kernel's (and flannel's) vxlan UDP port.
const DefaultPort = 8472

// enableForwarding turns on forwarding for each family node runs, which
// pod traffic needs. IPv6 forwarding makes the kernel ignore router
// advertisements on interfaces with accept_ra 1: it warns when the uplink
// has that.
func enableForwarding(node datapath.Node, uplink string) error {
	for _, f := range families {
		if !f.on(node) {
			continue
		}
		changed, err := sysctlSet(f.forwarding, "1")
		if err != nil {
			return fmt.Errorf("enable %s forwarding: %w", f.name, err)
		}
		if !changed {
			continue
		}
		slog.Info("enabled forwarding", "family", f.name)
		if f == ipv6 {
			if ra, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + uplink + "/accept_ra"); err == nil && string(bytes.TrimSpace(ra)) == "1" {
				slog.Warn("IPv6 forwarding is on: the kernel now ignores router advertisements on the uplink; "+
					"set net.ipv6.conf."+uplink+".accept_ra=2 to keep them", "uplink", uplink)
			}
		}
	}
	return nil
}

// sysctlSet sets the sysctl file at path to value unless it has it, and
// reports whether it changed it.
func sysctlSet(path, value string) (bool, error) {
	cur, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	if string(bytes.TrimSpace(cur)) == value {
		return false, nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	return true, nil
}

// findUplink looks up the uplink by name.
func findUplink(h *netlink.Handle, name string) (netlink.Link, error) {
	link, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("find uplink %q: %w (set --iface to an existing interface)", name, err)
	}
	return link, nil
}

// ensureVXLAN makes the vxlan devices match d.node: for each family it
// runs, the family's device (see ensureDevice) with the own subnet's
// address once known; the device of a family it does not run is deleted.
// It returns the devices' indexes by family.index (0: none) and the Info
// to report.
func (d *Datapath) ensureVXLAN(h *netlink.Handle, uplink netlink.Link) ([2]int, datapath.Info, error) {
	var (
		index [2]int
		info  datapath.Info
	)
	for _, f := range families {
		if !f.on(d.node) {
			d.macs[f.index] = nil
			if err := deleteDevice(h, f.deviceName(d.node.VNI)); err != nil {
				return index, info, err
			}
			continue
		}
		dev, err := d.ensureDevice(h, uplink, f)
		if err != nil {
			return index, info, err
		}
		if own := d.subnets[f.index]; own.IsValid() {
			if err := ensureAddress(h, dev, own, f.hostBits()); err != nil {
				return index, info, err
			}
		}
		index[f.index] = dev.Attrs().Index
		if info.MTU == 0 || dev.Attrs().MTU < info.MTU {
			info.MTU = dev.Attrs().MTU
		}
	}
	info.VtepMAC, info.VtepMACv6 = d.macs[ipv4.index], d.macs[ipv6.index]
	return index, info, nil
}

// ensureDevice makes family f's vxlan device match d.node: it keeps a
// compatible device, replaces an incompatible one (reusing its MAC) and
// creates a missing one (with the MAC reported earlier, if any). It sets the
// MTU and brings it up; an IPv6 device does not take router advertisements
// (as flannel's).
func (d *Datapath) ensureDevice(h *netlink.Handle, uplink netlink.Link, f *family) (netlink.Link, error) {
	want := d.wantDevice(uplink, f)
	name := want.Name
	link, err := h.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		link, err = d.createDevice(h, want, f)
	case err != nil:
		return nil, fmt.Errorf("find %s: %w", name, err)
	default:
		have, isVxlan := link.(*netlink.Vxlan)
		if isVxlan && compatible(have, want) {
			break
		}
		slog.Warn("replacing incompatible device", "device", name, "type", link.Type())
		if isVxlan && d.macs[f.index] == nil {
			d.macs[f.index] = have.HardwareAddr
		}
		if err := deleteDevice(h, name); err != nil {
			return nil, err
		}
		link, err = d.createDevice(h, want, f)
	}
	if err != nil {
		return nil, err
	}
	if link.Attrs().MTU != want.MTU {
		if err := h.LinkSetMTU(link, want.MTU); err != nil {
			return nil, fmt.Errorf("set MTU %d on %s: %w", want.MTU, name, err)
		}
		link.Attrs().MTU = want.MTU
	}
	if f == ipv6 {
		if _, err := sysctlSet("/proc/sys/net/ipv6/conf/"+name+"/accept_ra", "0"); err != nil {
			return nil, err
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("bring up %s: %w", name, err)
		}
	}
	if !bytes.Equal(d.macs[f.index], link.Attrs().HardwareAddr) {
		d.macs[f.index] = link.Attrs().HardwareAddr
		slog.Info("vxlan device ready", "device", name, "vtep_mac", d.macs[f.index].String(), "mtu", want.MTU)
	}
	return link, nil
}

// wantDevice is the vxlan device of family f that d.node asks for.
func (d *Datapath) wantDevice(uplink netlink.Link, f *family) *netlink.Vxlan {
	n := d.node
	mtu := n.MTU
	if mtu == 0 {
		mtu = uplink.Attrs().MTU - f.overhead
	}
	local, _ := f.of(n)
	return &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: f.deviceName(n.VNI), MTU: mtu},
		VxlanId:      n.VNI,
		VtepDevIndex: uplink.Attrs().Index,
		SrcAddr:      local.AsSlice(),
		Port:         n.Port,
		Learning:     n.Learning,
		GBP:          n.GBP,
	}
}

// compatible reports whether an existing device can be kept for want; the
// attributes compared here cannot be changed on a live vxlan device.
func compatible(have, want *netlink.Vxlan) bool {
	return have.VxlanId == want.VxlanId &&
		have.VtepDevIndex == want.VtepDevIndex &&
		have.SrcAddr.Equal(want.SrcAddr) &&
		have.Port == want.Port &&
		have.Learning == want.Learning &&
		have.GBP == want.GBP &&
		have.Group == nil &&
		!have.FlowBased
}

// createDevice adds want, family f's device, with the family's MAC when
// this process already has one.
func (d *Datapath) createDevice(h *netlink.Handle, want *netlink.Vxlan, f *family) (netlink.Link, error) {
	dev := *want
	dev.HardwareAddr = d.macs[f.index]
	if err := h.LinkAdd(&dev); err != nil {
		return nil, fmt.Errorf("create vxlan device %s (VNI %d, port %d): %w", dev.Name, dev.VxlanId, dev.Port, err)
	}
	link, err := h.LinkByName(dev.Name)
	if err != nil {
		return nil, fmt.Errorf("find created %s: %w", dev.Name, err)
	}
	slog.Info("created vxlan device", "device", dev.Name, "vni", dev.VxlanId, "port", dev.Port)
	return link, nil
}

// deleteDevice deletes the named link if it exists.
func deleteDevice(h *netlink.Handle, name string) error {
	link, err := h.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := ignoreNotFound(h.LinkDel(link)); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	slog.Info("deleted device", "device", name)
	return nil
}

// deleteAllDevices deletes every vxlan device named flannel.<N> or
// flannel-v6.<N> and the udp backend's TUN device.
func deleteAllDevices(h *netlink.Handle) error {
	links, err := listRetry(h.LinkList)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	errs := []error{deleteDevice(h, TUNName)}
	for _, l := range links {
		name := l.Attrs().Name
		if _, isVxlan := l.(*netlink.Vxlan); !isVxlan {
			continue
		}
		for _, f := range families {
			var vni int
			if _, err := fmt.Sscanf(name, f.device, &vni); err == nil && name == f.deviceName(vni) {
				errs = append(errs, deleteDevice(h, name))
			}
		}
	}
	return errors.Join(errs...)
}

// ensureAddress leaves exactly <subnet network address>/<bits> as the
// address of subnet's family on dev, besides IPv6 link-local addresses
// (the kernel's). An IPv6 address skips duplicate address detection: it is
// the node's own, and usable at once.
func ensureAddress(h *netlink.Handle, dev netlink.Link, subnet netip.Prefix, bits int) error {
	want := netip.PrefixFrom(subnet.Addr(), bits)
	f := familyOf(want.Addr())
	addrs, err := listRetry(func() ([]netlink.Addr, error) { return h.AddrList(dev, f.netlink) })
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", dev.Attrs().Name, err)
	}
	present := false
	for _, a := range addrs {
		have := prefixOf(a.IPNet)
		if have == want {
			present = true
			continue
		}
		if have.Addr().IsLinkLocalUnicast() {
			continue
		}
		if err := ignoreNotFound(h.AddrDel(dev, &a)); err != nil {
			return fmt.Errorf("remove stale address %s from %s: %w", a.IPNet, dev.Attrs().Name, err)
		}
		slog.Info("removed stale address", "device", dev.Attrs().Name, "address", a.IPNet.String())
	}
	if present {
		return nil
	}
	addr := &netlink.Addr{IPNet: ipNet(want)}
	if f == ipv6 {
		addr.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(dev, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add address %s to %s: %w", want, dev.Attrs().Name, err)
	}
	slog.Info("added address", "device", dev.Attrs().Name, "address", want.String())
	return nil
}

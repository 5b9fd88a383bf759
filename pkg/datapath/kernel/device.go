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
)

// DefaultPort is the kernel's (and flannel's) vxlan UDP port.
const DefaultPort = 8472

// vxlanOverhead is what VXLAN over IPv4 adds to a frame: outer IPv4 (20),
// UDP (8), VXLAN (8) and inner Ethernet (14) headers.
const vxlanOverhead = 50

// forwardingPath is per network namespace: the kernel resolves /proc/sys/net
// in the namespace of the thread that opens it.
const forwardingPath = "/proc/sys/net/ipv4/ip_forward"

// DeviceName is the vxlan device's name for vni, as flannel names it.
func DeviceName(vni int) string { return fmt.Sprintf("flannel.%d", vni) }

// enableForwarding turns on IPv4 forwarding, which pod traffic needs.
func enableForwarding() error {
	changed, err := sysctlOn(forwardingPath)
	if err != nil {
		return fmt.Errorf("enable IPv4 forwarding: %w", err)
	}
	if changed {
		slog.Info("enabled IPv4 forwarding")
	}
	return nil
}

// sysctlOn sets the sysctl file at path to 1 unless it is, and reports
// whether it changed it.
func sysctlOn(path string) (bool, error) {
	cur, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	if string(bytes.TrimSpace(cur)) == "1" {
		return false, nil
	}
	if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
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

// ensureDevice makes flannel.<VNI> match d.node: it keeps a compatible device,
// replaces an incompatible one (reusing its MAC) and creates a missing one
// (with the MAC reported earlier, if any). It sets the MTU and brings it up.
func (d *Datapath) ensureDevice(h *netlink.Handle, uplink netlink.Link) (netlink.Link, error) {
	want := d.wantDevice(uplink)
	name := want.Name
	link, err := h.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		link, err = d.createDevice(h, want)
	case err != nil:
		return nil, fmt.Errorf("find %s: %w", name, err)
	default:
		have, isVxlan := link.(*netlink.Vxlan)
		if isVxlan && compatible(have, want) {
			break
		}
		slog.Warn("replacing incompatible device", "device", name, "type", link.Type())
		if isVxlan && d.mac == nil {
			d.mac = have.HardwareAddr
		}
		if err := deleteDevice(h, name); err != nil {
			return nil, err
		}
		link, err = d.createDevice(h, want)
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
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("bring up %s: %w", name, err)
		}
	}
	if !bytes.Equal(d.mac, link.Attrs().HardwareAddr) {
		d.mac = link.Attrs().HardwareAddr
		slog.Info("vxlan device ready", "device", name, "vtep_mac", d.mac.String(), "mtu", want.MTU)
	}
	return link, nil
}

// wantDevice is the vxlan device d.node asks for.
func (d *Datapath) wantDevice(uplink netlink.Link) *netlink.Vxlan {
	n := d.node
	mtu := n.MTU
	if mtu == 0 {
		mtu = uplink.Attrs().MTU - vxlanOverhead
	}
	return &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: DeviceName(n.VNI), MTU: mtu},
		VxlanId:      n.VNI,
		VtepDevIndex: uplink.Attrs().Index,
		SrcAddr:      n.NodeIP.AsSlice(),
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

// createDevice adds want, with d.mac when this process already has one.
func (d *Datapath) createDevice(h *netlink.Handle, want *netlink.Vxlan) (netlink.Link, error) {
	dev := *want
	dev.HardwareAddr = d.mac
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

// deleteAllDevices deletes every vxlan device named flannel.<N> and the
// udp backend's TUN device.
func deleteAllDevices(h *netlink.Handle) error {
	links, err := listRetry(h.LinkList)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	errs := []error{deleteDevice(h, TUNName)}
	for _, l := range links {
		var vni int
		name := l.Attrs().Name
		if _, isVxlan := l.(*netlink.Vxlan); !isVxlan {
			continue
		}
		if _, err := fmt.Sscanf(name, "flannel.%d", &vni); err != nil || name != DeviceName(vni) {
			continue
		}
		errs = append(errs, deleteDevice(h, name))
	}
	return errors.Join(errs...)
}

// ensureAddress leaves exactly <subnet network address>/<bits> as the IPv4
// address of dev.
func ensureAddress(h *netlink.Handle, dev netlink.Link, subnet netip.Prefix, bits int) error {
	want := netip.PrefixFrom(subnet.Addr(), bits)
	addrs, err := listRetry(func() ([]netlink.Addr, error) { return h.AddrList(dev, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", dev.Attrs().Name, err)
	}
	present := false
	for _, a := range addrs {
		if prefixOf(a.IPNet) == want {
			present = true
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
	if err := h.AddrAdd(dev, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add address %s to %s: %w", want, dev.Attrs().Name, err)
	}
	slog.Info("added address", "device", dev.Attrs().Name, "address", want.String())
	return nil
}

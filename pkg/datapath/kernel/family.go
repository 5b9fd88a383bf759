package kernel

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/pkg/datapath"
)

// family is what the kernel datapath does differently for one address
// family: each runs its own vxlan device over its own underlay, as
// flanneld's flannel.<VNI> (IPv4) and flannel-v6.<VNI> (IPv6), and keeps
// its own routes, neighbours and fdb. Everything else is one code path.
type family struct {
	// index is the family's index in per-family arrays: 0 IPv4, 1 IPv6.
	index int
	// name is "IPv4" or "IPv6".
	name string
	// netlink is the family's netlink constant.
	netlink int
	// device is the vxlan device name's format, with the VNI.
	device string
	// overhead is what VXLAN over the family's underlay adds to a frame:
	// outer IP header (20 or 40), UDP (8), VXLAN (8), inner Ethernet (14).
	overhead int
	// forwarding is the sysctl that turns forwarding on for the family
	// (per network namespace: /proc/sys/net resolves in the namespace of
	// the thread that opens it).
	forwarding string
	// metric is the metric the kernel gives a route added without one
	// (IPv6 routes get 1024): the route's key in the kernel with dst.
	metric int
}

// The two families, indexed by family.index.
var families = [2]*family{
	{index: 0, name: "IPv4", netlink: netlink.FAMILY_V4, device: "flannel.%d", overhead: 50,
		forwarding: "/proc/sys/net/ipv4/ip_forward"},
	{index: 1, name: "IPv6", netlink: netlink.FAMILY_V6, device: "flannel-v6.%d", overhead: 70,
		forwarding: "/proc/sys/net/ipv6/conf/all/forwarding", metric: 1024},
}

// ipv4 and ipv6 are the two families.
var ipv4, ipv6 = families[0], families[1]

// familyOf returns the family of a (an IPv4-mapped IPv6 address is IPv4).
func familyOf(a netip.Addr) *family {
	if a.Is6() && !a.Is4In6() {
		return ipv6
	}
	return ipv4
}

// deviceName is the family's vxlan device name for vni, as flannel names it.
func (f *family) deviceName(vni int) string { return fmt.Sprintf(f.device, vni) }

// unspecified is the family's unspecified address, which names the family
// to datapath.Node.Family.
func (f *family) unspecified() netip.Addr {
	if f == ipv6 {
		return netip.IPv6Unspecified()
	}
	return netip.IPv4Unspecified()
}

// hostBits is the prefix length of one address: 32 or 128.
func (f *family) hostBits() int { return f.unspecified().BitLen() }

// of returns node's node IP and network of the family; both are invalid
// when the family is off.
func (f *family) of(node datapath.Node) (netip.Addr, netip.Prefix) {
	h, _ := node.Family(f.unspecified())
	return h.NodeIP, h.Network
}

// on reports whether node runs the family.
func (f *family) on(node datapath.Node) bool {
	_, on := node.Family(f.unspecified())
	return on
}

// DeviceName is the IPv4 vxlan device's name for vni, as flannel names it
// (flannel.<VNI>).
func DeviceName(vni int) string { return ipv4.deviceName(vni) }

// DeviceNameV6 is the IPv6 vxlan device's name for vni, as flannel names it
// (flannel-v6.<VNI>).
func DeviceNameV6(vni int) string { return ipv6.deviceName(vni) }

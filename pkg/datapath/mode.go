package datapath

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// directMode is the mode of a peer with node IP ip on a vxlan node with
// DirectRouting: host-gw when ip is on-link (a route without gateway out of
// uplink), as flannel does, else vxlan.
func directMode(uplink string, ip netip.Addr) (Mode, error) {
	routes, err := netlink.RouteGet(ip.AsSlice())
	if err != nil {
		return "", fmt.Errorf("decide direct routing to %s: route get: %w", ip, err)
	}
	link, err := netlink.LinkByName(uplink)
	if err != nil {
		return "", fmt.Errorf("decide direct routing to %s: find uplink %s: %w", ip, uplink, err)
	}
	for _, r := range routes {
		if r.Gw == nil && r.LinkIndex == link.Attrs().Index {
			return ModeHostGW, nil
		}
	}
	return ModeVXLAN, nil
}

package datapath

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// AssignModes returns peers with Mode set: Backend for every peer, except that
// with DirectRouting a vxlan node reaches peers whose node IP is on-link (a
// route without gateway out of the uplink) as host-gw, as flannel does.
func AssignModes(node Node, peers []Peer) ([]Peer, error) {
	out := make([]Peer, len(peers))
	for i, p := range peers {
		p.Mode = node.Backend
		if node.Backend == ModeVXLAN && node.DirectRouting {
			direct, err := onLink(node.Uplink, p.NodeIP.AsSlice())
			if err != nil {
				return nil, fmt.Errorf("decide direct routing to %s: %w", p.NodeIP, err)
			}
			if direct {
				p.Mode = ModeHostGW
			}
		}
		out[i] = p
	}
	return out, nil
}

// onLink reports whether ip is reached directly (no gateway) through uplink.
func onLink(uplink string, ip net.IP) (bool, error) {
	routes, err := netlink.RouteGet(ip)
	if err != nil {
		return false, fmt.Errorf("route get %s: %w", ip, err)
	}
	link, err := netlink.LinkByName(uplink)
	if err != nil {
		return false, fmt.Errorf("find uplink %s: %w", uplink, err)
	}
	for _, r := range routes {
		if r.Gw == nil && r.LinkIndex == link.Attrs().Index {
			return true, nil
		}
	}
	return false, nil
}

// AssignModeCached sets p's Mode as AssignModes would, reusing the mode known
// holds for p's node IP (a route lookup per peer is too slow to repeat for
// thousands of peers on every lease event), and records it in into.
func AssignModeCached(node Node, p Peer, known, into map[netip.Addr]Mode) (Peer, error) {
	if mode, ok := known[p.NodeIP]; ok {
		p.Mode = mode
	} else {
		assigned, err := AssignModes(node, []Peer{p})
		if err != nil {
			return p, fmt.Errorf("peer %s: %w", p.Subnet, err)
		}
		p = assigned[0]
	}
	into[p.NodeIP] = p.Mode
	return p, nil
}

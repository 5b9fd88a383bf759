package kernel

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// routeOf reads the fields this datapath programs from a kernel route.
func routeOf(r netlink.Route) route {
	return route{
		dst:    prefixOf(r.Dst),
		gw:     addrOf(r.Gw),
		link:   r.LinkIndex,
		onlink: r.Flags&int(netlink.FLAG_ONLINK) != 0,
	}
}

// String prints r the way ip route does (with the device's index).
func (r route) String() string {
	s := fmt.Sprintf("%s via %s dev #%d", r.dst, r.gw, r.link)
	if r.onlink {
		s += " onlink"
	}
	return s
}

// netlink is r as a main-table route for RouteReplace.
func (r route) netlink() netlink.Route {
	nr := netlink.Route{
		Dst:       ipNet(r.dst),
		Gw:        r.gw.AsSlice(),
		LinkIndex: r.link,
		Table:     unix.RT_TABLE_MAIN,
	}
	if r.onlink {
		nr.Flags = int(netlink.FLAG_ONLINK)
	}
	return nr
}

// planRoutes returns the wanted routes to replace (missing or different)
// and the owned routes to delete. A route at the same kernel key (dst, the
// family's default metric, tos 0) as a wanted one is replaced in place, not
// deleted, so a changed peer never loses its route; it is deleted only when
// it uses a different device or gateway, which cannot match the
// replacement.
func planRoutes(current []netlink.Route, want map[netip.Prefix]route) (replace []route, del []netlink.Route) {
	satisfied := map[netip.Prefix]bool{}
	for _, r := range current {
		got := routeOf(r)
		w, wanted := want[got.dst]
		sameKey := wanted && r.Priority == familyOf(got.dst.Addr()).metric && r.Tos == 0
		switch {
		case sameKey && got == w:
			satisfied[got.dst] = true
		case sameKey && got.link == w.link && got.gw == w.gw:
			// Differs only in flags: the replacement overwrites it.
		default:
			del = append(del, r)
		}
	}
	for dst, w := range want {
		if !satisfied[dst] {
			replace = append(replace, w)
		}
	}
	slices.SortFunc(replace, func(a, b route) int { return a.dst.Addr().Compare(b.dst.Addr()) })
	return replace, del
}

// planNeighs returns the permanent neighbour entries to set on the vxlan
// device at index and the entries to delete. Entries the kernel keeps for
// itself (NOARP) are left alone.
func planNeighs(current []netlink.Neigh, want map[netip.Addr]net.HardwareAddr, index int) (set, del []netlink.Neigh) {
	ok := map[netip.Addr]bool{}
	for _, n := range current {
		ip := addrOf(n.IP)
		mac, wanted := want[ip]
		switch {
		case wanted:
			ok[ip] = bytes.Equal(n.HardwareAddr, mac) && n.State == netlink.NUD_PERMANENT
		case n.State&netlink.NUD_NOARP == 0:
			del = append(del, n)
		}
	}
	for _, ip := range sortedKeys(want, netip.Addr.Compare) {
		if !ok[ip] {
			set = append(set, neighOf(ip, want[ip], index))
		}
	}
	return set, del
}

// neighOf is the permanent neighbour entry ip -> mac on the device at index.
func neighOf(ip netip.Addr, mac net.HardwareAddr, index int) netlink.Neigh {
	return netlink.Neigh{
		LinkIndex:    index,
		Family:       familyOf(ip).netlink,
		State:        netlink.NUD_PERMANENT,
		IP:           ip.AsSlice(),
		HardwareAddr: mac,
	}
}

// planFDB returns the permanent fdb entries (VTEP MAC -> node IP) to set on
// family f's vxlan device at index and the entries to delete: other
// destinations of a wanted MAC and MACs no peer has. With learning on,
// learned entries are left to age out.
func planFDB(current []netlink.Neigh, want map[macKey]fdbEntry, index int, f *family, learning bool) (set, del []netlink.Neigh) {
	ok := map[macKey]bool{}
	for _, n := range current {
		mac := keyOf(n.HardwareAddr, f)
		w, wanted := want[mac]
		permanent := n.State&netlink.NUD_PERMANENT != 0
		switch {
		case wanted && addrOf(n.IP) == w.dst:
			ok[mac] = permanent
		case !wanted && learning && !permanent:
			// Learned by the kernel: it ages out by itself.
		default:
			del = append(del, n)
		}
	}
	for _, mac := range sortedKeys(want, compareMACs) {
		if !ok[mac] {
			set = append(set, want[mac].netlink(index))
		}
	}
	return set, del
}

// netlink is e as a permanent fdb entry on the vxlan device at index.
func (e fdbEntry) netlink(index int) netlink.Neigh {
	return netlink.Neigh{
		LinkIndex:    index,
		Family:       unix.AF_BRIDGE,
		State:        netlink.NUD_PERMANENT,
		Flags:        netlink.NTF_SELF,
		IP:           e.dst.AsSlice(),
		HardwareAddr: e.mac,
	}
}

// sortedKeys returns m's keys in cmp order, for a deterministic apply order.
func sortedKeys[K comparable, V any](m map[K]V, cmp func(a, b K) int) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, cmp)
	return keys
}

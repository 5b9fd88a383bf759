package iface

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
)

// byFlags tries --iface entries in order, then --iface-regex entries.
func byFlags(p parsed, links []link) (Selected, error) {
	var tried []string
	for _, spec := range p.ifaces {
		sel, why := matchIface(p, spec, links)
		if why == "" {
			return sel, nil
		}
		tried = append(tried, fmt.Sprintf("--iface %s (%s)", spec, why))
	}
	for _, re := range p.regexes {
		if sel, ok := matchRegex(p, re.MatchString, links); ok {
			return sel, nil
		}
		tried = append(tried, fmt.Sprintf("--iface-regex %s (no %s address or interface name with %s matches)", re,
			p.byFamily("IPv4", "IPv6", "IPv4 or IPv6"), p.byFamily("an IPv4 address", "a global IPv6 address", "IPv4 and global IPv6 addresses")))
	}
	return Selected{}, fmt.Errorf("no usable interface: tried %s: change --iface/--iface-regex to one of: %s",
		strings.Join(tried, ", "), describe(links))
}

// byFamily returns v4, v6 or both, whichever names the enabled families.
func (p parsed) byFamily(v4, v6, both string) string {
	switch {
	case !p.v6:
		return v4
	case !p.v4:
		return v6
	}
	return both
}

// matchIface resolves one --iface entry, an interface name or an address
// of either family; why says why it did not match.
func matchIface(p parsed, spec string, links []link) (sel Selected, why string) {
	if ip, err := netip.ParseAddr(spec); err == nil {
		for _, l := range links {
			if l.has(ip) {
				return l.choose(p, ip)
			}
		}
		return Selected{}, "no interface has this address"
	}
	for _, l := range links {
		if l.name == spec {
			return l.choose(p)
		}
	}
	return Selected{}, "no such interface"
}

// matchRegex matches the addresses of the enabled families first (over all
// interfaces; a match of each family on one interface gives both), then
// the names of interfaces that have the addresses the node needs, as
// flanneld does.
func matchRegex(p parsed, match func(string) bool, links []link) (Selected, bool) {
	for _, l := range links {
		var matched []netip.Addr
		for _, a := range l.addrs {
			if (a.Is6() && p.v6 || a.Is4() && p.v4) && match(a.String()) {
				matched = append(matched, a)
			}
		}
		if len(matched) == 0 {
			continue
		}
		if sel, why := l.choose(p, matched...); why == "" {
			return sel, true
		}
	}
	for _, l := range links {
		if !match(l.name) {
			continue
		}
		if sel, why := l.choose(p); why == "" {
			return sel, true
		}
	}
	return Selected{}, false
}

// byRoute picks the interface the kernel would send packets to dst through
// (an IPv6 dst: by the IPv6 route), with the route's source address when it
// is on that interface.
func byRoute(p parsed, links []link, dst netip.Addr) (Selected, error) {
	routes, err := netlink.RouteGet(dst.AsSlice())
	if err != nil {
		return Selected{}, fmt.Errorf("--iface-can-reach %s: no route to it (%v): add a route or set --iface", dst, err)
	}
	for _, r := range routes {
		l, ok := byIndex(links, r.LinkIndex)
		if !ok {
			continue
		}
		var src netip.Addr
		if a, ok := netip.AddrFromSlice(r.Src); ok && l.has(a.Unmap()) {
			src = a.Unmap()
		}
		sel, why := l.choose(p, src)
		if why != "" {
			return Selected{}, fmt.Errorf("--iface-can-reach %s: the route goes through %s, but %s: set --iface", dst, l.name, why)
		}
		return sel, nil
	}
	return Selected{}, fmt.Errorf("--iface-can-reach %s: the kernel returned no route with an interface: set --iface", dst)
}

// byDefaultRoute picks the interface of the main table's default route with
// the lowest metric: the IPv4 one, or the IPv6 one when IPv4 is off. A
// dual-stack node needs both addresses on that interface.
func byDefaultRoute(p parsed, links []link) (Selected, error) {
	family, name := netlink.FAMILY_V4, "IPv4"
	if !p.v4 {
		family, name = netlink.FAMILY_V6, "IPv6"
	}
	routes, err := netlink.RouteList(nil, family)
	if err != nil {
		return Selected{}, fmt.Errorf("list routes: %w", err)
	}
	var best *netlink.Route
	for i, r := range routes {
		isDefault := r.Dst == nil || (r.Dst.IP.IsUnspecified() && maskBits(r) == 0)
		if isDefault && (best == nil || r.Priority < best.Priority) {
			best = &routes[i]
		}
	}
	if best == nil {
		return Selected{}, fmt.Errorf("no %s default route to find the interface by: set --iface, --iface-regex or --iface-can-reach", name)
	}
	index := best.LinkIndex
	if index == 0 && len(best.MultiPath) > 0 { // multipath: take the first hop
		index = best.MultiPath[0].LinkIndex
	}
	l, ok := byIndex(links, index)
	if !ok {
		return Selected{}, fmt.Errorf("default route's interface (index %d) vanished: try again or set --iface", index)
	}
	sel, why := l.choose(p)
	if why != "" {
		return Selected{}, fmt.Errorf("the %s default route's interface %s cannot be used: %s: set --iface", name, l.name, why)
	}
	return sel, nil
}

func maskBits(r netlink.Route) int {
	ones, _ := r.Dst.Mask.Size()
	return ones
}

func byIndex(links []link, index int) (link, bool) {
	for _, l := range links {
		if l.index == index {
			return l, true
		}
	}
	return link{}, false
}

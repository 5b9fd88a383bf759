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
		sel, why := matchIface(spec, links)
		if why == "" {
			return sel, nil
		}
		tried = append(tried, fmt.Sprintf("--iface %s (%s)", spec, why))
	}
	for _, re := range p.regexes {
		if sel, ok := matchRegex(re.MatchString, links); ok {
			return sel, nil
		}
		tried = append(tried, fmt.Sprintf("--iface-regex %s (no IPv4 address or interface name with an IPv4 address matches)", re))
	}
	return Selected{}, fmt.Errorf("no usable interface: tried %s: change --iface/--iface-regex to one of: %s",
		strings.Join(tried, ", "), describe(links))
}

// matchIface resolves one --iface entry; why says why it did not match.
func matchIface(spec string, links []link) (sel Selected, why string) {
	if ip, err := netip.ParseAddr(spec); err == nil {
		for _, l := range links {
			if l.has(ip) {
				return l.selected(ip), ""
			}
		}
		return Selected{}, "no interface has this address"
	}
	for _, l := range links {
		if l.name != spec {
			continue
		}
		if ip := l.preferred(); ip.IsValid() {
			return l.selected(ip), ""
		}
		return Selected{}, "it has no IPv4 address"
	}
	return Selected{}, "no such interface"
}

// matchRegex matches addresses first (over all interfaces), then names of
// interfaces that have an address, as flanneld does.
func matchRegex(match func(string) bool, links []link) (Selected, bool) {
	for _, l := range links {
		for _, a := range l.addrs {
			if match(a.String()) {
				return l.selected(a), true
			}
		}
	}
	for _, l := range links {
		if ip := l.preferred(); ip.IsValid() && match(l.name) {
			return l.selected(ip), true
		}
	}
	return Selected{}, false
}

// byRoute picks the interface the kernel would send packets to dst through,
// with the route's source address when it is on that interface.
func byRoute(links []link, dst netip.Addr) (Selected, error) {
	routes, err := netlink.RouteGet(dst.AsSlice())
	if err != nil {
		return Selected{}, fmt.Errorf("--iface-can-reach %s: no route to it (%v): add a route or set --iface", dst, err)
	}
	for _, r := range routes {
		l, ok := byIndex(links, r.LinkIndex)
		if !ok {
			continue
		}
		if src, ok := netip.AddrFromSlice(r.Src.To4()); ok && l.has(src) {
			return l.selected(src), nil
		}
		if ip := l.preferred(); ip.IsValid() {
			return l.selected(ip), nil
		}
		return Selected{}, fmt.Errorf("--iface-can-reach %s: the route goes through %s, which has no usable IPv4 address: set --iface", dst, l.name)
	}
	return Selected{}, fmt.Errorf("--iface-can-reach %s: the kernel returned no route with an interface: set --iface", dst)
}

// byDefaultRoute picks the interface of the main table's IPv4 default route
// with the lowest metric.
func byDefaultRoute(links []link) (Selected, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
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
		return Selected{}, fmt.Errorf("no IPv4 default route to find the interface by: set --iface, --iface-regex or --iface-can-reach")
	}
	index := best.LinkIndex
	if index == 0 && len(best.MultiPath) > 0 { // multipath: take the first hop
		index = best.MultiPath[0].LinkIndex
	}
	l, ok := byIndex(links, index)
	if !ok {
		return Selected{}, fmt.Errorf("default route's interface (index %d) vanished: try again or set --iface", index)
	}
	ip := l.preferred()
	if !ip.IsValid() {
		return Selected{}, fmt.Errorf("default route's interface %s has no IPv4 address: set --iface", l.name)
	}
	return l.selected(ip), nil
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

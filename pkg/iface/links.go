package iface

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
)

// link is an interface with its IPv4 addresses in the kernel's order.
type link struct {
	name  string
	index int
	mtu   int
	addrs []netip.Addr
}

// preferred is the address flanneld would use for the interface: the first
// global unicast one, else the first link-local one; invalid if neither.
func (l link) preferred() netip.Addr {
	var ll netip.Addr
	for _, a := range l.addrs {
		switch {
		case a.IsGlobalUnicast():
			return a
		case a.IsLinkLocalUnicast() && !ll.IsValid():
			ll = a
		}
	}
	return ll
}

// has reports whether a is one of the interface's addresses.
func (l link) has(a netip.Addr) bool {
	for _, b := range l.addrs {
		if a == b {
			return true
		}
	}
	return false
}

func (l link) selected(ip netip.Addr) Selected {
	return Selected{Name: l.name, Index: l.index, IP: ip, MTU: l.mtu}
}

// listLinks returns the namespace's interfaces in index order.
func listLinks() ([]link, error) {
	nls, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	links := make([]link, 0, len(nls))
	for _, nl := range nls {
		attrs := nl.Attrs()
		addrs, err := netlink.AddrList(nl, netlink.FAMILY_V4)
		if err != nil {
			return nil, fmt.Errorf("list addresses of %s: %w", attrs.Name, err)
		}
		l := link{name: attrs.Name, index: attrs.Index, mtu: attrs.MTU}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
				l.addrs = append(l.addrs, ip)
			}
		}
		links = append(links, l)
	}
	return links, nil
}

// describe lists the interfaces and their addresses for error messages.
func describe(links []link) string {
	parts := make([]string, len(links))
	for i, l := range links {
		parts[i] = l.name
		for _, a := range l.addrs {
			parts[i] += " " + a.String()
		}
	}
	return strings.Join(parts, ", ")
}

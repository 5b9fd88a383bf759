package iface

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
)

// link is an interface with its addresses in the kernel's order (IPv4,
// then IPv6 without the link-local ones).
type link struct {
	name  string
	index int
	mtu   int
	addrs []netip.Addr
}

// preferred is the address of the family (IPv6 when v6) flanneld would
// use for the interface: the first global unicast one, else for IPv4 the
// first link-local one; invalid if none.
func (l link) preferred(v6 bool) netip.Addr {
	var ll netip.Addr
	for _, a := range l.addrs {
		switch {
		case a.Is6() != v6:
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

// choose selects l with an address of each family p enables: the first of
// chosen of that family, else the interface's preferred one. why says
// which family's address l lacks ("" when it lacks none).
func (l link) choose(p parsed, chosen ...netip.Addr) (sel Selected, why string) {
	sel = Selected{Name: l.name, Index: l.index, MTU: l.mtu}
	for _, f := range []struct {
		on, v6 bool
		dst    *netip.Addr
		why    string
	}{{p.v4, false, &sel.IP, "it has no IPv4 address"}, {p.v6, true, &sel.IPv6, "it has no global IPv6 address"}} {
		if !f.on {
			continue
		}
		for _, a := range chosen {
			if a.IsValid() && a.Is6() == f.v6 && !f.dst.IsValid() {
				*f.dst = a
			}
		}
		if !f.dst.IsValid() {
			*f.dst = l.preferred(f.v6)
		}
		if !f.dst.IsValid() {
			return Selected{}, f.why
		}
	}
	return sel, ""
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
		l := link{name: attrs.Name, index: attrs.Index, mtu: attrs.MTU}
		for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			addrs, err := netlink.AddrList(nl, family)
			if err != nil {
				return nil, fmt.Errorf("list addresses of %s: %w", attrs.Name, err)
			}
			for _, a := range addrs {
				ip, ok := netip.AddrFromSlice(a.IP)
				if !ok {
					continue
				}
				ip = ip.Unmap()
				if ip.Is6() && ip.IsLinkLocalUnicast() {
					continue // never a node address, and not unique
				}
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

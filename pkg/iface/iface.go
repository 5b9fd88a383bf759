// Package iface picks the node's uplink interface the way flanneld does:
// from --iface (names or addresses), --iface-regex (matching names or
// addresses), --iface-can-reach (the route to an address), or the default
// route, with its address of each enabled family (IPv4, IPv6 or both; one
// interface carries both). Unlike flanneld (flannel #2081), addresses,
// regexes and --iface-can-reach of either family work in every mode.
// IPv6 link-local addresses never count. It works in the calling thread's
// network namespace.
package iface

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
)

// Options are flanneld's interface selection flags.
type Options struct {
	// IPv4 and IPv6 are the address families the node uses (net-conf.json's
	// EnableIPv4 and EnableIPv6): the interface must have an address of
	// each.
	IPv4, IPv6 bool
	// Ifaces are interface names or addresses (--iface); the first one
	// that matches wins.
	Ifaces []string
	// Regexes match interface names or addresses (--iface-regex); they
	// are tried in order after Ifaces, each against every address first and
	// then against every name.
	Regexes []string
	// CanReach picks the interface the kernel routes this address through
	// (--iface-can-reach, either family); used only without Ifaces and
	// Regexes.
	CanReach string
	// PublicIP and PublicIPv6 are the addresses peers use to reach this
	// node (--public-ip, --public-ipv6); empty means the interface's.
	PublicIP, PublicIPv6 string
}

// Selected is the chosen interface.
type Selected struct {
	Name  string
	Index int
	// IP is the interface's IPv4 address the node uses; invalid when IPv4
	// is off.
	IP netip.Addr
	// IPv6 is the interface's IPv6 address the node uses (never
	// link-local); invalid when IPv6 is off.
	IPv6 netip.Addr
	// PublicIP and PublicIPv6 are what peers use: Options.PublicIP and
	// PublicIPv6, else IP and IPv6.
	PublicIP, PublicIPv6 netip.Addr
	MTU                  int
}

// parsed are Options checked before any interface is looked at.
type parsed struct {
	v4, v6               bool
	ifaces               []string
	regexes              []*regexp.Regexp
	canReach             netip.Addr
	publicIP, publicIPv6 netip.Addr
}

func (o Options) parse() (parsed, error) {
	p := parsed{v4: o.IPv4, v6: o.IPv6, ifaces: o.Ifaces}
	if !p.v4 && !p.v6 {
		return p, errors.New("no address family to select an interface for: enable IPv4 or IPv6")
	}
	for _, s := range o.Regexes {
		re, err := regexp.Compile(s)
		if err != nil {
			return p, fmt.Errorf("--iface-regex %q is not a valid regular expression: %w", s, err)
		}
		p.regexes = append(p.regexes, re)
	}
	var err error
	if p.canReach, err = parseAddr("--iface-can-reach", o.CanReach, ""); err != nil {
		return p, err
	}
	if p.publicIP, err = parseAddr("--public-ip", o.PublicIP, "IPv4"); err != nil {
		return p, err
	}
	if p.publicIPv6, err = parseAddr("--public-ipv6", o.PublicIPv6, "IPv6"); err != nil {
		return p, err
	}
	return p, nil
}

// parseAddr parses an optional address flag value of family ("IPv4",
// "IPv6", or "" for either).
func parseAddr(flag, s, family string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err == nil && a.Zone() == "" && !a.Is4In6() && (family == "" || (family == "IPv6") == a.Is6()) {
		return a, nil
	}
	switch family {
	case "IPv4":
		return netip.Addr{}, fmt.Errorf("%s %q is not an IPv4 address: give one like 192.168.1.10", flag, s)
	case "IPv6":
		return netip.Addr{}, fmt.Errorf("%s %q is not an IPv6 address: give one like fd00::10", flag, s)
	}
	return netip.Addr{}, fmt.Errorf("%s %q is not an IP address: give one like 192.168.1.10 or fd00::10", flag, s)
}

// Select picks the interface o asks for, in the calling thread's network
// namespace. Its errors for a choice that matches nothing are one line that
// lists what was tried and which interfaces exist.
func Select(o Options) (Selected, error) {
	p, err := o.parse()
	if err != nil {
		return Selected{}, err
	}
	links, err := listLinks()
	if err != nil {
		return Selected{}, err
	}
	var sel Selected
	switch {
	case len(p.ifaces) > 0 || len(p.regexes) > 0:
		sel, err = byFlags(p, links)
	case p.canReach.IsValid():
		sel, err = byRoute(p, links, p.canReach)
	default:
		sel, err = byDefaultRoute(p, links)
	}
	if err != nil {
		return Selected{}, err
	}
	sel.PublicIP, sel.PublicIPv6 = sel.IP, sel.IPv6
	if p.publicIP.IsValid() && p.v4 {
		sel.PublicIP = p.publicIP
	}
	if p.publicIPv6.IsValid() && p.v6 {
		sel.PublicIPv6 = p.publicIPv6
	}
	return sel, nil
}

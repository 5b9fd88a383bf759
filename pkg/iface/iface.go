// Package iface picks the node's uplink interface the way flanneld does:
// from --iface (names or addresses), --iface-regex (matching names or
// addresses), --iface-can-reach (the route to an address), or the default
// route. IPv4 only. It works in the calling thread's network namespace.
package iface

import (
	"fmt"
	"net/netip"
	"regexp"
)

// Options are flanneld's interface selection flags.
type Options struct {
	// Ifaces are interface names or IPv4 addresses (--iface); the first one
	// that matches wins.
	Ifaces []string
	// Regexes match interface names or IPv4 addresses (--iface-regex); they
	// are tried in order after Ifaces, each against every address first and
	// then against every name.
	Regexes []string
	// CanReach picks the interface the kernel routes this address through
	// (--iface-can-reach); used only without Ifaces and Regexes.
	CanReach string
	// PublicIP is the address peers use to reach this node (--public-ip);
	// empty means the interface's address.
	PublicIP string
}

// Selected is the chosen interface.
type Selected struct {
	Name  string
	Index int
	// IP is the interface's IPv4 address the node uses.
	IP netip.Addr
	// PublicIP is what peers use: Options.PublicIP, else IP.
	PublicIP netip.Addr
	MTU      int
}

// parsed are Options checked before any interface is looked at.
type parsed struct {
	ifaces   []string
	regexes  []*regexp.Regexp
	canReach netip.Addr
	publicIP netip.Addr
}

func (o Options) parse() (parsed, error) {
	p := parsed{ifaces: o.Ifaces}
	for _, s := range o.Ifaces {
		if a, err := netip.ParseAddr(s); err == nil && !a.Is4() {
			return p, fmt.Errorf("--iface %s: weft supports IPv4 only: give an IPv4 address or an interface name", s)
		}
	}
	for _, s := range o.Regexes {
		re, err := regexp.Compile(s)
		if err != nil {
			return p, fmt.Errorf("--iface-regex %q is not a valid regular expression: %w", s, err)
		}
		p.regexes = append(p.regexes, re)
	}
	var err error
	if p.canReach, err = parseIPv4("--iface-can-reach", o.CanReach); err != nil {
		return p, err
	}
	if p.publicIP, err = parseIPv4("--public-ip", o.PublicIP); err != nil {
		return p, err
	}
	return p, nil
}

// parseIPv4 parses an optional IPv4 flag value.
func parseIPv4(flag, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("%s %q is not an IPv4 address: give one like 192.168.1.10", flag, s)
	}
	return a, nil
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
		sel, err = byRoute(links, p.canReach)
	default:
		sel, err = byDefaultRoute(links)
	}
	if err != nil {
		return Selected{}, err
	}
	sel.PublicIP = sel.IP
	if p.publicIP.IsValid() {
		sel.PublicIP = p.publicIP
	}
	return sel, nil
}

package netconf

import (
	"fmt"
	"net/netip"
)

// family holds the per-address-family keys and limits of net-conf.json.
// flannel's rules, written once for both families: every node subnet leaves
// room for two host bits (/30, /126), the Network must hold at least four
// subnets (so /28, /124 or wider), and the default SubnetLen (/24, /64)
// shrinks to prefix+2 for Networks narrower than default-2 (/22, /62).
type family struct {
	name          string // "IPv4", "IPv6"
	keyPrefix     string // "" or "IPv6"
	bits          int
	defaultLen    int
	examplePrefix string
	exampleAddr   string
}

var (
	ipv4 = family{name: "IPv4", bits: 32, defaultLen: 24,
		examplePrefix: "10.244.0.0/16", exampleAddr: "10.244.1.0"}
	ipv6 = family{name: "IPv6", keyPrefix: "IPv6", bits: 128, defaultLen: 64,
		examplePrefix: "fd00:10:244::/56", exampleAddr: "fd00:10:244:1::"}
)

// subnets is one family's validated Network and subnet range.
type subnets struct {
	Network   netip.Prefix
	SubnetLen int
	SubnetMin netip.Addr
	SubnetMax netip.Addr
}

// key names one of the family's keys, e.g. key("SubnetLen") is
// "IPv6SubnetLen" for IPv6.
func (f family) key(k string) string { return f.keyPrefix + k }

// decode reads the family's keys from o without validating them.
func (f family) decode(o *object) (subnets, error) {
	var s subnets
	var err error
	if s.Network, err = o.getPrefix(f.key("Network"), f); err != nil {
		return s, err
	}
	if s.SubnetLen, err = o.getInt(f.key("SubnetLen"), 0); err != nil {
		return s, err
	}
	if s.SubnetMin, err = o.getAddr(f.key("SubnetMin"), f); err != nil {
		return s, err
	}
	if s.SubnetMax, err = o.getAddr(f.key("SubnetMax"), f); err != nil {
		return s, err
	}
	return s, nil
}

// validate checks s and fills in the defaults.
func (f family) validate(s subnets) (subnets, error) {
	netKey, lenKey := f.key("Network"), f.key("SubnetLen")
	if !s.Network.IsValid() {
		return s, fmt.Errorf("%s is missing: set it to the cluster's pod CIDR, e.g. %q", netKey, f.examplePrefix)
	}
	prefix := s.Network.Bits()
	if prefix > f.bits-4 {
		return s, fmt.Errorf("%s %s is too small: use a /%d or wider, it must hold at least four node subnets", netKey, s.Network, f.bits-4)
	}
	switch {
	case s.SubnetLen < 0:
		return s, fmt.Errorf("%s %d is invalid: use a prefix length between %d and %d", lenKey, s.SubnetLen, prefix+2, f.bits-2)
	case s.SubnetLen == 0 && prefix <= f.defaultLen-2:
		s.SubnetLen = f.defaultLen
	case s.SubnetLen == 0:
		s.SubnetLen = prefix + 2
	case s.SubnetLen > f.bits-2:
		return s, fmt.Errorf("%s %d is too long: use %d or less", lenKey, s.SubnetLen, f.bits-2)
	case s.SubnetLen < prefix+2:
		return s, fmt.Errorf("%s %d is too short for %s %s: use %d or more, the Network must hold at least four node subnets", lenKey, s.SubnetLen, netKey, s.Network, prefix+2)
	}
	var err error
	// The first subnet is skipped by default: its .0 address on a node
	// would collide with the Network's own address.
	if s.SubnetMin, err = f.bound("SubnetMin", s, s.SubnetMin, withBit(s.Network.Addr(), s.SubnetLen-1)); err != nil {
		return s, err
	}
	last := netip.PrefixFrom(lastAddr(s.Network), s.SubnetLen).Masked().Addr()
	if s.SubnetMax, err = f.bound("SubnetMax", s, s.SubnetMax, last); err != nil {
		return s, err
	}
	if s.SubnetMin.Compare(s.SubnetMax) > 0 {
		return s, fmt.Errorf("%s %s is above %s %s: swap them", f.key("SubnetMin"), s.SubnetMin, f.key("SubnetMax"), s.SubnetMax)
	}
	return s, nil
}

// bound validates SubnetMin or SubnetMax a (def when unset): inside the
// Network and on a SubnetLen boundary.
func (f family) bound(name string, s subnets, a, def netip.Addr) (netip.Addr, error) {
	key := f.key(name)
	if !a.IsValid() {
		return def, nil
	}
	if !s.Network.Contains(a) {
		return a, fmt.Errorf("%s %s is outside %s %s: use an address inside it or remove %s", key, a, f.key("Network"), s.Network, key)
	}
	if aligned := netip.PrefixFrom(a, s.SubnetLen).Masked().Addr(); aligned != a {
		return a, fmt.Errorf("%s %s is not the start of a /%d subnet: use %s", key, a, s.SubnetLen, aligned)
	}
	return a, nil
}

// withBit returns a with bit i (0 = most significant) set.
func withBit(a netip.Addr, i int) netip.Addr {
	b := a.AsSlice()
	b[i/8] |= 0x80 >> (i % 8)
	r, _ := netip.AddrFromSlice(b)
	return r
}

// lastAddr returns the highest address in p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	for i := p.Bits(); i < a.BitLen(); i++ {
		a = withBit(a, i)
	}
	return a
}

package etcd

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/weftnet/weft/pkg/lease"
)

// noIPv4 is the IPv4 half flannel writes into the key of an IPv6-only
// lease (its zero IPv4 net).
var noIPv4 = netip.PrefixFrom(netip.IPv4Unspecified(), 0)

// keyName is flannel's name of a lease's key: 10.244.3.0-24, with dual
// stack 10.244.3.0-24&fd10:244:0:3::-64, IPv6 only 0.0.0.0-0&fd10:244:0:3::-64.
func keyName(l lease.Lease) string {
	v4 := l.Subnet
	if !v4.IsValid() {
		v4 = noIPv4
	}
	name := prefixName(v4)
	if l.IPv6Subnet.IsValid() {
		name += "&" + prefixName(l.IPv6Subnet)
	}
	return name
}

// prefixName is "<network address>-<bits>".
func prefixName(p netip.Prefix) string {
	return p.Addr().String() + "-" + fmt.Sprint(p.Bits())
}

// subnetKey is the full etcd key of l's subnets.
func (m *Manager) subnetKey(l lease.Lease) string {
	return m.subnetsPrefix() + keyName(l)
}

// parseKeyName parses a subnet key name: "10.244.3.0-24", flannel's dual
// stack "10.244.3.0-24&fd00:0:0:3::-64", or IPv6 only
// "0.0.0.0-0&fd00:0:0:3::-64". It returns a lease with the subnets set,
// the half a key does not have invalid.
func parseKeyName(name string) (lease.Lease, error) {
	v4, v6, dual := strings.Cut(name, "&")
	var l lease.Lease
	subnet, err := parsePrefixName(v4)
	if err != nil {
		return l, err
	}
	if !subnet.Addr().Is4() {
		return l, fmt.Errorf("subnet key %q: %s is not IPv4", name, subnet)
	}
	if subnet != noIPv4 {
		l.Subnet = subnet
	}
	if dual {
		if l.IPv6Subnet, err = parsePrefixName(v6); err != nil {
			return l, err
		}
		if !l.IPv6Subnet.Addr().Is6() || l.IPv6Subnet.Addr().Is4In6() {
			return l, fmt.Errorf("subnet key %q: %s is not IPv6", name, l.IPv6Subnet)
		}
	}
	if !l.Subnet.IsValid() && !l.IPv6Subnet.IsValid() {
		return l, fmt.Errorf("subnet key %q names no subnet", name)
	}
	return l, nil
}

// parsePrefixName parses "<network address>-<bits>".
func parsePrefixName(s string) (netip.Prefix, error) {
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return netip.Prefix{}, fmt.Errorf("subnet key %q: want <address>-<prefix length>", s)
	}
	p, err := netip.ParsePrefix(s[:i] + "/" + s[i+1:])
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("subnet key %q: %w", s, err)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("subnet key %q: address is not the network address %s", s, p.Masked().Addr())
	}
	return p, nil
}

// parseAttrs decodes flannel's lease JSON and checks what weft relies on:
// a public IP of each half the key names.
func parseAttrs(value []byte, subnets lease.Lease) (lease.Attrs, error) {
	var a lease.Attrs
	if err := json.Unmarshal(value, &a); err != nil {
		return lease.Attrs{}, fmt.Errorf("lease value: %w", err)
	}
	if subnets.Subnet.IsValid() && !a.PublicIP.Is4() {
		return lease.Attrs{}, fmt.Errorf("lease value: PublicIP %q is not an IPv4 address", a.PublicIP)
	}
	if subnets.IPv6Subnet.IsValid() && (a.PublicIPv6 == nil || !a.PublicIPv6.Is6() || a.PublicIPv6.Is4In6()) {
		return lease.Attrs{}, fmt.Errorf("lease value: PublicIPv6 %v is not an IPv6 address", a.PublicIPv6)
	}
	return a, nil
}

// parseLease parses one key-value under <prefix>/subnets/. Expiration stays
// zero: the remaining TTL of someone else's lease is not worth a request per
// key, etcd deletes expired keys itself, and renewals do not show in a watch.
func (m *Manager) parseLease(kv *mvccpb.KeyValue) (lease.Lease, error) {
	name := strings.TrimPrefix(string(kv.Key), m.subnetsPrefix())
	l, err := parseKeyName(name)
	if err != nil {
		return lease.Lease{}, err
	}
	if l.Attrs, err = parseAttrs(kv.Value, l); err != nil {
		return lease.Lease{}, fmt.Errorf("subnet %s: %w", l, err)
	}
	return l, nil
}

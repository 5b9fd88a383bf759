package etcd

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/weftnet/weft/pkg/lease"
)

// keyName is flannel's name of a subnet key: 10.244.3.0/24 -> 10.244.3.0-24.
func keyName(subnet netip.Prefix) string {
	return subnet.Addr().String() + "-" + fmt.Sprint(subnet.Bits())
}

// subnetKey is the full etcd key of subnet's lease.
func (m *Manager) subnetKey(subnet netip.Prefix) string {
	return m.subnetsPrefix() + keyName(subnet)
}

// parseKeyName parses a subnet key name: "10.244.3.0-24", or flannel's dual
// stack "10.244.3.0-24&fd00:0:0:3::-64", whose IPv4 half is returned (weft
// leases IPv4 subnets; the IPv6 half is checked but not used).
func parseKeyName(name string) (netip.Prefix, error) {
	v4, v6, dual := strings.Cut(name, "&")
	subnet, err := parsePrefixName(v4)
	if err != nil {
		return netip.Prefix{}, err
	}
	if !subnet.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("subnet key %q: %s is not IPv4", name, subnet)
	}
	if dual {
		if _, err := parsePrefixName(v6); err != nil {
			return netip.Prefix{}, err
		}
	}
	return subnet, nil
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

// parseAttrs decodes flannel's lease JSON and checks what weft relies on.
func parseAttrs(value []byte) (lease.Attrs, error) {
	var a lease.Attrs
	if err := json.Unmarshal(value, &a); err != nil {
		return lease.Attrs{}, fmt.Errorf("lease value: %w", err)
	}
	if !a.PublicIP.Is4() {
		return lease.Attrs{}, fmt.Errorf("lease value: PublicIP %q is not an IPv4 address", a.PublicIP)
	}
	return a, nil
}

// parseLease parses one key-value under <prefix>/subnets/. Expiration stays
// zero: the remaining TTL of someone else's lease is not worth a request per
// key, etcd deletes expired keys itself, and renewals do not show in a watch.
func (m *Manager) parseLease(kv *mvccpb.KeyValue) (lease.Lease, error) {
	name := strings.TrimPrefix(string(kv.Key), m.subnetsPrefix())
	subnet, err := parseKeyName(name)
	if err != nil {
		return lease.Lease{}, err
	}
	attrs, err := parseAttrs(kv.Value)
	if err != nil {
		return lease.Lease{}, fmt.Errorf("subnet %s: %w", subnet, err)
	}
	return lease.Lease{Subnet: subnet, Attrs: attrs}, nil
}

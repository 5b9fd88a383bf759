package cluster

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/weftnet/weft/pkg/lease"
)

// familyPart is what a lease publishes for one family: flannel's PublicIP
// and BackendData, or PublicIPv6 and BackendV6Data.
type familyPart struct {
	publicIP netip.Addr
	data     json.RawMessage
}

// addFamilyLeases adds a node's lease to out once per subnet (a
// dual-stack lease is two entries), as the datapath's peers are one family
// each: the IPv6 entry carries PublicIPv6 and BackendV6Data in PublicIP and
// BackendData. what names the lease in errors.
func addFamilyLeases(out map[netip.Prefix]lease.Attrs, what string, subnets []netip.Prefix, backendType string, parts map[Family]familyPart) error {
	for _, s := range subnets {
		f := FamilyOf(s.Addr())
		p := parts[f]
		if !p.publicIP.IsValid() || FamilyOf(p.publicIP) != f {
			return fmt.Errorf("%s: subnet %s but no %s public address (%v)", what, s, f, p.publicIP)
		}
		out[s] = lease.Attrs{PublicIP: p.publicIP, BackendType: backendType, BackendData: p.data}
	}
	return nil
}

// LeaseValue is an etcd lease's value as flannel writes it in dual stack
// ({"PublicIP":..,"PublicIPv6":..,"BackendType":..,"BackendData":..,
// "BackendV6Data":..}).
type LeaseValue struct {
	PublicIP      netip.Addr
	PublicIPv6    netip.Addr
	BackendType   string
	BackendData   json.RawMessage
	BackendV6Data json.RawMessage
}

// Part is what the lease publishes for family f: PublicIP and BackendData,
// or PublicIPv6 and BackendV6Data.
func (v LeaseValue) Part(f Family) (netip.Addr, json.RawMessage) {
	p := v.parts()[f]
	return p.publicIP, p.data
}

// parts splits v by family.
func (v LeaseValue) parts() map[Family]familyPart {
	return map[Family]familyPart{
		IPv4: {v.PublicIP, v.BackendData},
		IPv6: {v.PublicIPv6, v.BackendV6Data},
	}
}

// parseSubnetKey reads the subnets of an etcd lease key's last element,
// flannel's "10.244.31.0-24", "10.244.31.0-24&fd10:244:0:5b::-64" or, IPv6
// only, "fd10:244:0:5b::-64" (a "0.0.0.0-0" placeholder for a missing
// IPv4 subnet is skipped).
func parseSubnetKey(name string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for part := range strings.SplitSeq(name, "&") {
		i := strings.LastIndex(part, "-")
		if i < 0 {
			return nil, fmt.Errorf("lease key %q: %q has no -<prefix length>", name, part)
		}
		p, err := netip.ParsePrefix(part[:i] + "/" + part[i+1:])
		if err != nil {
			return nil, fmt.Errorf("lease key %q: %w", name, err)
		}
		if p.Bits() > 0 {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("lease key %q names no subnet", name)
	}
	return out, nil
}

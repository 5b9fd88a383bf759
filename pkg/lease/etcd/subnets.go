package etcd

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"net/netip"

	"github.com/weftnet/weft/pkg/lease"
	"github.com/weftnet/weft/pkg/netconf"
)

// maxRangeSize caps the number of subnets a range offers: an IPv6 range
// can hold up to 2^124, far more than any cluster has nodes; only the
// first 2^62 are leased.
const maxRangeSize = 1 << 62

// subnetRange is one family's set of leasable subnets of net-conf.json: the
// aligned /SubnetLen subnets of Network from SubnetMin to SubnetMax.
type subnetRange struct {
	network     netip.Prefix
	bits        int
	first, last netip.Addr // network addresses of SubnetMin and SubnetMax
	n           uint64     // subnets from first to last, at most maxRangeSize
}

// ranges are the leasable subnets of each enabled family; a family that is
// off has none (nil).
type ranges struct {
	v4, v6 *subnetRange
}

// newRanges returns the ranges of cfg's enabled families.
func newRanges(cfg *netconf.Config) (ranges, error) {
	var rs ranges
	var err error
	if cfg.EnableIPv4 {
		if rs.v4, err = newSubnetRange("", 32, cfg.Network, cfg.SubnetLen, cfg.SubnetMin, cfg.SubnetMax); err != nil {
			return rs, err
		}
	}
	if cfg.EnableIPv6 {
		if rs.v6, err = newSubnetRange("IPv6", 128, cfg.IPv6Network, cfg.IPv6SubnetLen, cfg.IPv6SubnetMin, cfg.IPv6SubnetMax); err != nil {
			return rs, err
		}
	}
	if rs.v4 == nil && rs.v6 == nil {
		return rs, fmt.Errorf("network config enables neither IPv4 nor IPv6")
	}
	return rs, nil
}

// newSubnetRange checks one family's keys (key prefix key, addresses of
// addrBits bits) and returns its range.
func newSubnetRange(key string, addrBits int, n netip.Prefix, subnetLen int, lo, hi netip.Addr) (*subnetRange, error) {
	if !n.IsValid() || n.Addr().BitLen() != addrBits || n.Addr().Is4In6() {
		return nil, fmt.Errorf("network config: %sNetwork %q is not a prefix of its family: set %sNetwork", key, n, key)
	}
	if subnetLen < n.Bits() || subnetLen > addrBits {
		return nil, fmt.Errorf("network config: %sSubnetLen %d does not fit %sNetwork %s: use a length between %d and %d", key, subnetLen, key, n, n.Bits(), addrBits-2)
	}
	r := &subnetRange{network: n.Masked(), bits: subnetLen}
	for _, b := range []struct {
		name string
		addr netip.Addr
		dst  *netip.Addr
	}{{"SubnetMin", lo, &r.first}, {"SubnetMax", hi, &r.last}} {
		if !n.Contains(b.addr) || netip.PrefixFrom(b.addr, subnetLen).Masked().Addr() != b.addr {
			return nil, fmt.Errorf("network config: %s%s %q must be a /%d subnet address inside %sNetwork %s", key, b.name, b.addr, subnetLen, key, n)
		}
		*b.dst = b.addr
	}
	if r.first.Compare(r.last) > 0 {
		return nil, fmt.Errorf("network config: %sSubnetMin %s is above %sSubnetMax %s", key, lo, key, hi)
	}
	span := new(big.Int).Sub(toInt(r.last), toInt(r.first))
	span.Rsh(span, r.shift()).Add(span, big.NewInt(1))
	r.n = maxRangeSize
	if span.IsUint64() && span.Uint64() < maxRangeSize {
		r.n = span.Uint64()
	}
	return r, nil
}

// shift is the number of host bits of a subnet.
func (r *subnetRange) shift() uint { return uint(r.first.BitLen() - r.bits) }

func toInt(a netip.Addr) *big.Int { return new(big.Int).SetBytes(a.AsSlice()) }

// contains reports whether p is one of the leasable subnets.
func (r *subnetRange) contains(p netip.Prefix) bool {
	if !p.IsValid() || p.Addr().BitLen() != r.first.BitLen() || p.Bits() != r.bits || p.Masked() != p {
		return false
	}
	a := p.Addr()
	return r.network.Contains(a) && a.Compare(r.first) >= 0 && a.Compare(r.last) <= 0
}

func (r *subnetRange) size() uint64 { return r.n }

// at returns the i-th leasable subnet (i < size()).
func (r *subnetRange) at(i uint64) netip.Prefix {
	v := new(big.Int).SetUint64(i)
	v.Lsh(v, r.shift()).Add(v, toInt(r.first))
	b := make([]byte, r.first.BitLen()/8)
	v.FillBytes(b)
	a, _ := netip.AddrFromSlice(b) // b has the family's length
	return netip.PrefixFrom(a, r.bits)
}

// randomFree picks a leasable subnet not in taken, starting the search at a
// random place so that concurrent nodes rarely race for the same one.
func (r *subnetRange) randomFree(taken map[netip.Prefix]bool) (netip.Prefix, bool) {
	used := uint64(0)
	for p := range taken {
		if r.contains(p) {
			used++
		}
	}
	n := r.size()
	if used >= n {
		return netip.Prefix{}, false
	}
	start := rand.Uint64N(n)
	for i := range n {
		if p := r.at((start + i) % n); !taken[p] {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

func (r *subnetRange) String() string {
	return fmt.Sprintf("/%d subnets of %s from %s to %s", r.bits, r.network, r.first, r.last)
}

// fits reports whether l has exactly a leasable subnet of each enabled
// family and nothing of a family that is off.
func (rs ranges) fits(l lease.Lease) bool {
	ok := func(r *subnetRange, p netip.Prefix) bool {
		if r == nil {
			return !p.IsValid()
		}
		return r.contains(p)
	}
	return ok(rs.v4, l.Subnet) && ok(rs.v6, l.IPv6Subnet)
}

func (rs ranges) String() string {
	switch {
	case rs.v6 == nil:
		return rs.v4.String()
	case rs.v4 == nil:
		return rs.v6.String()
	}
	return rs.v4.String() + " and " + rs.v6.String()
}

package etcd

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"

	"github.com/weftnet/weft/pkg/netconf"
)

// subnetRange is the set of leasable subnets of net-conf.json: the aligned
// /SubnetLen subnets of Network from SubnetMin to SubnetMax.
type subnetRange struct {
	network     netip.Prefix
	bits        int
	first, last uint32 // network addresses of SubnetMin and SubnetMax
	step        uint32
}

func newSubnetRange(cfg *netconf.Config) (subnetRange, error) {
	n := cfg.Network
	if !n.IsValid() || !n.Addr().Is4() {
		return subnetRange{}, fmt.Errorf("network config: Network %q is not an IPv4 prefix: set Network, e.g. \"10.244.0.0/16\"", n)
	}
	if cfg.SubnetLen < n.Bits() || cfg.SubnetLen > 32 {
		return subnetRange{}, fmt.Errorf("network config: SubnetLen %d does not fit Network %s: use a length between %d and 30", cfg.SubnetLen, n, n.Bits())
	}
	r := subnetRange{network: n.Masked(), bits: cfg.SubnetLen, step: uint32(1) << (32 - cfg.SubnetLen)}
	for _, b := range []struct {
		name string
		addr netip.Addr
		dst  *uint32
	}{{"SubnetMin", cfg.SubnetMin, &r.first}, {"SubnetMax", cfg.SubnetMax, &r.last}} {
		if !b.addr.Is4() || !n.Contains(b.addr) || u32(b.addr)%r.step != 0 {
			return subnetRange{}, fmt.Errorf("network config: %s %q must be a /%d subnet address inside Network %s", b.name, b.addr, cfg.SubnetLen, n)
		}
		*b.dst = u32(b.addr)
	}
	if r.first > r.last {
		return subnetRange{}, fmt.Errorf("network config: SubnetMin %s is above SubnetMax %s", cfg.SubnetMin, cfg.SubnetMax)
	}
	return r, nil
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func fromU32(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// contains reports whether p is one of the leasable subnets.
func (r subnetRange) contains(p netip.Prefix) bool {
	if !p.IsValid() || !p.Addr().Is4() || p.Bits() != r.bits || p.Masked() != p {
		return false
	}
	v := u32(p.Addr())
	return r.network.Contains(p.Addr()) && v >= r.first && v <= r.last
}

func (r subnetRange) size() uint64 { return uint64(r.last-r.first)/uint64(r.step) + 1 }

func (r subnetRange) at(i uint64) netip.Prefix {
	return netip.PrefixFrom(fromU32(r.first+uint32(i)*r.step), r.bits)
}

// randomFree picks a leasable subnet not in taken, starting the search at a
// random place so that concurrent nodes rarely race for the same one.
func (r subnetRange) randomFree(taken map[netip.Prefix]bool) (netip.Prefix, bool) {
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

func (r subnetRange) String() string {
	return fmt.Sprintf("/%d subnets of %s from %s to %s", r.bits, r.network, fromU32(r.first), fromU32(r.last))
}

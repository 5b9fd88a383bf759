package masq

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

// kubeProxyMark is the mark kube-proxy sets on packets it will masquerade
// itself; flannel leaves those alone to avoid double NAT.
const kubeProxyMark = 0x4000

var multicast = netip.MustParsePrefix("224.0.0.0/4")

// rule is one nftables rule with its nft(8) spelling for messages.
type rule struct {
	text  string
	exprs []expr.Any
}

// chain is a base chain and the rules it must hold, in order.
type chain struct {
	chain *nftables.Chain
	rules []rule
}

// ruleset is the table's desired content for c: flannel's --ip-masq rules.
// In nat postrouting, for cluster Network N and own Subnet S:
//
//	meta mark & 0x4000 == 0x4000 return       kube-proxy masquerades these
//	ip saddr S ip daddr N return              pod to pod: keep pod sources
//	ip saddr N ip daddr S return
//	ip saddr != N ip daddr S return           outside to own pods (e.g. NodePort kept)
//	ip saddr N ip daddr != 224.0.0.0/4 masquerade fully-random   pods leaving the cluster
//	ip saddr != N ip daddr N masquerade fully-random             host to remote pods
//
// and in filter forward: accept ip saddr N, accept ip daddr N.
func ruleset(table *nftables.Table, c Config) ([]chain, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	n, s := c.Network.Masked(), c.Subnet.Masked()
	policy := nftables.ChainPolicyAccept
	post := &nftables.Chain{
		Name: "postrouting", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &policy,
	}
	fwd := &nftables.Chain{
		Name: "forward", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &policy,
	}
	ret := &expr.Verdict{Kind: expr.VerdictReturn}
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	masq := &expr.Masq{FullyRandom: true}
	return []chain{
		{post, []rule{
			newRule(fmt.Sprintf("meta mark & %#x == %#x return", kubeProxyMark, kubeProxyMark), ret, markMatch(kubeProxyMark)),
			newRule(fmt.Sprintf("ip saddr %s ip daddr %s return", s, n), ret, saddr(s, true), daddr(n, true)),
			newRule(fmt.Sprintf("ip saddr %s ip daddr %s return", n, s), ret, saddr(n, true), daddr(s, true)),
			newRule(fmt.Sprintf("ip saddr != %s ip daddr %s return", n, s), ret, saddr(n, false), daddr(s, true)),
			newRule(fmt.Sprintf("ip saddr %s ip daddr != %s masquerade fully-random", n, multicast), masq, saddr(n, true), daddr(multicast, false)),
			newRule(fmt.Sprintf("ip saddr != %s ip daddr %s masquerade fully-random", n, n), masq, saddr(n, false), daddr(n, true)),
		}},
		{fwd, []rule{
			newRule(fmt.Sprintf("ip saddr %s accept", n), accept, saddr(n, true)),
			newRule(fmt.Sprintf("ip daddr %s accept", n), accept, daddr(n, true)),
		}},
	}, nil
}

func (c Config) validate() error {
	if !c.Network.Addr().Is4() || !c.Subnet.Addr().Is4() {
		return fmt.Errorf("masquerade needs IPv4 network and subnet, got %v and %v", c.Network, c.Subnet)
	}
	if c.Subnet.Bits() < c.Network.Bits() || !c.Network.Contains(c.Subnet.Addr()) {
		return fmt.Errorf("masquerade: subnet %v is not inside network %v", c.Subnet, c.Network)
	}
	return nil
}

// newRule joins match expressions and a verdict into one rule.
func newRule(text string, verdict expr.Any, matches ...[]expr.Any) rule {
	r := rule{text: text}
	for _, m := range matches {
		r.exprs = append(r.exprs, m...)
	}
	r.exprs = append(r.exprs, verdict)
	return r
}

// IPv4 header offsets of the source and destination address.
const (
	offSaddr = 12
	offDaddr = 16
)

func saddr(p netip.Prefix, eq bool) []expr.Any { return addrMatch(offSaddr, p, eq) }
func daddr(p netip.Prefix, eq bool) []expr.Any { return addrMatch(offDaddr, p, eq) }

// addrMatch compares the address at offset with p, as nft compiles
// "ip saddr 10.0.0.0/8": load, mask (unless /32), compare.
func addrMatch(offset uint32, p netip.Prefix, eq bool) []expr.Any {
	e := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4}}
	if p.Bits() < 32 {
		e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: net.CIDRMask(p.Bits(), 32), Xor: make([]byte, 4)})
	}
	op := expr.CmpOpEq
	if !eq {
		op = expr.CmpOpNeq
	}
	return append(e, &expr.Cmp{Op: op, Register: 1, Data: p.Masked().Addr().AsSlice()})
}

// markMatch is "meta mark & m == m" (the mark is in host byte order).
func markMatch(m uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(m), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(m)},
	}
}

package firewall

import (
	"fmt"
	"net/netip"
	"strings"
)

// kubeProxyMark is the mark kube-proxy sets on packets it masquerades
// itself; flannel leaves those alone to avoid double NAT.
const kubeProxyMark = 0x4000

// family is one address family's share of the rules: its own iptables
// tools (iptables, ip6tables) and nftables table, as flannel keeps them.
type family struct {
	// name is "IPv4" or "IPv6".
	name string
	// tool is the iptables tool's name; the IPv6 one replaces "iptables"
	// in every flavour's names ("ip6tables-nft-save").
	tool string
	// table is flannel's nftables table (family and name).
	table string
	// multicast is the family's multicast range, which is not masqueraded.
	multicast netip.Prefix
}

var (
	ipv4 = &family{name: "IPv4", tool: "iptables", table: "ip flannel-ipv4", multicast: netip.MustParsePrefix("224.0.0.0/4")}
	ipv6 = &family{name: "IPv6", tool: "ip6tables", table: "ip6 flannel-ipv6", multicast: netip.MustParsePrefix("ff00::/8")}
	// families are both, in the order weft installs their rules.
	families = []*family{ipv4, ipv6}
)

// is reports whether a is of family f.
func (f *family) is(a netip.Addr) bool { return (f == ipv6) == (a.Is6() && !a.Is4In6()) }

// verdict is what a rule does with a packet it matches.
type verdict int

const (
	verdictReturn verdict = iota
	verdictAccept
	verdictMasquerade
)

// match tests an address against a prefix: inside it, or with not, outside
// it. The zero match matches every address.
type match struct {
	prefix netip.Prefix
	not    bool
}

func in(p netip.Prefix) match    { return match{prefix: p} }
func notIn(p netip.Prefix) match { return match{prefix: p, not: true} }

// rule is one of flannel's rules; each backend spells it its own way.
type rule struct {
	// mark matches packets with kube-proxy's mark.
	mark     bool
	src, dst match
	verdict  verdict
	// fullyRandom masquerades with fully random source ports.
	fullyRandom bool
}

// masqRules are flannel's --ip-masq rules for cluster network n and this
// node's subnet s (both of family f), in order:
//
//	kube-proxy's mark  return      kube-proxy masquerades these itself
//	s -> n             return      pod to pod keeps the pod's address
//	n -> s             return
//	!n -> s            return      outside to own pods keeps its address
//	n -> !multicast    masquerade  pods leaving the cluster (224.0.0.0/4, ff00::/8)
//	!n -> n            masquerade  the host to remote pods
//
// flannel's nftables backend (nft true) differs in the fourth rule, which
// it writes "!s -> n return" (so the last rule never matches: the host's
// traffic to remote pods keeps its address), and in the mark, which it
// compares whole (the iptables rule tests the bit). weft installs each
// backend's rules exactly as flannel does, so that a node looks the same
// to flannel's tools and checks whichever of the two runs it.
func masqRules(f *family, n, s netip.Prefix, nft, fullyRandom bool) []rule {
	fourth := rule{src: notIn(n), dst: in(s)}
	if nft {
		fourth = rule{src: notIn(s), dst: in(n)}
	}
	return []rule{
		{mark: true},
		{src: in(s), dst: in(n)},
		{src: in(n), dst: in(s)},
		fourth,
		{src: in(n), dst: notIn(f.multicast), verdict: verdictMasquerade, fullyRandom: fullyRandom},
		{src: notIn(n), dst: in(n), verdict: verdictMasquerade, fullyRandom: fullyRandom},
	}
}

// forwardRules are flannel's FORWARD accepts for cluster network n: what
// comes from or goes to a pod is forwarded whatever the chain's policy.
func forwardRules(n netip.Prefix) []rule {
	return []rule{
		{src: in(n), verdict: verdictAccept},
		{dst: in(n), verdict: verdictAccept},
	}
}

// words are a backend's spellings of the verdicts (indexed by verdict) and
// of fully random masquerade.
type words struct {
	verdicts    [3]string
	fullyRandom string
}

var (
	iptablesWords = words{[...]string{"RETURN", "ACCEPT", "MASQUERADE"}, "--random-fully"}
	nftWords      = words{[...]string{"return", "accept", "masquerade"}, "fully-random"}
)

// verdict appends r's verdict to w.
func (s words) verdict(w []string, r rule) []string {
	w = append(w, s.verdicts[r.verdict])
	if r.verdict == verdictMasquerade && r.fullyRandom {
		w = append(w, s.fullyRandom)
	}
	return w
}

// iptables spells r as iptables-save prints it, appended to chain and
// labelled with comment, e.g.
//
//	-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
func (r rule) iptables(chain, comment string) string {
	w := []string{"-A", chain}
	w = r.src.iptables(w, "-s")
	w = r.dst.iptables(w, "-d")
	if r.mark {
		w = append(w, "-m", "mark", "--mark", fmt.Sprintf("%#x/%#x", kubeProxyMark, kubeProxyMark))
	}
	w = append(w, "-m", "comment", "--comment", `"`+comment+`"`, "-j")
	return strings.Join(iptablesWords.verdict(w, r), " ")
}

func (m match) iptables(w []string, flag string) []string {
	if !m.prefix.IsValid() {
		return w
	}
	if m.not {
		w = append(w, "!")
	}
	return append(w, flag, m.prefix.String())
}

// nft spells r as nft(8) lists it, e.g. "ip saddr != 10.244.1.0/24 ip daddr
// 10.244.0.0/16 return" ("ip6 saddr ..." for IPv6 prefixes).
func (r rule) nft() string {
	var w []string
	if r.mark {
		w = append(w, "meta", "mark", fmt.Sprintf("0x%08x", kubeProxyMark))
	}
	w = r.src.nft(w, "saddr")
	w = r.dst.nft(w, "daddr")
	return strings.Join(nftWords.verdict(w, r), " ")
}

func (m match) nft(w []string, field string) []string {
	if !m.prefix.IsValid() {
		return w
	}
	proto := "ip"
	if ipv6.is(m.prefix.Addr()) {
		proto = "ip6"
	}
	w = append(w, proto, field)
	if m.not {
		w = append(w, "!=")
	}
	return append(w, m.prefix.String())
}

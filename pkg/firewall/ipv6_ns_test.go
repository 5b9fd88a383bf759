package firewall

import (
	"strings"
	"testing"
)

// TestIPv6Iptables installs dual-stack, IPv6-only and IPv4-only rules in
// iptables mode: each family's chains in its own tool, flannel's rules with
// the family's prefixes, drift in ip6tables found and repaired.
func TestIPv6Iptables(t *testing.T) {
	n := newNode(t)
	n.ensure(t, dual)
	n.requireFamilyIptables(t, ipv4, flannelPostrtg, flannelFwd)
	n.requireFamilyIptables(t, ipv6, v6(flannelPostrtg), v6(flannelFwd))
	if got := n.tables(t); got != "" {
		t.Errorf("iptables mode created nftables tables:\n%s", got)
	}
	n.requireStable(t, dual)

	n.MustRun(t, "ip6tables", "-t", "nat", "-F", "FLANNEL-POSTRTG")
	n.expectDrift(t, dual, "flushing ip6tables' FLANNEL-POSTRTG", "ip6tables nat: chain FLANNEL-POSTRTG: line 1 is missing")
	n.MustRun(t, "ip6tables", "-t", "filter", "-D", "FORWARD", "-m", "comment", "--comment", "flanneld forward", "-j", "FLANNEL-FWD")
	n.expectDrift(t, dual, "deleting ip6tables' FORWARD jump", `ip6tables filter: no jump "-A FORWARD`)
	n.MustRun(t, "ip6tables", "-t", "nat", "-D", "FLANNEL-POSTRTG", "-s", "fd10:244::/56", "!", "-d", "ff00::/8",
		"-m", "comment", "--comment", "flanneld masq", "-j", "MASQUERADE", "--random-fully")
	n.expectDrift(t, dual, "deleting the IPv6 masquerade", "ip6tables nat: chain FLANNEL-POSTRTG: line 5 is")
	n.requireFamilyIptables(t, ipv6, v6(flannelPostrtg), v6(flannelFwd))

	// IPv6-only: no IPv4 rules; IPv4-only: no IPv6 rules.
	n.expectDrift(t, only6, "IPv4 turned off", "iptables nat: chain FLANNEL-POSTRTG exists")
	n.requireFamilyIptables(t, ipv4, "", "")
	n.requireFamilyIptables(t, ipv6, v6(flannelPostrtg), v6(flannelFwd))
	n.expectDrift(t, cfg, "IPv6 turned off", "ip6tables nat: chain FLANNEL-POSTRTG exists")
	n.requireFamilyIptables(t, ipv4, flannelPostrtg, flannelFwd)
	n.requireFamilyIptables(t, ipv6, "", "")

	n.ensure(t, dual)
	if err := n.Do(func() error { return n.fw.Remove(t.Context()) }); err != nil {
		t.Fatal(err)
	}
	n.requireNoIptables(t, "iptables-save")
	n.requireNoIptables(t, "ip6tables-save")
}

// TestIPv6NFTables is TestIPv6Iptables in nftables mode: flannel's table
// ip6 flannel-ipv6 besides ip flannel-ipv4.
func TestIPv6NFTables(t *testing.T) {
	n := newNode(t)
	c := dual
	c.NFTables = true
	n.ensure(t, c)
	n.requireFamilyNFT(t, ipv4, flannelNftPostrtg, flannelNftForward)
	n.requireFamilyNFT(t, ipv6, v6(flannelNftPostrtg), v6(flannelNftForward))
	if got := n.tables(t); got != "table ip flannel-ipv4\ntable ip6 flannel-ipv6" {
		t.Errorf("tables:\n%s\nwant flannel's two", got)
	}
	n.requireNoIptables(t, "ip6tables-save")
	n.requireStable(t, c)

	n.MustRun(t, "nft", "flush", "chain", "ip6", "flannel-ipv6", "postrtg")
	n.expectDrift(t, c, "flushing the IPv6 postrtg", "nftables table ip6 flannel-ipv6: line 6 is")
	n.MustRun(t, "nft", "add", "rule", "ip6", "flannel-ipv6", "forward", "ip6", "saddr", "2001:db8::/32", "drop")
	n.expectDrift(t, c, "adding an IPv6 rule", "ip6 saddr 2001:db8::/32 drop")
	n.MustRun(t, "nft", "delete", "table", "ip6", "flannel-ipv6")
	n.expectDrift(t, c, "deleting the IPv6 table", "nftables table ip6 flannel-ipv6: line 1 is missing")
	n.requireFamilyNFT(t, ipv6, v6(flannelNftPostrtg), v6(flannelNftForward))

	// One family off: its table goes, the other's stays.
	for _, step := range []struct {
		what, drift, tables string
		c                   Config
	}{
		{"IPv4 turned off", "nftables table ip flannel-ipv4: unexpected line 1", "table ip6 flannel-ipv6", only6},
		{"IPv6 turned off", "nftables table ip6 flannel-ipv6: unexpected line 1", "table ip flannel-ipv4", cfg},
	} {
		step.c.NFTables = true
		n.expectDrift(t, step.c, step.what, step.drift)
		if got := n.tables(t); got != step.tables {
			t.Errorf("%s: tables\n%s\nwant %s", step.what, got, step.tables)
		}
	}

	// Switching to iptables moves both families' rules.
	n.ensure(t, c)
	n.ensure(t, dual)
	if got := n.tables(t); got != "" {
		t.Errorf("iptables mode left tables:\n%s", got)
	}
	n.requireFamilyIptables(t, ipv6, v6(flannelPostrtg), v6(flannelFwd))
	n.ensure(t, c)
	n.requireNoIptables(t, "ip6tables-save")
	if err := n.Do(func() error { return n.fw.Remove(t.Context()) }); err != nil {
		t.Fatal(err)
	}
	if got := n.tables(t); strings.TrimSpace(got) != "" {
		t.Errorf("tables left after Remove:\n%s", got)
	}
}

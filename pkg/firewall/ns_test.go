package firewall

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/test/testns"
)

// node is a namespace with a Firewall working in it.
type node struct {
	*testns.NS
	fw *Firewall
}

func newNode(t *testing.T) *node {
	return &node{NS: testns.New(t, testns.Prefix(), "node"), fw: New()}
}

func (n *node) ensure(t *testing.T, c Config) {
	t.Helper()
	if err := n.Do(func() error { return n.fw.Ensure(t.Context(), c) }); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if err := n.check(t, c); err != nil {
		t.Fatalf("Check after Ensure: %v", err)
	}
}

func (n *node) check(t *testing.T, c Config) error {
	return n.Do(func() error { return n.fw.Check(t.Context(), c) })
}

// expectDrift requires that Check finds what was done, then repairs it.
func (n *node) expectDrift(t *testing.T, c Config, what, want string) {
	t.Helper()
	err := n.check(t, c)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Check after %s: %v, want an error containing %q", what, err, want)
	}
	n.ensure(t, c)
}

// iptablesView is what flannel's e2e suite reads for chain c of family f:
// the rules of c.from that mention FLANNEL, then `iptables -S c`
// (ip6tables for IPv6; "" when c is absent).
func (n *node) iptablesView(t *testing.T, f *family, c ipChain) string {
	t.Helper()
	var lines []string
	for l := range strings.Lines(n.MustRun(t, f.tool, "-t", c.table, "-S", c.from)) {
		if strings.Contains(l, "FLANNEL") {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	if own, err := n.Run(f.tool, "-t", c.table, "-S", c.name); err == nil {
		lines = append(lines, strings.Split(strings.TrimSpace(own), "\n")...)
	}
	return strings.Join(lines, "\n")
}

func (n *node) requireIptables(t *testing.T, wantPostrtg, wantFwd string) {
	t.Helper()
	n.requireFamilyIptables(t, ipv4, wantPostrtg, wantFwd)
}

// requireFamilyIptables requires family f's chains to be as given.
func (n *node) requireFamilyIptables(t *testing.T, f *family, wantPostrtg, wantFwd string) {
	t.Helper()
	if got := n.iptablesView(t, f, masqChain); got != wantPostrtg {
		t.Errorf("%s nat FLANNEL-POSTRTG:\n%s\nwant:\n%s", f.tool, got, wantPostrtg)
	}
	if got := n.iptablesView(t, f, fwdChain); got != wantFwd {
		t.Errorf("%s filter FLANNEL-FWD:\n%s\nwant:\n%s", f.tool, got, wantFwd)
	}
}

// requireNoIptables requires that save (an iptables-save flavour) shows no
// rule of flannel's.
func (n *node) requireNoIptables(t *testing.T, save string) {
	t.Helper()
	if out := n.MustRun(t, save); strings.Contains(out, "FLANNEL") || strings.Contains(out, "flanneld") {
		t.Errorf("%s shows flannel's rules:\n%s", save, out)
	}
}

// nftChainView is `nft list chain ip flannel-ipv4 name` (family f's
// table), "" when absent.
func (n *node) nftChainView(f *family, name string) string {
	out, err := n.Run("nft", append(append([]string{"list", "chain"}, strings.Fields(f.table)...), name)...)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

func (n *node) requireNFT(t *testing.T, wantPostrtg, wantForward string) {
	t.Helper()
	n.requireFamilyNFT(t, ipv4, wantPostrtg, wantForward)
}

// requireFamilyNFT requires family f's table's chains to be as given.
func (n *node) requireFamilyNFT(t *testing.T, f *family, wantPostrtg, wantForward string) {
	t.Helper()
	if got := n.nftChainView(f, "postrtg"); got != wantPostrtg {
		t.Errorf("%s postrtg:\n%s\nwant:\n%s", f.table, got, wantPostrtg)
	}
	if got := n.nftChainView(f, "forward"); got != wantForward {
		t.Errorf("%s forward:\n%s\nwant:\n%s", f.table, got, wantForward)
	}
}

// tables lists the nftables tables other than iptables-nft's own.
func (n *node) tables(t *testing.T) string {
	var own []string
	for l := range strings.Lines(n.MustRun(t, "nft", "list", "tables")) {
		if l = strings.TrimSpace(l); !slices.Contains([]string{"table ip nat", "table ip filter", "table ip6 nat", "table ip6 filter"}, l) {
			own = append(own, l)
		}
	}
	return strings.Join(own, "\n")
}

// handles is the whole ruleset with rule handles, which change when a rule
// is rewritten.
func (n *node) handles(t *testing.T) string { return n.MustRun(t, "nft", "-a", "list", "ruleset") }

// requireStable requires that Ensure of c, which the node holds, rewrites
// nothing.
func (n *node) requireStable(t *testing.T, c Config) {
	t.Helper()
	before := n.handles(t)
	n.ensure(t, c)
	if after := n.handles(t); after != before {
		t.Errorf("Ensure on correct rules rewrote them:\n%s\nthen:\n%s", before, after)
	}
}

func TestIptablesMode(t *testing.T) {
	n := newNode(t)
	if err := n.check(t, cfg); err == nil || !strings.Contains(err.Error(), "chain FLANNEL-POSTRTG is missing") {
		t.Fatalf("Check before Ensure: %v", err)
	}
	n.ensure(t, cfg)
	n.requireIptables(t, flannelPostrtg, flannelFwd)
	if got := n.tables(t); got != "" {
		t.Errorf("iptables mode created nftables tables:\n%s", got)
	}

	n.requireStable(t, cfg)

	// Drift of every kind is found and repaired.
	n.MustRun(t, "iptables", "-t", "nat", "-F", "FLANNEL-POSTRTG")
	n.expectDrift(t, cfg, "flushing FLANNEL-POSTRTG", "chain FLANNEL-POSTRTG: line 1 is missing")
	n.MustRun(t, "iptables", "-t", "filter", "-D", "FORWARD", "-m", "comment", "--comment", "flanneld forward", "-j", "FLANNEL-FWD")
	n.expectDrift(t, cfg, "deleting the FORWARD jump", `no jump "-A FORWARD`)
	n.MustRun(t, "iptables", "-t", "filter", "-A", "FLANNEL-FWD", "-j", "DROP")
	n.expectDrift(t, cfg, "adding a rule", `chain FLANNEL-FWD: unexpected line 3 "-A FLANNEL-FWD -j DROP"`)
	n.MustRun(t, "iptables", "-t", "nat", "-D", "FLANNEL-POSTRTG", "-s", "10.244.0.0/16", "-d", "10.244.1.0/24",
		"-m", "comment", "--comment", "flanneld masq", "-j", "RETURN")
	n.expectDrift(t, cfg, "deleting a rule", "chain FLANNEL-POSTRTG: line 3 is")
	n.MustRun(t, "iptables", "-t", "nat", "-A", "POSTROUTING", "-m", "comment", "--comment", "flanneld masq", "-j", "FLANNEL-POSTRTG")
	n.expectDrift(t, cfg, "a second jump", "unexpected rule")
	n.requireIptables(t, flannelPostrtg, flannelFwd)

	// A new subnet moves the rules; without --ip-masq only the forward
	// rules stay, without forward rules only masquerade.
	moved := cfg
	moved.Subnet = netip.MustParsePrefix("10.244.7.0/24")
	n.expectDrift(t, moved, "a new subnet", "line 2 is")
	n.requireIptables(t, strings.ReplaceAll(flannelPostrtg, "10.244.1.0/24", "10.244.7.0/24"), flannelFwd)
	noMasq := cfg
	noMasq.Masquerade = false
	n.expectDrift(t, noMasq, "--ip-masq off", "chain FLANNEL-POSTRTG exists")
	n.requireIptables(t, "", flannelFwd)
	noFwd := cfg
	noFwd.Forward = false
	n.ensure(t, noFwd)
	n.requireIptables(t, flannelPostrtg, "")

	for i := range 2 {
		if err := n.Do(func() error { return n.fw.Remove(t.Context()) }); err != nil {
			t.Fatalf("Remove #%d: %v", i+1, err)
		}
	}
	n.requireIptables(t, "", "")
	n.requireNoIptables(t, "iptables-save")
}

func TestNFTablesMode(t *testing.T) {
	n := newNode(t)
	c := cfg
	c.NFTables = true
	if err := n.check(t, c); err == nil || !strings.Contains(err.Error(), "line 1 is missing") {
		t.Fatalf("Check before Ensure: %v", err)
	}
	n.ensure(t, c)
	n.requireNFT(t, flannelNftPostrtg, flannelNftForward)
	n.requireNoIptables(t, "iptables-save")

	n.requireStable(t, c)

	n.MustRun(t, "nft", "delete", "rule", "ip", "flannel-ipv4", "postrtg", "handle",
		ruleHandle(t, n, "postrtg", "ip saddr 10.244.0.0/16 ip daddr 10.244.1.0/24 return"))
	n.expectDrift(t, c, "deleting a rule", `line 8 is "\t\tip saddr != 10.244.1.0/24`)
	n.MustRun(t, "nft", "add", "rule", "ip", "flannel-ipv4", "forward", "ip", "saddr", "192.0.2.0/24", "drop")
	n.expectDrift(t, c, "adding a rule", "ip saddr 192.0.2.0/24 drop")
	n.MustRun(t, "nft", "flush", "chain", "ip", "flannel-ipv4", "postrtg")
	n.expectDrift(t, c, "flushing a chain", "line 6 is")
	n.MustRun(t, "nft", "chain", "ip", "flannel-ipv4", "forward", "{ policy drop; }")
	n.expectDrift(t, c, "changing a policy", "policy drop")
	n.MustRun(t, "nft", "delete", "chain", "ip", "flannel-ipv4", "forward")
	n.expectDrift(t, c, "deleting a chain", `line 13 is "}"`)
	n.MustRun(t, "nft", "delete", "table", "ip", "flannel-ipv4")
	n.expectDrift(t, c, "deleting the table", "line 1 is missing")
	n.requireNFT(t, flannelNftPostrtg, flannelNftForward)

	noMasq := c
	noMasq.Masquerade = false
	n.ensure(t, noMasq)
	n.requireNFT(t, "", flannelNftForward)
	n.ensure(t, Config{Network: network, NFTables: true})
	if got := n.tables(t); got != "" {
		t.Errorf("nothing wanted, tables left:\n%s", got)
	}

	n.ensure(t, c)
	if err := n.Do(func() error { return n.fw.Remove(t.Context()) }); err != nil {
		t.Fatal(err)
	}
	if got := n.tables(t); got != "" {
		t.Errorf("tables left after Remove:\n%s", got)
	}
}

// ruleHandle finds the handle of the rule spelled text in chain of flannel's
// table.
func ruleHandle(t *testing.T, n *node, chain, text string) string {
	t.Helper()
	out := n.MustRun(t, "nft", "-a", "list", "chain", "ip", "flannel-ipv4", chain)
	m := regexp.MustCompile(regexp.QuoteMeta(text) + ` # handle (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("rule %q not found in:\n%s", text, out)
	}
	return m[1]
}

// oldWeftTable is the table weft versions before this package installed.
const oldWeftTable = `table ip weft {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		ip saddr 10.244.0.0/16 accept
	}
}
`

// leaveFlannelState puts on n what flannel (both of its modes, another
// subnet) and an earlier weft leave behind.
func leaveFlannelState(t *testing.T, n *node) {
	t.Helper()
	other := Config{Network: network, Subnet: netip.MustParsePrefix("10.244.9.0/24"), Masquerade: true, Forward: true}
	masq, fwd := other.rules(ipv4, false, true)
	script := "*nat\n:FLANNEL-POSTRTG - [0:0]\n" +
		// flannel before its own chains wrote into POSTROUTING.
		`-A POSTROUTING -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN` + "\n" +
		masqChain.jump() + "\n" + strings.Join(masqChain.spell(masq), "\n") + "\n" + masqChain.jump() + "\nCOMMIT\n" +
		"*filter\n:FLANNEL-FWD - [0:0]\n" + fwdChain.jump() + "\n" + strings.Join(fwdChain.spell(fwd), "\n") + "\nCOMMIT\n"
	err := n.Do(func() error {
		if _, err := run(t.Context(), script, "iptables-restore", "--noflush"); err != nil {
			return err
		}
		nftState := oldWeftTable + nftText(other, ipv4, true) + "table ip6 flannel-ipv6 {\n\tcomment \"rules for flannel-ipv6\"\n}\n"
		_, err := run(t.Context(), nftState, "nft", "-f", "-")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := n.tables(t); got != "table ip weft\ntable ip flannel-ipv4\ntable ip6 flannel-ipv6" {
		t.Fatalf("left-over tables:\n%s", got)
	}
}

// TestAdoptFlannel starts weft on a node flannel and an earlier weft ran
// on: one set of rules remains, in the configured backend.
func TestAdoptFlannel(t *testing.T) {
	t.Run("iptables", func(t *testing.T) {
		n := newNode(t)
		leaveFlannelState(t, n)
		n.ensure(t, cfg)
		n.requireIptables(t, flannelPostrtg, flannelFwd)
		if got := n.tables(t); got != "" {
			t.Errorf("tables left:\n%s", got)
		}
	})
	t.Run("nftables", func(t *testing.T) {
		n := newNode(t)
		leaveFlannelState(t, n)
		c := cfg
		c.NFTables = true
		n.ensure(t, c)
		n.requireNFT(t, flannelNftPostrtg, flannelNftForward)
		if got := n.tables(t); got != "table ip flannel-ipv4" {
			t.Errorf("tables:\n%s\nwant only flannel-ipv4", got)
		}
		n.requireNoIptables(t, "iptables-save")
	})
}

// TestSwitchBackend flips EnableNFTables back and forth: the rules move.
func TestSwitchBackend(t *testing.T) {
	n := newNode(t)
	nft := cfg
	nft.NFTables = true
	for range 2 {
		n.ensure(t, cfg)
		n.requireNFT(t, "", "")
		n.requireIptables(t, flannelPostrtg, flannelFwd)
		n.ensure(t, nft)
		n.requireIptables(t, "", "")
		n.requireNFT(t, flannelNftPostrtg, flannelNftForward)
	}
}

// TestLegacyIptables runs on a node whose rules are in iptables-legacy
// (Docker's DROP policy there): weft's chains must go there too, where they
// can override that policy.
func TestLegacyIptables(t *testing.T) {
	n := newNode(t)
	n.MustRun(t, "iptables-legacy", "-P", "FORWARD", "DROP")
	n.ensure(t, cfg)
	legacy := n.MustRun(t, "iptables-legacy-save")
	for want := range strings.Lines(flannelPostrtg + "\n" + flannelFwd + "\n") {
		if !strings.HasPrefix(want, "-N ") && !strings.Contains(legacy, want) {
			t.Errorf("iptables-legacy-save lacks %q:\n%s", want, legacy)
		}
	}
	n.requireNoIptables(t, "iptables-nft-save")
	if err := n.Do(func() error { return n.fw.Remove(t.Context()) }); err != nil {
		t.Fatal(err)
	}
	n.requireNoIptables(t, "iptables-legacy-save")
}

// TestNFTSpelling runs with an nft that lists the table in another
// spelling (as another nft version might): weft installs once and still
// finds drift, instead of seeing drift in the spelling.
func TestNFTSpelling(t *testing.T) {
	nftPath, err := exec.LookPath("nft")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	wrapper := "#!/bin/sh\nif [ \"$1\" = list ] && [ \"$2\" = table ]; then\n" +
		"\t" + nftPath + " \"$@\" | sed 's/priority srcnat/priority 100/'\n\texit\nfi\nexec " + nftPath + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "nft"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))

	n := newNode(t)
	c := cfg
	c.NFTables = true
	n.ensure(t, c)
	before := n.handles(t)
	n.ensure(t, c)
	if after := n.handles(t); after != before {
		t.Errorf("Ensure rewrote rules whose listing differs only in spelling:\n%s\nthen:\n%s", before, after)
	}
	n.MustRun(t, "nft", "flush", "chain", "ip", "flannel-ipv4", "forward")
	n.expectDrift(t, c, "flushing a chain", `line 17 is "\t}", want "\t\tip saddr 10.244.0.0/16 accept"`)
}

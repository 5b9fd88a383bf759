package firewall

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

var (
	network  = netip.MustParsePrefix("10.244.0.0/16")
	subnet   = netip.MustParsePrefix("10.244.1.0/24")
	network6 = netip.MustParsePrefix("fd10:244::/56")
	subnet6  = netip.MustParsePrefix("fd10:244:0:1::/64")
	// cfg is weftd's default: masquerade and forward rules in iptables.
	cfg = Config{Network: network, Subnet: subnet, Masquerade: true, Forward: true}
	// dual is cfg on a dual-stack node, only6 on an IPv6-only one.
	dual  = Config{Network: network, Subnet: subnet, IPv6Network: network6, IPv6Subnet: subnet6, Masquerade: true, Forward: true}
	only6 = Config{IPv6Network: network6, IPv6Subnet: subnet6, Masquerade: true, Forward: true}
)

// v6 turns a golden text of IPv4 rules into flannel's IPv6 rules: the same
// with the IPv6 network and subnet, multicast ff00::/8, and in nftables
// ip6 matches in the table ip6 flannel-ipv6 (FLANNEL-COMPAT.md, "Dual
// stack"; flannel's trafficmngr builds both families from one rule list).
func v6(golden string) string {
	return strings.NewReplacer("10.244.1.0/24", "fd10:244:0:1::/64", "10.244.0.0/16", "fd10:244::/56", "224.0.0.0/4", "ff00::/8",
		"ip saddr", "ip6 saddr", "ip daddr", "ip6 daddr", "table ip flannel-ipv4", "table ip6 flannel-ipv6").Replace(golden)
}

// The golden texts are what flannel's e2e suite expects on its nodes
// (`iptables -t nat -S FLANNEL-POSTRTG` behind POSTROUTING's jump,
// `iptables -S FLANNEL-FWD` behind FORWARD's, and `nft list chain`).
const (
	flannelPostrtg = `-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-N FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully`
	flannelFwd = `-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-N FLANNEL-FWD
-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT`
	flannelNftPostrtg = `table ip flannel-ipv4 {
	chain postrtg {
		comment "chain to manage traffic masquerading by flannel"
		type nat hook postrouting priority srcnat; policy accept;
		meta mark 0x00004000 return
		ip saddr 10.244.1.0/24 ip daddr 10.244.0.0/16 return
		ip saddr 10.244.0.0/16 ip daddr 10.244.1.0/24 return
		ip saddr != 10.244.1.0/24 ip daddr 10.244.0.0/16 return
		ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random
		ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random
	}
}`
	flannelNftForward = `table ip flannel-ipv4 {
	chain forward {
		comment "chain to accept flannel traffic"
		type filter hook forward priority filter; policy accept;
		ip saddr 10.244.0.0/16 accept
		ip daddr 10.244.0.0/16 accept
	}
}`
)

// iptablesS is what flannel's e2e reads for chain c: the built-in chain's
// rules that mention c, then `iptables -S c`.
func iptablesS(c ipChain, lines []string) string {
	out := []string{c.jump(), "-N " + c.name}
	return strings.Join(append(out, lines...), "\n")
}

func TestIptablesRulesAreFlannels(t *testing.T) {
	masq, fwd := cfg.rules(ipv4, false, true)
	if got := iptablesS(masqChain, masqChain.spell(masq)); got != flannelPostrtg {
		t.Errorf("FLANNEL-POSTRTG:\n%s\nwant:\n%s", got, flannelPostrtg)
	}
	if got := iptablesS(fwdChain, fwdChain.spell(fwd)); got != flannelFwd {
		t.Errorf("FLANNEL-FWD:\n%s\nwant:\n%s", got, flannelFwd)
	}
	// Without fully random ports, whether by flag or because the tools
	// lack them, the two MASQUERADE rules lose --random-fully.
	noRandom := cfg
	noRandom.NoFullyRandom = true
	for _, c := range []struct {
		cfg         Config
		fullyRandom bool
	}{{noRandom, true}, {cfg, false}} {
		masq, _ := c.cfg.rules(ipv4, false, c.fullyRandom)
		want := strings.ReplaceAll(flannelPostrtg, " --random-fully", "")
		if got := iptablesS(masqChain, masqChain.spell(masq)); got != want {
			t.Errorf("NoFullyRandom %v, tools support it %v:\n%s\nwant:\n%s", c.cfg.NoFullyRandom, c.fullyRandom, got, want)
		}
	}
}

func TestIPv6RulesAreFlannels(t *testing.T) {
	masq, fwd := dual.rules(ipv6, false, true)
	if got, want := iptablesS(masqChain, masqChain.spell(masq)), v6(flannelPostrtg); got != want {
		t.Errorf("ip6tables FLANNEL-POSTRTG:\n%s\nwant:\n%s", got, want)
	}
	if got, want := iptablesS(fwdChain, fwdChain.spell(fwd)), v6(flannelFwd); got != want {
		t.Errorf("ip6tables FLANNEL-FWD:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(v6(flannelPostrtg), `! -d ff00::/8 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully`) {
		t.Error("golden IPv6 rules lack the multicast exclusion")
	}
	// Each family's rules are its own: the IPv4 ones of a dual-stack node
	// are those of an IPv4-only one, an IPv6-only node has none.
	m4, f4 := dual.rules(ipv4, false, true)
	c4, cf4 := cfg.rules(ipv4, false, true)
	if !slices.Equal(masqChain.spell(m4), masqChain.spell(c4)) || !slices.Equal(fwdChain.spell(f4), fwdChain.spell(cf4)) {
		t.Error("dual stack changes the IPv4 rules")
	}
	if m, f := only6.rules(ipv4, false, true); m != nil || f != nil {
		t.Errorf("IPv6-only node has IPv4 rules %v %v", m, f)
	}
	if m, f := cfg.rules(ipv6, false, true); m != nil || f != nil {
		t.Errorf("IPv4-only node has IPv6 rules %v %v", m, f)
	}
	noRandom := dual
	noRandom.NoFullyRandom = true
	masq, _ = noRandom.rules(ipv6, false, true)
	if got, want := iptablesS(masqChain, masqChain.spell(masq)), strings.ReplaceAll(v6(flannelPostrtg), " --random-fully", ""); got != want {
		t.Errorf("NoFullyRandom:\n%s\nwant:\n%s", got, want)
	}

	text := nftText(dual, ipv6, true)
	for _, want := range []string{v6(flannelNftPostrtg), v6(flannelNftForward)} {
		for _, l := range strings.Split(want, "\n")[1:] {
			if !strings.Contains(text, l+"\n") {
				t.Errorf("table ip6 flannel-ipv6 lacks %q:\n%s", l, text)
			}
		}
	}
	if !strings.HasPrefix(text, "table ip6 flannel-ipv6 {\n\tcomment \"rules for flannel-ipv6\"\n") {
		t.Errorf("table header:\n%s", text)
	}
	if got := nftText(only6, ipv4, true); got != "" {
		t.Errorf("IPv6-only node has an IPv4 table:\n%s", got)
	}
}

func TestNFTablesRulesAreFlannels(t *testing.T) {
	text := nftText(cfg, ipv4, true)
	// nft list chain shows the table without its comment and other chains.
	postrtg, forward, ok := strings.Cut(text, "\n\n")
	if !ok {
		t.Fatalf("want two chains:\n%s", text)
	}
	postrtg = strings.Replace(postrtg, "\tcomment \"rules for flannel-ipv4\"\n", "", 1) + "\n}"
	forward = "table ip flannel-ipv4 {\n" + strings.TrimSuffix(forward, "\n")
	if postrtg != flannelNftPostrtg {
		t.Errorf("postrtg:\n%s\nwant:\n%s", postrtg, flannelNftPostrtg)
	}
	if forward != flannelNftForward {
		t.Errorf("forward:\n%s\nwant:\n%s", forward, flannelNftForward)
	}
	if !strings.HasPrefix(text, "table ip flannel-ipv4 {\n\tcomment \"rules for flannel-ipv4\"\n") {
		t.Errorf("table comment missing:\n%s", text)
	}

	onlyForward := cfg
	onlyForward.Masquerade = false
	if got, want := nftText(onlyForward, ipv4, true), "table ip flannel-ipv4 {\n\tcomment \"rules for flannel-ipv4\"\n"+
		strings.TrimPrefix(flannelNftForward, "table ip flannel-ipv4 {\n")+"\n"; got != want {
		t.Errorf("forward only:\n%s\nwant:\n%s", got, want)
	}
	if got := nftText(Config{Network: network}, ipv4, true); got != "" {
		t.Errorf("no rules wanted, got a table:\n%s", got)
	}
	if got := nftText(cfg, ipv4, false); strings.Contains(got, "fully-random") || !strings.Contains(got, "masquerade\n") {
		t.Errorf("without kernel support the masquerade is not fully random:\n%s", got)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{},
		{Network: netip.MustParsePrefix("fd00::/48"), Forward: true},
		{Network: network, Subnet: netip.MustParsePrefix("10.245.1.0/24"), Masquerade: true},
		{Network: network, Subnet: netip.MustParsePrefix("10.0.0.0/8"), Masquerade: true},
		{Network: network, Masquerade: true},
		{IPv6Network: network, Forward: true},
		{Network: network6, IPv6Network: network6, Forward: true},
		{IPv6Network: network6, IPv6Subnet: subnet, Masquerade: true},
		{IPv6Network: network6, IPv6Subnet: netip.MustParsePrefix("fd10:245::/64"), Masquerade: true},
		{Network: network, Subnet: subnet, IPv6Network: network6, Masquerade: true},
	} {
		if err := c.validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	// Forward rules alone need no subnet.
	for _, c := range []Config{{Network: network, Forward: true}, {IPv6Network: network6, Forward: true}, dual, only6} {
		if err := c.validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

// save builds iptables-save output of one table.
func save(table string, chains map[string]string, lines ...string) string {
	var b strings.Builder
	b.WriteString("# Generated by iptables-nft-save v1.8.9 (nf_tables)\n*" + table + "\n")
	names := make([]string, 0, len(chains))
	for name := range chains {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		b.WriteString(":" + name + " " + chains[name] + " [0:0]\n")
	}
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	b.WriteString("COMMIT\n# Completed\n")
	return b.String()
}

func TestParseSave(t *testing.T) {
	out := "# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n" +
		save("nat", map[string]string{"POSTROUTING": "ACCEPT", "FLANNEL-POSTRTG": "-"},
			`-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG`,
			`-A FLANNEL-POSTRTG -s 10.0.0.0/8 -j RETURN`) +
		save("filter", map[string]string{"FORWARD": "DROP"})
	tables := parseSave(out)
	nat, filter := tables["nat"], tables["filter"]
	if len(tables) != 2 || !nat.hasChain("FLANNEL-POSTRTG") || nat.hasChain("FORWARD") || filter.chains["FORWARD"] != "DROP" {
		t.Fatalf("parsed %+v", tables)
	}
	if got := nat.rulesOf("FLANNEL-POSTRTG"); !slices.Equal(got, []string{"-A FLANNEL-POSTRTG -s 10.0.0.0/8 -j RETURN"}) {
		t.Errorf("rules of FLANNEL-POSTRTG: %q", got)
	}
}

func TestPlan(t *testing.T) {
	masq, _ := cfg.rules(ipv4, false, true)
	want := masqChain.spell(masq)
	builtin := map[string]string{"POSTROUTING": "ACCEPT"}
	withChain := map[string]string{"POSTROUTING": "ACCEPT", "FLANNEL-POSTRTG": "-"}
	jump := masqChain.jump()
	kubeJump := `-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING`
	decl := ":FLANNEL-POSTRTG - [0:0]"
	for _, tc := range []struct {
		name        string
		saved       string
		want        []string
		decls, cmds []string
		drift       []string
	}{{
		name: "nothing there", saved: save("nat", builtin), want: want,
		decls: []string{decl}, cmds: append(slices.Clone(want), jump),
		drift: []string{"chain FLANNEL-POSTRTG is missing", "no jump"},
	}, {
		name:  "in place, after kube-proxy's jump",
		saved: save("nat", withChain, append([]string{kubeJump, jump}, want...)...), want: want,
	}, {
		name:  "a rule deleted",
		saved: save("nat", withChain, append([]string{jump}, want[:3]...)...), want: want,
		decls: []string{decl}, cmds: want,
		drift: []string{"chain FLANNEL-POSTRTG: line 4 is missing"},
	}, {
		name:  "a rule added",
		saved: save("nat", withChain, append([]string{jump}, append(slices.Clone(want), "-A FLANNEL-POSTRTG -j ACCEPT")...)...), want: want,
		decls: []string{decl}, cmds: want,
		drift: []string{"chain FLANNEL-POSTRTG: unexpected line 7"},
	}, {
		name:  "jump deleted",
		saved: save("nat", withChain, want...), want: want,
		cmds: []string{jump}, drift: []string{"no jump"},
	}, {
		// flannel's left-overs: another subnet's rules, its jump twice and a
		// rule of a flannel version that wrote into POSTROUTING.
		name: "flannel's left-overs adopted",
		saved: save("nat", withChain,
			`-A POSTROUTING -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN`,
			jump, kubeJump, jump,
			`-A FLANNEL-POSTRTG -s 10.244.9.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN`),
		want:  want,
		decls: []string{decl},
		cmds: append([]string{
			`-D POSTROUTING -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN`,
			"-D" + strings.TrimPrefix(jump, "-A"),
		}, want...),
		drift: []string{"unexpected rule", "unexpected rule", "chain FLANNEL-POSTRTG: line 1 is"},
	}, {
		name:  "not wanted: jump and chain removed",
		saved: save("nat", withChain, append([]string{kubeJump, jump}, want...)...),
		decls: []string{decl}, cmds: []string{"-D" + strings.TrimPrefix(jump, "-A"), "-X FLANNEL-POSTRTG"},
		drift: []string{"unexpected rule", "chain FLANNEL-POSTRTG exists"},
	}, {
		name: "not wanted, not there", saved: save("nat", builtin, kubeJump),
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var ch change
			masqChain.plan(parseSave(tc.saved)["nat"], tc.want, &ch)
			if !slices.Equal(ch.decls, tc.decls) || !slices.Equal(ch.cmds, tc.cmds) {
				t.Errorf("decls %q\ncmds %q\nwant decls %q\ncmds %q", ch.decls, ch.cmds, tc.decls, tc.cmds)
			}
			if len(ch.drift) != len(tc.drift) {
				t.Fatalf("drift %q, want %d entries like %q", ch.drift, len(tc.drift), tc.drift)
			}
			for i, d := range tc.drift {
				if !strings.HasPrefix(ch.drift[i], d) {
					t.Errorf("drift %d: %q, want it to start with %q", i, ch.drift[i], d)
				}
			}
		})
	}
}

func TestPreferLegacy(t *testing.T) {
	empty := save("filter", map[string]string{"FORWARD": "ACCEPT"})
	dockerDrop := save("filter", map[string]string{"FORWARD": "DROP"})
	rules := save("filter", map[string]string{"FORWARD": "ACCEPT", "KUBE-FORWARD": "-"},
		"-A FORWARD -j KUBE-FORWARD", "-A KUBE-FORWARD -j ACCEPT")
	hint := save("mangle", map[string]string{"KUBE-IPTABLES-HINT": "-"})
	for _, tc := range []struct {
		name, legacy, nft string
		want              bool
	}{
		{"nothing anywhere: nft", empty, empty, false},
		{"Docker's DROP policy in legacy", dockerDrop, empty, true},
		{"Docker's DROP policy in nft", empty, dockerDrop, false},
		{"more rules in legacy", rules, dockerDrop, true},
		{"kubelet's hint beats rules", hint, rules, true},
		{"kubelet's hint in nft", rules, hint, false},
	} {
		if got := preferLegacy(parseSave(tc.legacy), parseSave(tc.nft)); got != tc.want {
			t.Errorf("%s: legacy %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestAtLeast(t *testing.T) {
	for out, want := range map[string]bool{
		"iptables v1.8.9 (nf_tables)\n": true,
		"iptables v1.6.2":               true,
		"iptables v1.6.1":               false,
		"iptables v1.4.21":              false,
		"iptables v2.0":                 true,
		"iptables":                      false,
		"iptables vx.y.z":               false,
	} {
		if got := atLeast(out, 1, 6, 2); got != want {
			t.Errorf("%q: %v, want %v", out, got, want)
		}
	}
}

func TestFirstDiff(t *testing.T) {
	for _, tc := range []struct {
		got, want []string
		diff      string
	}{
		{[]string{"a"}, []string{"a"}, ""},
		{nil, nil, ""},
		{[]string{"a"}, []string{"a", "b"}, `x: line 2 is missing, want "b"`},
		{[]string{"a", "c"}, []string{"a"}, `x: unexpected line 2 "c"`},
		{[]string{"b"}, []string{"a"}, `x: line 1 is "b", want "a"`},
	} {
		if got := firstDiff("x", tc.got, tc.want); got != tc.diff {
			t.Errorf("%q vs %q: %q, want %q", tc.got, tc.want, got, tc.diff)
		}
	}
}

// TestMissingTools runs without any tool on PATH: the backend in use
// reports what it needs, removing rules of an absent tool is a no-op.
func TestMissingTools(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	fw := New()
	if err := fw.Remove(t.Context()); err != nil {
		t.Errorf("Remove without tools: %v", err)
	}
	for _, tc := range []struct {
		nft  bool
		want string
	}{{false, "iptables mode (EnableNFTables is false) needs the iptables tools"}, {true, "nftables mode (EnableNFTables is true) needs nft"}} {
		c := cfg
		c.NFTables = tc.nft
		for name, f := range map[string]func() error{
			"Ensure": func() error { return fw.Ensure(t.Context(), c) },
			"Check":  func() error { return fw.Check(t.Context(), c) },
		} {
			if err := f(); err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, errNoTool) {
				t.Errorf("%s (nft %v): %v, want %q", name, tc.nft, err, tc.want)
			}
		}
	}
}

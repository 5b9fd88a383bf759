package masq

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/weftnet/weft/test/testns"
)

var cfg = Config{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.1.0/24")}

// wantTable is how nft(8) must show DefaultTable for cfg.
const wantTable = `table ip weft {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		meta mark & 0x00004000 == 0x00004000 return
		ip saddr 10.244.1.0/24 ip daddr 10.244.0.0/16 return
		ip saddr 10.244.0.0/16 ip daddr 10.244.1.0/24 return
		ip saddr != 10.244.0.0/16 ip daddr 10.244.1.0/24 return
		ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random
		ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
		ip saddr 10.244.0.0/16 accept
		ip daddr 10.244.0.0/16 accept
	}
}
`

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{},
		{Network: netip.MustParsePrefix("fd00::/48"), Subnet: netip.MustParsePrefix("fd00:0:0:1::/64")},
		{Network: cfg.Network, Subnet: netip.MustParsePrefix("10.245.1.0/24")},
		{Network: cfg.Network, Subnet: netip.MustParsePrefix("10.0.0.0/8")},
	} {
		if err := Ensure(c); err == nil {
			t.Errorf("Ensure(%+v) succeeded", c)
		}
		if err := Check(c); err == nil {
			t.Errorf("Check(%+v) succeeded", c)
		}
	}
}

func TestEnsureCheckRemove(t *testing.T) {
	ns := testns.New(t, testns.Prefix(), "node")
	check := func() error { return ns.Do(func() error { return Check(cfg) }) }
	ensure := func() {
		t.Helper()
		if err := ns.Do(func() error { return Ensure(cfg) }); err != nil {
			t.Fatalf("Ensure: %v", err)
		}
		if err := check(); err != nil {
			t.Fatalf("Check after Ensure: %v", err)
		}
	}
	expectDrift := func(what, want string) {
		t.Helper()
		err := check()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Check after %s: %v, want an error containing %q", what, err, want)
		}
	}

	expectDrift("nothing", "table ip weft is missing")
	ensure()
	if got := ns.MustRun(t, "nft", "list", "table", "ip", "weft"); got != wantTable {
		t.Fatalf("nft list table ip weft:\n%s\nwant:\n%s", got, wantTable)
	}

	// A second Ensure changes nothing: same rule handles.
	before := ns.MustRun(t, "nft", "-a", "list", "table", "ip", "weft")
	ensure()
	if after := ns.MustRun(t, "nft", "-a", "list", "table", "ip", "weft"); after != before {
		t.Errorf("Ensure on correct rules replaced them:\n%s\nthen:\n%s", before, after)
	}

	// A deleted rule is detected and repaired.
	ns.MustRun(t, "nft", "delete", "rule", "ip", "weft", "postrouting", "handle", ruleHandle(t, ns, "postrouting", "ip saddr 10.244.0.0/16 ip daddr 10.244.1.0/24 return"))
	expectDrift("deleting a rule", "chain postrouting: rule 3 (ip saddr 10.244.0.0/16 ip daddr 10.244.1.0/24 return) is missing or changed")
	ensure()

	// So are an extra rule, a changed policy and a deleted chain.
	ns.MustRun(t, "nft", "add", "rule", "ip", "weft", "forward", "ip", "saddr", "192.0.2.0/24", "drop")
	expectDrift("adding a rule", "chain forward has 1 unexpected extra rules")
	ensure()
	ns.MustRun(t, "nft", "chain", "ip", "weft", "forward", "{ policy drop; }")
	expectDrift("changing the policy", "chain forward has the wrong type, hook, priority or policy")
	ensure()
	ns.MustRun(t, "nft", "delete", "chain", "ip", "weft", "forward")
	expectDrift("deleting a chain", "table ip weft has 1 chains, want 2")
	ensure()

	// A new subnet counts as drift and Ensure moves the rules to it.
	moved := Config{Network: cfg.Network, Subnet: netip.MustParsePrefix("10.244.7.0/24")}
	if err := ns.Do(func() error { return Check(moved) }); err == nil {
		t.Fatal("Check with another subnet succeeded")
	}
	if err := ns.Do(func() error { return Ensure(moved) }); err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(func() error { return Check(moved) }); err != nil {
		t.Fatalf("Check after moving: %v", err)
	}
	if got := ns.MustRun(t, "nft", "list", "table", "ip", "weft"); !strings.Contains(got, "ip saddr 10.244.7.0/24 ip daddr 10.244.0.0/16 return") {
		t.Errorf("rules not moved to 10.244.7.0/24:\n%s", got)
	}

	// Remove deletes the table and is happy when it is already gone.
	for i := 0; i < 2; i++ {
		if err := ns.Do(Remove); err != nil {
			t.Fatalf("Remove #%d: %v", i+1, err)
		}
	}
	if got := ns.MustRun(t, "nft", "list", "tables"); strings.Contains(got, "weft") {
		t.Errorf("table still there after Remove:\n%s", got)
	}
}

func TestTablesAreIndependent(t *testing.T) {
	ns := testns.New(t, testns.Prefix(), "node")
	other := Table("weft-other")
	err := ns.Do(func() error {
		if err := Ensure(cfg); err != nil {
			return err
		}
		if err := other.Ensure(cfg); err != nil {
			return err
		}
		if err := other.Check(cfg); err != nil {
			return err
		}
		return other.Remove()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(func() error { return Check(cfg) }); err != nil {
		t.Errorf("default table harmed by another table's Remove: %v", err)
	}
	if got := ns.MustRun(t, "nft", "list", "tables"); strings.Contains(got, "weft-other") {
		t.Errorf("table weft-other still there:\n%s", got)
	}
}

// ruleHandle finds the handle of the rule spelled text in chain.
func ruleHandle(t *testing.T, ns *testns.NS, chain, text string) string {
	t.Helper()
	out := ns.MustRun(t, "nft", "-a", "list", "chain", "ip", "weft", chain)
	m := regexp.MustCompile(regexp.QuoteMeta(text) + ` # handle (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("rule %q not found in:\n%s", text, out)
	}
	return m[1]
}

package firewall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// ipChain is one of flannel's iptables chains, with the rule of a built-in
// chain that jumps to it.
type ipChain struct {
	table, name, from, comment string
}

var (
	masqChain = ipChain{table: "nat", name: "FLANNEL-POSTRTG", from: "POSTROUTING", comment: "flanneld masq"}
	fwdChain  = ipChain{table: "filter", name: "FLANNEL-FWD", from: "FORWARD", comment: "flanneld forward"}
)

// jump is the rule that sends c.from's packets through c, appended to
// c.from as flannel appends it.
func (c ipChain) jump() string {
	return fmt.Sprintf(`-A %s -m comment --comment "%s" -j %s`, c.from, c.comment, c.name)
}

// spell is c's content for rules as iptables-save prints it.
func (c ipChain) spell(rules []rule) []string {
	var lines []string
	for _, r := range rules {
		lines = append(lines, r.iptables(c.name, c.comment))
	}
	return lines
}

// belongs reports whether line, a rule of chain, is part of c's set
// outside c itself: a jump to c from anywhere, or a rule of c.from with
// flannel's comment (flannel versions before its chains wrote their rules
// straight into POSTROUTING and FORWARD).
func (c ipChain) belongs(chain, line string) bool {
	if chain == c.name {
		return false
	}
	return strings.HasSuffix(line, " -j "+c.name) ||
		chain == c.from && strings.Contains(line, `--comment "`+c.comment+`"`)
}

// change is what iptables-restore must do to one table.
type change struct {
	// decls declare (create, or with --noflush flush) chains; cmds add
	// and delete rules and chains after them.
	decls, cmds []string
	// drift says what differs from the wanted rules.
	drift []string
}

// plan compares table t with want, the chain's lines (none: c must not
// exist), and adds to ch what makes them equal: c's exact content and one
// jump to it, kept where it is when it exists. Every other rule belonging
// with c is deleted, so flannel's left-overs never make a second set.
func (c ipChain) plan(t savedTable, want []string, ch *change) {
	kept := false
	for _, l := range t.lines {
		chain := chainOf(l)
		if !c.belongs(chain, l) {
			continue
		}
		if len(want) > 0 && !kept && l == c.jump() {
			kept = true
			continue
		}
		ch.cmds = append(ch.cmds, "-D"+strings.TrimPrefix(l, "-A"))
		ch.drift = append(ch.drift, fmt.Sprintf("unexpected rule %q", l))
	}
	if len(want) == 0 {
		if t.hasChain(c.name) {
			ch.decls = append(ch.decls, ":"+c.name+" - [0:0]")
			ch.cmds = append(ch.cmds, "-X "+c.name)
			ch.drift = append(ch.drift, fmt.Sprintf("chain %s exists", c.name))
		}
		return
	}
	d := fmt.Sprintf("chain %s is missing", c.name)
	if t.hasChain(c.name) {
		d = firstDiff("chain "+c.name, t.rulesOf(c.name), want)
	}
	if d != "" {
		ch.decls = append(ch.decls, ":"+c.name+" - [0:0]")
		ch.cmds = append(ch.cmds, want...)
		ch.drift = append(ch.drift, d)
	}
	if !kept {
		ch.cmds = append(ch.cmds, c.jump())
		ch.drift = append(ch.drift, fmt.Sprintf("no jump %q", c.jump()))
	}
}

// savedTable is one table of iptables-save's output.
type savedTable struct {
	// chains maps each chain to its policy ("-" for user chains).
	chains map[string]string
	// lines are the rules ("-A CHAIN ...") in order.
	lines []string
}

func (t savedTable) hasChain(name string) bool {
	_, ok := t.chains[name]
	return ok
}

// rulesOf returns chain's rules in order.
func (t savedTable) rulesOf(chain string) []string {
	var rules []string
	for _, l := range t.lines {
		if chainOf(l) == chain {
			rules = append(rules, l)
		}
	}
	return rules
}

// chainOf is the chain of a rule line "-A CHAIN ...".
func chainOf(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

// parseSave reads iptables-save's output into its tables.
func parseSave(out string) map[string]savedTable {
	tables := map[string]savedTable{}
	var name string
	var cur savedTable
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "*"):
			name, cur = line[1:], savedTable{chains: map[string]string{}}
		case name == "":
		case strings.HasPrefix(line, ":"):
			if f := strings.Fields(line[1:]); len(f) >= 2 {
				cur.chains[f[0]] = f[1]
			}
		case strings.HasPrefix(line, "-A "):
			cur.lines = append(cur.lines, line)
		case line == "COMMIT":
			tables[name] = cur
			name = ""
		}
	}
	return tables
}

// iptables is the node's iptables flavour.
type iptables struct {
	// flavour is the IPv4 tool ("iptables", "iptables-nft" or
	// "iptables-legacy"); the IPv6 tools are its ip6tables twins.
	flavour string
	// fullyRandom: MASQUERADE --random-fully is supported (iptables >= 1.6.2).
	fullyRandom bool
}

// tool is the name of the flavour's tool for family f with suffix, e.g.
// "ip6tables-nft-restore".
func (ipt *iptables) tool(f *family, suffix string) string {
	return f.tool + strings.TrimPrefix(ipt.flavour, "iptables") + suffix
}

// ensure makes the nat and filter tables of each family hold exactly c's
// chains (each family's rewritten in one iptables-restore transaction when
// it differs).
func (ipt *iptables) ensure(ctx context.Context, c Config) error {
	changes, err := ipt.plan(ctx, c)
	if err != nil {
		return err
	}
	scripts := map[*family]*strings.Builder{}
	for _, tc := range changes {
		if len(tc.decls)+len(tc.cmds) == 0 {
			continue
		}
		script := scripts[tc.family]
		if script == nil {
			script = &strings.Builder{}
			scripts[tc.family] = script
		}
		fmt.Fprintf(script, "*%s\n", tc.table)
		for _, l := range slices.Concat(tc.decls, tc.cmds) {
			script.WriteString(l + "\n")
		}
		script.WriteString("COMMIT\n")
	}
	for _, f := range families {
		script := scripts[f]
		if script == nil {
			continue
		}
		if _, err := run(ctx, script.String(), ipt.tool(f, "-restore"), "--noflush", "-w", "5"); err != nil {
			return fmt.Errorf("install %s rules: %w", f.tool, err)
		}
	}
	return nil
}

// check returns nil when the tables of each family hold exactly c's chains.
func (ipt *iptables) check(ctx context.Context, c Config) error {
	changes, err := ipt.plan(ctx, c)
	if err != nil {
		return err
	}
	var drift []string
	for _, tc := range changes {
		for _, d := range tc.drift {
			drift = append(drift, tc.family.tool+" "+tc.table+": "+d)
		}
	}
	if len(drift) > 0 {
		return errors.New(strings.Join(drift, "; "))
	}
	return nil
}

// tableChange is a change to one table of one family.
type tableChange struct {
	family *family
	table  string
	change
}

// plan reads the nat and filter tables of each family and returns the
// changes that make them hold c's chains. A family c does not run whose
// tables cannot be read (no ip6tables, a kernel without IPv6) holds
// nothing to remove: it is skipped.
func (ipt *iptables) plan(ctx context.Context, c Config) ([]tableChange, error) {
	var changes []tableChange
	for _, f := range families {
		masq, fwd := c.rules(f, false, ipt.fullyRandom)
		network, _ := c.of(f)
		for _, w := range []struct {
			chain ipChain
			rules []rule
		}{{masqChain, masq}, {fwdChain, fwd}} {
			out, err := run(ctx, "", ipt.tool(f, "-save"), "-t", w.chain.table)
			if err != nil && !network.IsValid() {
				slog.Debug("no rules to remove", "family", f.name, "table", w.chain.table, "reason", err)
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("read %s %s table: %w", f.tool, w.chain.table, err)
			}
			tc := tableChange{family: f, table: w.chain.table}
			w.chain.plan(parseSave(out)[w.chain.table], w.chain.spell(w.rules), &tc.change)
			changes = append(changes, tc)
		}
	}
	return changes, nil
}

// findIptables picks the iptables flavour that holds the node's rules, as
// Kubernetes' iptables-wrapper does: where both iptables-legacy and
// iptables-nft are installed, the one with kubelet's KUBE-IPTABLES-HINT
// chain, else the one with more rules (nft on a tie); else plain iptables.
func findIptables(ctx context.Context) (*iptables, error) {
	flavour := "iptables"
	_, errLegacy := exec.LookPath("iptables-legacy-save")
	_, errNFT := exec.LookPath("iptables-nft-save")
	if errLegacy == nil && errNFT == nil {
		legacy, errL := run(ctx, "", "iptables-legacy-save")
		nft, errN := run(ctx, "", "iptables-nft-save")
		flavour = "iptables-nft"
		if errN != nil || errL == nil && preferLegacy(parseSave(legacy), parseSave(nft)) {
			flavour = "iptables-legacy"
		}
	}
	ver, err := run(ctx, "", flavour, "--version")
	if err != nil {
		return nil, fmt.Errorf("iptables mode (EnableNFTables is false) needs the iptables tools: %w", err)
	}
	ipt := &iptables{flavour: flavour, fullyRandom: atLeast(ver, 1, 6, 2)}
	slog.Info("iptables tools", "save", ipt.tool(ipv4, "-save"), "restore", ipt.tool(ipv4, "-restore"), "random_fully", ipt.fullyRandom)
	return ipt, nil
}

// preferLegacy decides between the two flavours' rule sets.
func preferLegacy(legacy, nft map[string]savedTable) bool {
	const hint = "KUBE-IPTABLES-HINT"
	if l, n := hasChain(legacy, hint), hasChain(nft, hint); l != n {
		return l
	}
	return weight(legacy) > weight(nft)
}

func hasChain(tables map[string]savedTable, name string) bool {
	for _, t := range tables {
		if t.hasChain(name) {
			return true
		}
	}
	return false
}

// weight counts rules and built-in chains whose policy is not ACCEPT.
func weight(tables map[string]savedTable) int {
	n := 0
	for _, t := range tables {
		n += len(t.lines)
		for _, policy := range t.chains {
			if policy != "-" && policy != "ACCEPT" {
				n++
			}
		}
	}
	return n
}

// atLeast reports whether the version in `iptables --version` output
// ("iptables v1.8.9 (nf_tables)") is at least major.minor.patch.
func atLeast(out string, want ...int) bool {
	f := strings.Fields(out)
	if len(f) < 2 {
		return false
	}
	got := strings.Split(strings.TrimPrefix(f[1], "v"), ".")
	for i, w := range want {
		if i >= len(got) {
			return false
		}
		n, err := strconv.Atoi(got[i])
		if err != nil {
			return false
		}
		if n != w {
			return n > w
		}
	}
	return true
}

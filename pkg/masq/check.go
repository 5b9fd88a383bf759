package masq

import (
	"bytes"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// check compares the kernel's table with the desired chains: same chains
// (type, hook, priority, policy) and, in each, the same rules in order.
func (t Table) check(conn *nftables.Conn, want []chain) error {
	exists, err := t.exists(conn)
	if err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("nftables table ip %s is missing", t)
	}
	all, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Errorf("list nftables chains: %w", err)
	}
	got := map[string]*nftables.Chain{}
	for _, ch := range all {
		if ch.Table.Name == string(t) {
			got[ch.Name] = ch
		}
	}
	if len(got) != len(want) {
		return fmt.Errorf("table ip %s has %d chains, want %d", t, len(got), len(want))
	}
	for _, w := range want {
		g, ok := got[w.chain.Name]
		if !ok {
			return fmt.Errorf("table ip %s: chain %s is missing", t, w.chain.Name)
		}
		if !sameBase(g, w.chain) {
			return fmt.Errorf("table ip %s: chain %s has the wrong type, hook, priority or policy", t, w.chain.Name)
		}
		rules, err := conn.GetRules(t.nft(), g)
		if err != nil {
			return fmt.Errorf("list rules of chain %s: %w", w.chain.Name, err)
		}
		for i, r := range w.rules {
			if i >= len(rules) || !sameExprs(rules[i].Exprs, r.exprs) {
				return fmt.Errorf("table ip %s: chain %s: rule %d (%s) is missing or changed", t, w.chain.Name, i+1, r.text)
			}
		}
		if extra := len(rules) - len(w.rules); extra > 0 {
			return fmt.Errorf("table ip %s: chain %s has %d unexpected extra rules", t, w.chain.Name, extra)
		}
	}
	return nil
}

func sameBase(a, b *nftables.Chain) bool {
	return a.Type == b.Type && eqPtr(a.Hooknum, b.Hooknum) && eqPtr(a.Priority, b.Priority) && eqPtr(a.Policy, b.Policy)
}

func eqPtr[T comparable](a, b *T) bool {
	return a != nil && b != nil && *a == *b
}

// sameExprs compares expressions by their netlink encoding, which is what
// the kernel holds.
func sameExprs(got, want []expr.Any) bool {
	if len(got) != len(want) {
		return false
	}
	fam := byte(nftables.TableFamilyIPv4)
	for i := range want {
		g, err1 := expr.Marshal(fam, got[i])
		w, err2 := expr.Marshal(fam, want[i])
		if err1 != nil || err2 != nil || !bytes.Equal(g, w) {
			return false
		}
	}
	return true
}

package firewall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// nftTables are flannel's nftables tables (family and name), one per
// address family.
func nftTables() []string {
	var tables []string
	for _, f := range families {
		tables = append(tables, f.table)
	}
	return tables
}

// staleTables are nftables tables weft removes wherever it runs: its own of
// versions before it used flannel's names.
var staleTables = []string{"ip weft"}

// nftChain is one of flannel's base chains in a family's table.
type nftChain struct {
	name, comment, hook string
}

var (
	nftMasqChain = nftChain{name: "postrtg", comment: "chain to manage traffic masquerading by flannel",
		hook: "type nat hook postrouting priority srcnat; policy accept;"}
	nftFwdChain = nftChain{name: "forward", comment: "chain to accept flannel traffic",
		hook: "type filter hook forward priority filter; policy accept;"}
)

// nftText is family f's table holding c's chains as `nft list table`
// prints it (flannel creates postrtg before forward), or "" when c wants
// neither (flannel leaves an empty table; weft removes it). The text is
// also the nft script that creates it.
func nftText(c Config, f *family, fullyRandom bool) string {
	masq, fwd := c.rules(f, true, fullyRandom)
	var chains []string
	for _, w := range []struct {
		chain nftChain
		rules []rule
	}{{nftMasqChain, masq}, {nftFwdChain, fwd}} {
		if len(w.rules) == 0 {
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "\tchain %s {\n\t\tcomment %q\n\t\t%s\n", w.chain.name, w.chain.comment, w.chain.hook)
		for _, r := range w.rules {
			fmt.Fprintf(&b, "\t\t%s\n", r.nft())
		}
		b.WriteString("\t}\n")
		chains = append(chains, b.String())
	}
	if len(chains) == 0 {
		return ""
	}
	name := strings.Fields(f.table)[1]
	return fmt.Sprintf("table %s {\n\tcomment %q\n%s}\n", f.table, "rules for "+name, strings.Join(chains, "\n"))
}

// nftables is the node's nft tool.
type nftables struct {
	// fullyRandom: the kernel takes "masquerade fully-random".
	fullyRandom bool
	// listed maps a table text weft installed to how this nft lists it,
	// where the two differ (another nft version's spelling), so that the
	// listing is not mistaken for drift.
	listed map[string]string
}

// listing is how this nft lists the table text want.
func (nft *nftables) listing(want string) string {
	if l, ok := nft.listed[want]; ok {
		return l
	}
	return want
}

// fullyRandomProbe is a table with a fully random masquerade, which
// findNFTables checks (nft -c) without creating it.
const fullyRandomProbe = `table ip weft-probe {
	chain p {
		type nat hook postrouting priority srcnat; policy accept;
		masquerade fully-random
	}
}
`

// findNFTables checks that nft is installed and, as flannel does, whether
// the kernel takes fully random masquerade.
func findNFTables(ctx context.Context) (*nftables, error) {
	if _, err := run(ctx, "", "nft", "--version"); err != nil {
		return nil, fmt.Errorf("nftables mode (EnableNFTables is true) needs nft: %w", err)
	}
	_, err := run(ctx, fullyRandomProbe, "nft", "-c", "-f", "-")
	slog.Info("nftables tool", "fully_random", err == nil)
	return &nftables{fullyRandom: err == nil}, nil
}

// tables returns the nftables tables that exist ("ip weft", ...).
func (nft *nftables) tables(ctx context.Context) ([]string, error) {
	out, err := run(ctx, "", "nft", "list", "tables")
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	var tables []string
	for line := range strings.Lines(out) {
		if t, ok := strings.CutPrefix(strings.TrimSpace(line), "table "); ok {
			tables = append(tables, t)
		}
	}
	return tables, nil
}

// current returns table as nft lists it, "" when it does not exist.
func (nft *nftables) current(ctx context.Context, table string) (string, error) {
	tables, err := nft.tables(ctx)
	if err != nil || !slices.Contains(tables, table) {
		return "", err
	}
	out, err := run(ctx, "", "nft", append([]string{"list", "table"}, strings.Fields(table)...)...)
	if err != nil {
		return "", fmt.Errorf("list nftables table %s: %w", table, err)
	}
	return out, nil
}

// diff reads family f's table as nft lists it (got) and spells c's table
// (want); d says how they differ, "" when the table holds c's chains.
func (nft *nftables) diff(ctx context.Context, c Config, f *family) (got, want, d string, err error) {
	got, err = nft.current(ctx, f.table)
	if err != nil {
		return "", "", "", err
	}
	want = nftText(c, f, nft.fullyRandom)
	if got != want && got != nft.listing(want) {
		d = firstDiff("nftables table "+f.table, lines(got), lines(nft.listing(want)))
	}
	return got, want, d, nil
}

// ensure makes each family's table hold exactly c's chains: a table that
// differs is deleted and created again in one nft transaction.
func (nft *nftables) ensure(ctx context.Context, c Config) error {
	for _, f := range families {
		if err := nft.ensureTable(ctx, c, f); err != nil {
			return err
		}
	}
	return nil
}

// ensureTable is ensure for family f's table.
func (nft *nftables) ensureTable(ctx context.Context, c Config, f *family) error {
	got, want, d, err := nft.diff(ctx, c, f)
	if err != nil || d == "" {
		return err
	}
	script := want
	if got != "" {
		script = "delete table " + f.table + "\n" + want
	}
	if _, err := run(ctx, script, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("install nftables table %s: %w", f.table, err)
	}
	after, err := nft.current(ctx, f.table)
	if err != nil {
		return err
	}
	if after != want {
		slog.Warn("nft lists the installed table differently from weft's spelling; later checks compare with this listing",
			"table", f.table, "difference", firstDiff("nftables table "+f.table, lines(after), lines(want)))
		if nft.listed == nil {
			nft.listed = map[string]string{}
		}
		nft.listed[want] = after
	}
	return nil
}

// check returns nil when each family's table holds exactly c's chains.
func (nft *nftables) check(ctx context.Context, c Config) error {
	var drift []string
	for _, f := range families {
		_, _, d, err := nft.diff(ctx, c, f)
		if err != nil {
			return err
		}
		if d != "" {
			drift = append(drift, d)
		}
	}
	if len(drift) > 0 {
		return errors.New(strings.Join(drift, "; "))
	}
	return nil
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// deleteTables deletes those of tables that exist, in one transaction.
func (nft *nftables) deleteTables(ctx context.Context, tables ...string) error {
	have, err := nft.tables(ctx)
	if err != nil {
		return err
	}
	var script strings.Builder
	for _, t := range tables {
		if slices.Contains(have, t) {
			script.WriteString("delete table " + t + "\n")
		}
	}
	if script.Len() == 0 {
		return nil
	}
	if _, err := run(ctx, script.String(), "nft", "-f", "-"); err != nil {
		return fmt.Errorf("delete nftables tables: %w", err)
	}
	return nil
}

// Package masq installs flannel's IP masquerade rules (--ip-masq) with
// nftables, in a table of weft's own (family ip, default name "weft") so it
// never edits anyone else's rules. Every call works in the calling thread's
// network namespace.
package masq

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
)

// Config is what the rules depend on.
type Config struct {
	// Network is the cluster's pod CIDR, Subnet this node's pod subnet.
	Network, Subnet netip.Prefix
}

// Table is the name of an nftables table of family ip that holds the
// masquerade rules. weftd uses DefaultTable; another name lets two setups
// share a namespace.
type Table string

// DefaultTable is the table Ensure, Check and Remove use.
const DefaultTable Table = "weft"

// Ensure makes DefaultTable hold exactly the rules for c.
func Ensure(c Config) error { return DefaultTable.Ensure(c) }

// Check reports whether DefaultTable holds exactly the rules for c.
func Check(c Config) error { return DefaultTable.Check(c) }

// Remove deletes DefaultTable.
func Remove() error { return DefaultTable.Remove() }

func (t Table) nft() *nftables.Table {
	return &nftables.Table{Name: string(t), Family: nftables.TableFamilyIPv4}
}

// dial opens a netlink connection in the calling thread's network namespace
// (the socket is created on this thread).
func dial() (*nftables.Conn, error) {
	conn, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink socket: %w", err)
	}
	return conn, nil
}

// Ensure makes the table hold exactly the rules for c: nothing happens when
// it already does, else the whole table is replaced in one atomic nftables
// transaction (there is never a moment without rules).
func (t Table) Ensure(c Config) error {
	chains, err := ruleset(t.nft(), c)
	if err != nil {
		return err
	}
	conn, err := dial()
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	if t.check(conn, chains) == nil {
		return nil
	}
	tbl := t.nft()
	// add (a no-op when it exists), delete, add: replaces or creates.
	conn.AddTable(tbl)
	conn.DelTable(tbl)
	conn.AddTable(tbl)
	for _, ch := range chains {
		conn.AddChain(ch.chain)
		for _, r := range ch.rules {
			conn.AddRule(&nftables.Rule{Table: tbl, Chain: ch.chain, Exprs: r.exprs})
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("install nftables table ip %s: %w", t, err)
	}
	return nil
}

// Check returns nil when the table holds exactly the rules for c, else an
// error that says what differs (for /readyz and drift repair).
func (t Table) Check(c Config) error {
	chains, err := ruleset(t.nft(), c)
	if err != nil {
		return err
	}
	conn, err := dial()
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	return t.check(conn, chains)
}

// Remove deletes the table; a missing table is not an error.
func (t Table) Remove() error {
	conn, err := dial()
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	exists, err := t.exists(conn)
	if err != nil || !exists {
		return err
	}
	conn.DelTable(t.nft())
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("delete nftables table ip %s: %w", t, err)
	}
	return nil
}

func (t Table) exists(conn *nftables.Conn) (bool, error) {
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, fmt.Errorf("list nftables tables: %w", err)
	}
	for _, tb := range tables {
		if tb.Name == string(t) {
			return true, nil
		}
	}
	return false, nil
}

package ebpf

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// trackingTable is the nftables table (family inet: IPv4 and IPv6) that
// keeps connection tracking on in the node's network namespace. The kernel tracks
// connections in a namespace only while some rule uses them (kube-proxy,
// masquerade and most firewalls do, a bare node does not), and the fast
// path carries only flows conntrack has established: without tracking,
// every pod flow would stay on the kernel path. Its one rule counts packets
// conntrack calls invalid; it decides nothing.
const trackingTable = "weft-conntrack"

// legacyTracking is the table of weft versions that carried IPv4 only
// (family ip); it is replaced.
var legacyTracking = &nftables.Table{Family: nftables.TableFamilyIPv4, Name: trackingTable}

func trackingNFT() (*nftables.Table, *nftables.Chain) {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: trackingTable}
	return t, &nftables.Chain{
		Name: "track", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityFilter,
	}
}

// ensureTracking creates or replaces trackingTable in the calling thread's
// network namespace.
func ensureTracking() error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open nftables netlink socket: %w", err)
	}
	t, ch := trackingNFT()
	// Each add before a delete makes the delete work on a missing table.
	conn.AddTable(legacyTracking)
	conn.DelTable(legacyTracking)
	conn.AddTable(t)
	conn.DelTable(t) // with the add after it: a replace
	conn.AddTable(t)
	conn.AddChain(ch)
	conn.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitINVALID), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		&expr.Counter{},
	}})
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("install nftables table inet %s (keeps connection tracking on for the fast path): %w", trackingTable, err)
	}
	return nil
}

// removeTracking deletes trackingTable (and the legacy one) from the
// calling thread's network namespace; a missing table is no error.
func removeTracking() error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open nftables netlink socket: %w", err)
	}
	t, _ := trackingNFT()
	for _, table := range []*nftables.Table{legacyTracking, t} {
		conn.AddTable(table) // so that the delete works on a missing table
		conn.DelTable(table)
	}
	if err := conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove nftables table inet %s: %w", trackingTable, err)
	}
	return nil
}

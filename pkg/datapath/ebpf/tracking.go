package ebpf

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// trackingTable is the nftables table (family ip) that keeps connection
// tracking on in the node's network namespace. The kernel tracks
// connections in a namespace only while some rule uses them (kube-proxy,
// masquerade and most firewalls do, a bare node does not), and the fast
// path carries only flows conntrack has established: without tracking,
// every pod flow would stay on the kernel path. Its one rule counts packets
// conntrack calls invalid; it decides nothing.
const trackingTable = "weft-conntrack"

func trackingNFT() (*nftables.Table, *nftables.Chain) {
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: trackingTable}
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
	conn.AddTable(t)
	conn.DelTable(t) // with the add before it: a replace that works on a missing table too
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
		return fmt.Errorf("install nftables table ip %s (keeps connection tracking on for the fast path): %w", trackingTable, err)
	}
	return nil
}

// removeTracking deletes trackingTable from the calling thread's network
// namespace; a missing table is no error.
func removeTracking() error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open nftables netlink socket: %w", err)
	}
	t, _ := trackingNFT()
	conn.DelTable(t)
	if err := conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove nftables table ip %s: %w", trackingTable, err)
	}
	return nil
}

// Package conntrack marks the kernel's conntrack entries liberal through
// ctnetlink, and reads entries back.
//
// A TCP entry whose both directions carry FlagBeLiberal is exempt from
// conntrack's window tracking: packets of the flow stay valid (and FIN/RST
// still close the entry) although conntrack stops seeing the middle of the
// flow, which is what the eBPF fast path needs once it forwards that middle
// itself. netfilter's flowtable offload sets the same flags when it offloads a
// flow.
package conntrack

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// FlagBeLiberal is IP_CT_TCP_FLAG_BE_LIBERAL, the TCP flag of a direction of
// an entry that turns off window checks for it.
const FlagBeLiberal uint8 = 0x08

// TCPEstablished is TCP_CONNTRACK_ESTABLISHED, Entry.TCPState of an
// established TCP connection.
const TCPEstablished uint8 = 3

// ErrNotFound is returned (wrapped) when the table holds no entry for a tuple.
var ErrNotFound = errors.New("no conntrack entry")

// ctnetlink message types (enum cntl_msg_types).
const (
	msgNew = 0 // IPCTNL_MSG_CT_NEW
	msgGet = 1 // IPCTNL_MSG_CT_GET
)

// Conn is a ctnetlink socket in one network namespace; it works on that
// namespace's conntrack table (default zone). It is safe for concurrent use.
type Conn struct {
	nl *netlink.Conn
}

// Open opens a ctnetlink socket in the network namespace ns (the handle is
// only used here: the caller may close it afterwards). Needs CAP_NET_ADMIN in
// ns, and CAP_SYS_ADMIN to enter it.
func Open(ns netns.NsHandle) (*Conn, error) {
	if !ns.IsOpen() {
		return nil, errors.New("open ctnetlink socket: network namespace handle is closed")
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(ns)})
	if err != nil {
		return nil, fmt.Errorf("open ctnetlink socket in %s: %w", ns, err)
	}
	return &Conn{nl: c}, nil
}

// Close closes the socket.
func (c *Conn) Close() error { return c.nl.Close() }

// MarkLiberal sets FlagBeLiberal in both directions of the TCP entry that t
// (the tuple of either direction) belongs to, leaving its other flags, state,
// status and timeout alone. It never creates an entry: a missing one is
// ErrNotFound.
func (c *Conn) MarkLiberal(t Tuple) error {
	if t.Proto != unix.IPPROTO_TCP {
		return fmt.Errorf("mark conntrack entry %s liberal: only TCP entries have window tracking", t)
	}
	_, err := c.request(msgNew, t, encodeLiberal)
	if err != nil {
		return fmt.Errorf("mark conntrack entry %s liberal: %w", t, err)
	}
	return nil
}

// Get returns the entry that t (the tuple of either direction) belongs to, or
// ErrNotFound.
func (c *Conn) Get(t Tuple) (Entry, error) {
	msgs, err := c.request(msgGet, t, nil)
	if err != nil {
		return Entry{}, fmt.Errorf("get conntrack entry %s: %w", t, err)
	}
	for _, m := range msgs {
		if m.Header.Type == msgType(msgNew) { // the kernel sends entries as NEW
			e, err := decodeEntry(m.Data)
			if err != nil {
				return Entry{}, fmt.Errorf("get conntrack entry %s: %w", t, err)
			}
			return e, nil
		}
	}
	return Entry{}, fmt.Errorf("get conntrack entry %s: the kernel's answer holds no entry", t)
}

// request sends a ctnetlink message of type typ for the entry of t, with the
// attributes extra adds after the tuple, and returns the answer. The ACK flag
// also ends the GET answer, which comes flagged multi-part without a DONE.
// Without NLM_F_CREATE the kernel never creates an entry.
func (c *Conn) request(typ netlink.HeaderType, t Tuple, extra func(*netlink.AttributeEncoder)) ([]netlink.Message, error) {
	t = t.unmap()
	family, err := t.family()
	if err != nil {
		return nil, err
	}
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian   // ctnetlink integers are in network order
	encodeTuple(ae, attrTupleOrig, t) // the kernel looks it up in both directions
	if extra != nil {
		extra(ae)
	}
	attrs, err := ae.Encode()
	if err != nil {
		return nil, fmt.Errorf("encode ctnetlink attributes: %w", err)
	}
	// struct nfgenmsg: family, NFNETLINK_V0, res_id 0.
	data := append([]byte{family, unix.NFNETLINK_V0, 0, 0}, attrs...)
	msgs, err := c.nl.Execute(netlink.Message{
		Header: netlink.Header{Type: msgType(typ), Flags: netlink.Request | netlink.Acknowledge},
		Data:   data,
	})
	if errors.Is(err, unix.ENOENT) {
		return nil, ErrNotFound
	}
	return msgs, err
}

// msgType is the netlink message type of ctnetlink message typ.
func msgType(typ netlink.HeaderType) netlink.HeaderType {
	return unix.NFNL_SUBSYS_CTNETLINK<<8 | typ
}

package conntrack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ctnetlink attribute types (include/uapi/linux/netfilter/nfnetlink_conntrack.h).
const (
	attrTupleOrig  = 1 // CTA_TUPLE_ORIG
	attrTupleReply = 2 // CTA_TUPLE_REPLY
	attrStatus     = 3 // CTA_STATUS
	attrProtoinfo  = 4 // CTA_PROTOINFO

	attrTupleIP    = 1 // CTA_TUPLE_IP
	attrTupleProto = 2 // CTA_TUPLE_PROTO

	attrIPv4Src = 1 // CTA_IP_V4_SRC
	attrIPv4Dst = 2 // CTA_IP_V4_DST
	attrIPv6Src = 3 // CTA_IP_V6_SRC
	attrIPv6Dst = 4 // CTA_IP_V6_DST

	attrProtoNum     = 1 // CTA_PROTO_NUM
	attrProtoSrcPort = 2 // CTA_PROTO_SRC_PORT
	attrProtoDstPort = 3 // CTA_PROTO_DST_PORT

	attrProtoinfoTCP = 1 // CTA_PROTOINFO_TCP

	attrTCPState      = 1 // CTA_PROTOINFO_TCP_STATE
	attrTCPFlagsOrig  = 4 // CTA_PROTOINFO_TCP_FLAGS_ORIGINAL
	attrTCPFlagsReply = 5 // CTA_PROTOINFO_TCP_FLAGS_REPLY
)

// Tuple is one direction of a flow as conntrack keys it: addresses and ports
// (both IPv4 or both IPv6; IPv4-mapped IPv6 addresses count as IPv4) and the
// IP protocol (unix.IPPROTO_TCP, ...).
type Tuple struct {
	Src, Dst netip.AddrPort
	Proto    uint8
}

// String formats t as "tcp 10.0.0.1:40000->10.0.0.2:80".
func (t Tuple) String() string {
	var proto string
	switch t.Proto {
	case unix.IPPROTO_TCP:
		proto = "tcp"
	case unix.IPPROTO_UDP:
		proto = "udp"
	default:
		proto = fmt.Sprintf("proto %d", t.Proto)
	}
	return fmt.Sprintf("%s %s->%s", proto, t.Src, t.Dst)
}

// unmap returns t with IPv4-mapped IPv6 addresses made IPv4 (what Go's
// net.TCPAddr often holds for an IPv4 flow).
func (t Tuple) unmap() Tuple {
	t.Src = netip.AddrPortFrom(t.Src.Addr().Unmap(), t.Src.Port())
	t.Dst = netip.AddrPortFrom(t.Dst.Addr().Unmap(), t.Dst.Port())
	return t
}

// family returns the address family of t (unmapped), or an error for a tuple
// conntrack cannot hold.
func (t Tuple) family() (uint8, error) {
	src, dst := t.Src.Addr(), t.Dst.Addr()
	switch {
	case !src.IsValid() || !dst.IsValid():
		return 0, errors.New("tuple needs a source and a destination address")
	case src.Is4() && dst.Is4():
		return unix.AF_INET, nil
	case src.Is6() && dst.Is6():
		return unix.AF_INET6, nil
	}
	return 0, errors.New("tuple mixes IPv4 and IPv6")
}

// Entry is a conntrack entry as ctnetlink reports it.
type Entry struct {
	// Orig is the tuple of the original direction (the flow's first packet),
	// Reply that of the reply direction (differs from Orig reversed when the
	// flow is NATed).
	Orig, Reply Tuple
	// Status holds the entry's IPS_* bits (confirmed, assured, NAT, ...).
	Status uint32
	// TCPState is conntrack's TCP state (TCPEstablished, ...); 0 for other
	// protocols.
	TCPState uint8
	// TCPFlags holds the IP_CT_TCP_FLAG_* bits of the original [0] and reply
	// [1] directions; 0 for other protocols.
	TCPFlags [2]uint8
}

// Liberal reports whether both directions of e carry FlagBeLiberal.
func (e Entry) Liberal() bool {
	return e.TCPFlags[0]&FlagBeLiberal != 0 && e.TCPFlags[1]&FlagBeLiberal != 0
}

// encodeTuple adds t as the nested attribute typ (CTA_TUPLE_ORIG or _REPLY).
// t is unmapped and its family was checked.
func encodeTuple(ae *netlink.AttributeEncoder, typ uint16, t Tuple) {
	src, dst := uint16(attrIPv4Src), uint16(attrIPv4Dst)
	if t.Src.Addr().Is6() {
		src, dst = attrIPv6Src, attrIPv6Dst
	}
	ae.Nested(typ, func(ae *netlink.AttributeEncoder) error {
		ae.Nested(attrTupleIP, func(ae *netlink.AttributeEncoder) error {
			ae.Bytes(src, t.Src.Addr().AsSlice())
			ae.Bytes(dst, t.Dst.Addr().AsSlice())
			return nil
		})
		ae.Nested(attrTupleProto, func(ae *netlink.AttributeEncoder) error {
			ae.Uint8(attrProtoNum, t.Proto)
			ae.Uint16(attrProtoSrcPort, t.Src.Port())
			ae.Uint16(attrProtoDstPort, t.Dst.Port())
			return nil
		})
		return nil
	})
}

// encodeLiberal adds CTA_PROTOINFO that sets FlagBeLiberal (struct
// nf_ct_tcp_flags{flags, mask}: only the masked bits change) in both
// directions. Without CTA_PROTOINFO_TCP_STATE the kernel keeps the state.
func encodeLiberal(ae *netlink.AttributeEncoder) {
	ae.Nested(attrProtoinfo, func(ae *netlink.AttributeEncoder) error {
		ae.Nested(attrProtoinfoTCP, func(ae *netlink.AttributeEncoder) error {
			ae.Bytes(attrTCPFlagsOrig, []byte{FlagBeLiberal, FlagBeLiberal})
			ae.Bytes(attrTCPFlagsReply, []byte{FlagBeLiberal, FlagBeLiberal})
			return nil
		})
		return nil
	})
}

// decodeEntry parses a ctnetlink entry message (nfgenmsg and attributes).
func decodeEntry(b []byte) (Entry, error) {
	if len(b) < 4 {
		return Entry{}, fmt.Errorf("ctnetlink message of %d bytes has no nfgenmsg", len(b))
	}
	ad, err := netlink.NewAttributeDecoder(b[4:])
	if err != nil {
		return Entry{}, fmt.Errorf("decode ctnetlink entry: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	var e Entry
	for ad.Next() {
		switch ad.Type() {
		case attrTupleOrig:
			ad.Nested(decodeTuple(&e.Orig))
		case attrTupleReply:
			ad.Nested(decodeTuple(&e.Reply))
		case attrStatus:
			e.Status = ad.Uint32()
		case attrProtoinfo:
			ad.Nested(func(ad *netlink.AttributeDecoder) error {
				for ad.Next() {
					if ad.Type() == attrProtoinfoTCP {
						ad.Nested(decodeTCP(&e))
					}
				}
				return nil
			})
		}
	}
	if err := ad.Err(); err != nil {
		return Entry{}, fmt.Errorf("decode ctnetlink entry: %w", err)
	}
	return e, nil
}

// decodeTuple returns a decoder of a CTA_TUPLE_* attribute into t.
func decodeTuple(t *Tuple) func(*netlink.AttributeDecoder) error {
	return func(ad *netlink.AttributeDecoder) error {
		var src, dst netip.Addr
		var sport, dport uint16
		for ad.Next() {
			switch ad.Type() {
			case attrTupleIP:
				ad.Nested(func(ad *netlink.AttributeDecoder) error {
					for ad.Next() {
						switch ad.Type() {
						case attrIPv4Src, attrIPv6Src:
							src, _ = netip.AddrFromSlice(ad.Bytes())
						case attrIPv4Dst, attrIPv6Dst:
							dst, _ = netip.AddrFromSlice(ad.Bytes())
						}
					}
					return nil
				})
			case attrTupleProto:
				ad.Nested(func(ad *netlink.AttributeDecoder) error {
					for ad.Next() {
						switch ad.Type() {
						case attrProtoNum:
							t.Proto = ad.Uint8()
						case attrProtoSrcPort:
							sport = ad.Uint16()
						case attrProtoDstPort:
							dport = ad.Uint16()
						}
					}
					return nil
				})
			}
		}
		t.Src, t.Dst = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
		return nil
	}
}

// decodeTCP returns a decoder of CTA_PROTOINFO_TCP into e.
func decodeTCP(e *Entry) func(*netlink.AttributeDecoder) error {
	return func(ad *netlink.AttributeDecoder) error {
		for ad.Next() {
			switch ad.Type() {
			case attrTCPState:
				e.TCPState = ad.Uint8()
			case attrTCPFlagsOrig, attrTCPFlagsReply:
				b := ad.Bytes()
				if len(b) != 2 {
					return fmt.Errorf("TCP flags attribute of %d bytes, want 2", len(b))
				}
				e.TCPFlags[ad.Type()-attrTCPFlagsOrig] = b[0]
			}
		}
		return nil
	}
}

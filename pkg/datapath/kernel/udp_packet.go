package kernel

import (
	"encoding/binary"
	"net/netip"
)

// IPv4 header fields the udp forwarding loop reads and writes.
const (
	ipv4MinHeader = 20
	ipv4TTL       = 8
	ipv4Proto     = 9
	ipv4Checksum  = 10
	protoICMP     = 1
	// icmpTTL is the TTL of the ICMP errors the loop sends.
	icmpTTL = 64
)

// ipv4Header returns the header length of pkt if pkt is exactly one IPv4
// packet: version 4, a header of at least 20 bytes inside pkt, and a total
// length equal to len(pkt). It returns 0 otherwise.
func ipv4Header(pkt []byte) int {
	if len(pkt) < ipv4MinHeader || pkt[0]>>4 != 4 {
		return 0
	}
	hl := int(pkt[0]&0x0f) * 4
	if hl < ipv4MinHeader || hl > len(pkt) || int(binary.BigEndian.Uint16(pkt[2:4])) != len(pkt) {
		return 0
	}
	return hl
}

// srcAddr and dstAddr are the source and destination of IPv4 header pkt.
func srcAddr(pkt []byte) netip.Addr { return netip.AddrFrom4([4]byte(pkt[12:16])) }
func dstAddr(pkt []byte) netip.Addr { return netip.AddrFrom4([4]byte(pkt[16:20])) }

// decTTL decrements the TTL of IPv4 header pkt and patches its checksum
// incrementally (RFC 1624). It returns false, leaving pkt unchanged, when
// the TTL would reach 0: the packet must be dropped.
func decTTL(pkt []byte) bool {
	if pkt[ipv4TTL] <= 1 {
		return false
	}
	old := binary.BigEndian.Uint16(pkt[ipv4TTL:])
	pkt[ipv4TTL]--
	sum := uint32(^binary.BigEndian.Uint16(pkt[ipv4Checksum:])) + uint32(^old) + uint32(old-0x100)
	binary.BigEndian.PutUint16(pkt[ipv4Checksum:], ^fold(sum))
	return true
}

// checksum is the Internet checksum (RFC 1071) of b.
func checksum(b []byte) uint16 { return ^fold(sum16(b, 0)) }

// sum16 adds the 16-bit words of b (a last odd byte padded with zero) to
// sum, unfolded: b of up to 64 KiB cannot overflow it.
func sum16(b []byte, sum uint32) uint32 {
	for ; len(b) >= 2; b = b[2:] {
		sum += uint32(binary.BigEndian.Uint16(b))
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

// fold adds the carries of a one's complement sum back into 16 bits.
func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// netUnreachable builds into buf (at least 576 bytes) the ICMP "destination
// net unreachable" error from src for IPv4 packet pkt (header length hl),
// carrying pkt's header and first 8 bytes of data, and returns it. It
// returns nil when no error may be sent (RFC 1812 4.3.2.7): for fragments
// other than the first and ICMP messages other than queries (flanneld sends
// none for any ICMP; weft answers pings, so they say why they fail).
func netUnreachable(buf, pkt []byte, hl int, src netip.Addr) []byte {
	if binary.BigEndian.Uint16(pkt[6:8])&0x1fff != 0 {
		return nil
	}
	if pkt[ipv4Proto] == protoICMP && (len(pkt) == hl || !icmpQuery(pkt[hl])) {
		return nil
	}
	quote := pkt[:min(len(pkt), hl+8)]
	n := ipv4MinHeader + 8 + len(quote)
	out := buf[:n]
	clear(out[:ipv4MinHeader+8])
	out[0] = 0x45
	binary.BigEndian.PutUint16(out[2:], uint16(n))
	out[ipv4TTL] = icmpTTL
	out[ipv4Proto] = protoICMP
	s := src.As4()
	copy(out[12:16], s[:])
	copy(out[16:20], pkt[12:16])
	binary.BigEndian.PutUint16(out[ipv4Checksum:], checksum(out[:ipv4MinHeader]))
	icmp := out[ipv4MinHeader:]
	icmp[0], icmp[1] = 3, 0 // destination unreachable, net unreachable
	copy(icmp[8:], quote)
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	return out
}

// icmpQuery reports whether ICMP type typ is a query or its reply (echo,
// timestamp, information, address mask), not an error.
func icmpQuery(typ byte) bool {
	switch typ {
	case 0, 8, 13, 14, 15, 16, 17, 18:
		return true
	}
	return false
}

package ebpf

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// Frames for the BPF_PROG_TEST_RUN tests.

const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	protoICMP     = 1
	protoTCP      = 6
	protoUDP      = 17
	protoICMPv6   = 58
)

// TCP header flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// ipPacket describes an IPv4 or (src IPv6) IPv6 packet with an ICMP, TCP or
// UDP header.
type ipPacket struct {
	src, dst     netip.Addr
	proto        uint8
	ttl          uint8
	sport, dport uint16
	// flags are the TCP header's flags (tcpACK, ...).
	flags   uint8
	payload []byte
}

// etherType is the Ethernet type of p's family.
func (p ipPacket) etherType() uint16 {
	if p.src.Is6() {
		return etherTypeIPv6
	}
	return etherTypeIPv4
}

// bytes encodes p (ICMP echo request with ID 1 and sequence 1, TCP or UDP
// header, then payload). IPv6 packets get a valid TCP or UDP checksum.
func (p ipPacket) bytes() []byte {
	var l4 []byte
	switch p.proto {
	case protoTCP:
		l4 = make([]byte, 20)
		binary.BigEndian.PutUint16(l4[0:], p.sport)
		binary.BigEndian.PutUint16(l4[2:], p.dport)
		l4[12], l4[13] = 5<<4, p.flags
	case protoUDP:
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4[0:], p.sport)
		binary.BigEndian.PutUint16(l4[2:], p.dport)
		binary.BigEndian.PutUint16(l4[4:], uint16(8+len(p.payload)))
	default:
		l4 = []byte{8, 0, 0, 0, 0, 1, 0, 1}
	}
	l4 = append(l4, p.payload...)
	if p.proto == protoICMP {
		binary.BigEndian.PutUint16(l4[2:], ipChecksum(l4))
	}
	ttl := p.ttl
	if ttl == 0 {
		ttl = 64
	}
	if p.src.Is6() {
		return ipv6Header(p.src, p.dst, p.proto, ttl, l4)
	}
	b := make([]byte, 20, 20+len(l4))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(20+len(l4)))
	b[8], b[9] = ttl, p.proto
	src, dst := p.src.As4(), p.dst.As4()
	copy(b[12:], src[:])
	copy(b[16:], dst[:])
	binary.BigEndian.PutUint16(b[10:], ipChecksum(b))
	return append(b, l4...)
}

// ipv6Header puts an IPv6 header from src to dst (next header proto, hop
// limit hops) before the L4 segment l4, whose TCP or UDP checksum it fills
// in.
func ipv6Header(src, dst netip.Addr, proto, hops uint8, l4 []byte) []byte {
	b := make([]byte, 40, 40+len(l4))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(l4)))
	b[6], b[7] = proto, hops
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	b = append(b, l4...)
	if off := l4CsumOff(proto); off > 0 {
		binary.BigEndian.PutUint16(b[40+off:], 0)
		sum := l6Checksum(b)
		if sum == 0 && proto == protoUDP {
			sum = 0xffff
		}
		binary.BigEndian.PutUint16(b[40+off:], sum)
	}
	return b
}

// l4CsumOff is where TCP's or UDP's checksum is in its header; 0 for
// others.
func l4CsumOff(proto uint8) int {
	switch proto {
	case protoTCP:
		return 16
	case protoUDP:
		return 6
	}
	return 0
}

// l6Checksum is the checksum over the IPv6 packet b's L4 segment (right
// after its header) and pseudo header, checksum field included: 0 when the
// field is right.
func l6Checksum(b []byte) uint16 {
	seg := b[40:]
	pseudo := make([]byte, 40, 40+len(seg))
	copy(pseudo, b[8:40])
	binary.BigEndian.PutUint32(pseudo[32:], uint32(len(seg)))
	pseudo[39] = b[6]
	return ipChecksum(append(pseudo, seg...))
}

// l4Checksum is the TCP or UDP checksum over the IPv4 packet b's segment
// and pseudo header, its checksum field included: 0 when the field is right.
func l4Checksum(b []byte) uint16 {
	hlen := int(b[0]&0xf) * 4
	seg := b[hlen:]
	pseudo := make([]byte, 12, 12+len(seg))
	copy(pseudo[0:8], b[12:20])
	pseudo[9] = b[9]
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(seg)))
	return ipChecksum(append(pseudo, seg...))
}

// withChecksum encodes p with its TCP or UDP checksum filled in.
func withChecksum(p ipPacket) []byte {
	b := p.bytes()
	off := 20 + 16 // TCP
	if p.proto == protoUDP {
		off = 20 + 6
	}
	binary.BigEndian.PutUint16(b[off:], l4Checksum(b))
	return b
}

// ipChecksum is the Internet checksum of h (an IPv4 header, an ICMP message).
func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	if len(h)%2 == 1 {
		sum += uint32(h[len(h)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// ethernet frames payload.
func ethernet(dst, src net.HardwareAddr, etherType uint16, payload []byte) []byte {
	b := make([]byte, 14, 14+len(payload))
	copy(b[0:], dst)
	copy(b[6:], src)
	binary.BigEndian.PutUint16(b[12:], etherType)
	return append(b, payload...)
}

// vxlanPacket wraps the Ethernet frame inner in outer IPv4 or (src IPv6)
// IPv6, UDP and VXLAN headers as flannel's kernel vxlan devices send them
// (without the outer Ethernet; over IPv6 with a UDP checksum).
func vxlanPacket(src, dst netip.Addr, port uint16, vni uint32, inner []byte) []byte {
	vxlan := make([]byte, 8, 8+len(inner))
	vxlan[0] = 0x08
	binary.BigEndian.PutUint32(vxlan[4:], vni<<8)
	if src.Is6() {
		return ipPacket{src: src, dst: dst, proto: protoUDP, sport: 40000, dport: port, payload: append(vxlan, inner...)}.bytes()
	}
	return udpPacket(src, dst, 40000, port, 0, append(vxlan, inner...))
}

// udpPacket is payload in outer IPv4 (flags and fragment offset frag) and
// UDP headers from src:sport to dst:dport, UDP checksum 0, as tunnels send
// it (without the outer Ethernet).
func udpPacket(src, dst netip.Addr, sport, dport, frag uint16, payload []byte) []byte {
	udp := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	outer := ipPacket{src: src, dst: dst, proto: protoUDP}.bytes()[:20]
	binary.BigEndian.PutUint16(outer[2:], uint16(20+len(udp)+len(payload)))
	binary.BigEndian.PutUint16(outer[6:], frag)
	binary.BigEndian.PutUint16(outer[10:], 0)
	binary.BigEndian.PutUint16(outer[10:], ipChecksum(outer))
	return append(append(outer, udp...), payload...)
}

// arpRequest is a broadcast ARP request for tpa from the Ethernet source
// src, with sender hardware address sha and sender IP spa.
func arpRequest(src, sha net.HardwareAddr, spa, tpa netip.Addr) []byte {
	body := []byte{0, 1, 8, 0, 6, 4, 0, 1} // Ethernet, IPv4, request
	body = append(append(body, sha...), spa.AsSlice()...)
	body = append(append(body, make([]byte, 6)...), tpa.AsSlice()...)
	return ethernet(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, src, 0x0806, body)
}

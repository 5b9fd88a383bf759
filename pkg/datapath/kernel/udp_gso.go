package kernel

import "encoding/binary"

// TCP header fields and flags segmentTCP reads and writes.
const (
	protoTCP      = 6
	tcpMinHeader  = 20
	tcpSeq        = 4
	tcpFlags      = 13
	tcpChecksum   = 16
	tcpFIN        = 0x01
	tcpSYN        = 0x02
	tcpRST        = 0x04
	tcpPSH        = 0x08
	tcpURG        = 0x20
	tcpCWR        = 0x80
	maxTCPHeaders = 60 + 60
)

// segmentTCP splits IPv4 packet pkt (header length hl), a TCP super-packet
// longer than mtu such as a GSO packet another node's eBPF datapath
// encapsulated unsegmented, into segments of at most mtu bytes, as a NIC
// doing TSO would, and passes each to write in order. Each segment carries
// pkt's IP header (total length, ID incremented per segment, checksum) and
// TCP header (sequence number advanced by the payload offset; FIN and PSH
// only on the last segment, CWR only on the first) with a full TCP
// checksum: the super-packet's may be only the pseudo-header sum. It builds
// the segments in place, overwriting pkt, and passes write slices of pkt
// valid only until write returns.
// It returns false, calling write never, when pkt is not such a packet: not
// TCP, a fragment, a bad TCP header length, SYN, RST or URG set, or no room
// for payload within mtu.
func segmentTCP(pkt []byte, hl, mtu int, write func(seg []byte)) bool {
	if pkt[ipv4Proto] != protoTCP || binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 || len(pkt) < hl+tcpMinHeader {
		return false
	}
	thl := int(pkt[hl+12]>>4) * 4
	flags := pkt[hl+tcpFlags]
	mss := mtu - hl - thl
	if thl < tcpMinHeader || hl+thl > len(pkt) || flags&(tcpSYN|tcpRST|tcpURG) != 0 || mss <= 0 {
		return false
	}
	var hdr [maxTCPHeaders]byte
	hdrLen := copy(hdr[:], pkt[:hl+thl])
	id := binary.BigEndian.Uint16(pkt[4:6])
	seq := binary.BigEndian.Uint32(pkt[hl+tcpSeq:])
	pseudo := sum16(pkt[12:20], protoTCP)
	payload := len(pkt) - hdrLen
	for off, i := 0, 0; off < payload; off, i = off+mss, i+1 {
		n := min(mss, payload-off)
		// The headers go right before this segment's payload, over the
		// previous segment's (already written) or over the original headers.
		seg := pkt[off : off+hdrLen+n]
		copy(seg, hdr[:hdrLen])
		ip, tcp := seg[:hl], seg[hl:]
		binary.BigEndian.PutUint16(ip[2:4], uint16(len(seg)))
		binary.BigEndian.PutUint16(ip[4:6], id+uint16(i))
		binary.BigEndian.PutUint16(ip[ipv4Checksum:], 0)
		binary.BigEndian.PutUint16(ip[ipv4Checksum:], checksum(ip))
		binary.BigEndian.PutUint32(tcp[tcpSeq:], seq+uint32(off))
		f := flags
		if off+n < payload {
			f &^= tcpFIN | tcpPSH
		}
		if i > 0 {
			f &^= tcpCWR
		}
		tcp[tcpFlags] = f
		binary.BigEndian.PutUint16(tcp[tcpChecksum:], 0)
		binary.BigEndian.PutUint16(tcp[tcpChecksum:], ^fold(sum16(tcp, pseudo+uint32(len(tcp)))))
		write(seg)
	}
	return true
}

// protoUDP is the IPv4 protocol number of UDP; udpChecksum the offset of
// its checksum.
const (
	protoUDP    = 17
	udpChecksum = 6
	udpHeader   = 8
)

// completeChecksum fills in the TCP or UDP checksum of IPv4 packet pkt
// (header length hl) when the field holds only the pseudo-header sum: a
// packet another node's eBPF datapath encapsulated before its checksum was
// computed (CHECKSUM_PARTIAL), which a NIC would complete on the way out but
// a veth underlay passes on as it is. A checksum that is wrong in any other
// way is left for the receiver to reject.
func completeChecksum(pkt []byte, hl int) {
	off, min := tcpChecksum, tcpMinHeader
	switch pkt[ipv4Proto] {
	case protoTCP:
	case protoUDP:
		off, min = udpChecksum, udpHeader
	default:
		return
	}
	if binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 || len(pkt) < hl+min {
		return // a fragment carries no whole checksum
	}
	l4 := pkt[hl:]
	pseudo := sum16(pkt[12:20], uint32(pkt[ipv4Proto])+uint32(len(l4)))
	field := binary.BigEndian.Uint16(l4[off:])
	if field != fold(pseudo) || fold(sum16(l4, pseudo)) == 0xffff {
		return // a full checksum (valid or not), or a valid one that looks partial
	}
	binary.BigEndian.PutUint16(l4[off:], 0)
	sum := ^fold(sum16(l4, pseudo))
	if sum == 0 && pkt[ipv4Proto] == protoUDP {
		sum = 0xffff // 0 means "no checksum" in UDP
	}
	binary.BigEndian.PutUint16(l4[off:], sum)
}

package kernel

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// superPacket returns an IPv4 TCP packet 10.244.1.10:40000 -> 10.244.2.10:5001
// with TCP flags, sequence number seq, a 12-byte option block and payload,
// its TCP checksum only the pseudo-header sum as GSO leaves it.
func superPacket(flags byte, seq uint32, payload []byte) []byte {
	tcp := make([]byte, 32+len(payload))
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5001)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], 777)
	tcp[12], tcp[13] = 8<<4, flags
	binary.BigEndian.PutUint16(tcp[14:], 502)
	copy(tcp[20:], []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2})
	copy(tcp[32:], payload)
	pkt := testPacket("10.244.1.10", "10.244.2.10", protoTCP, 63, 0x4000, tcp)
	binary.BigEndian.PutUint16(pkt[20+16:], uint16(pseudoSum(pkt[12:20], len(tcp))))
	return pkt
}

// pseudoSum is the folded TCP pseudo-header sum for addresses addrs
// (source and destination) and TCP length n, computed independently of
// sum16.
func pseudoSum(addrs []byte, n int) uint32 {
	sum := uint32(protoTCP + n)
	for i := 0; i < 8; i += 2 {
		sum += uint32(addrs[i])<<8 | uint32(addrs[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return sum
}

// verifies reports whether the Internet checksum over pseudo and b (a
// header with its checksum field set) is valid, byte by byte.
func verifies(pseudo uint32, b []byte) bool {
	sum := pseudo
	for i, c := range b {
		if i%2 == 0 {
			sum += uint32(c) << 8
		} else {
			sum += uint32(c)
		}
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}

func TestSegmentTCP(t *testing.T) {
	const mtu = 1472
	const mss = mtu - 20 - 32
	payload := make([]byte, 3*mss+100)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range payload {
		payload[i] = byte(r.IntN(256))
	}
	for _, c := range []struct {
		name  string
		flags byte
		want  []byte // flags of each segment
	}{
		{"FIN|PSH|ACK", tcpFIN | tcpPSH | 0x10, []byte{0x10, 0x10, 0x10, tcpFIN | tcpPSH | 0x10}},
		{"CWR|ECE|ACK", tcpCWR | 0x40 | 0x10, []byte{tcpCWR | 0x50, 0x50, 0x50, 0x50}},
	} {
		t.Run(c.name, func(t *testing.T) {
			pkt := superPacket(c.flags, 0xffffff00, payload)
			orig := bytes.Clone(pkt)
			var segs [][]byte
			if !segmentTCP(pkt, 20, mtu, func(seg []byte) { segs = append(segs, bytes.Clone(seg)) }) {
				t.Fatal("segmentTCP refused a TCP super-packet")
			}
			if len(segs) != len(c.want) {
				t.Fatalf("%d segments, want %d", len(segs), len(c.want))
			}
			var got []byte
			for i, seg := range segs {
				n := mss
				if i == len(segs)-1 {
					n = 100
				}
				if len(seg) != 52+n || ipv4Header(seg) != 20 {
					t.Errorf("segment %d: %d bytes, IP total length %d, want %d", i, len(seg), binary.BigEndian.Uint16(seg[2:]), 52+n)
				}
				if !verifies(0, seg[:20]) {
					t.Errorf("segment %d: IP header checksum does not verify", i)
				}
				if id := binary.BigEndian.Uint16(seg[4:]); id != 0x1234+uint16(i) {
					t.Errorf("segment %d: IP ID %#x, want %#x", i, id, 0x1234+i)
				}
				if !bytes.Equal(seg[6:10], orig[6:10]) || !bytes.Equal(seg[12:20], orig[12:20]) {
					t.Errorf("segment %d: IP header % x differs from % x beyond length, ID, checksum", i, seg[:20], orig[:20])
				}
				if seq := binary.BigEndian.Uint32(seg[24:]); seq != 0xffffff00+uint32(i*mss) {
					t.Errorf("segment %d: seq %#x, want %#x", i, seq, 0xffffff00+uint32(i*mss))
				}
				if seg[20+13] != c.want[i] {
					t.Errorf("segment %d: flags %#x, want %#x", i, seg[20+13], c.want[i])
				}
				if !bytes.Equal(seg[20:24], orig[20:24]) || !bytes.Equal(seg[28:33], orig[28:33]) ||
					!bytes.Equal(seg[34:36], orig[34:36]) || !bytes.Equal(seg[38:52], orig[38:52]) {
					t.Errorf("segment %d: TCP header % x differs from % x beyond seq, flags, checksum", i, seg[20:52], orig[20:52])
				}
				if !verifies(pseudoSum(seg[12:20], len(seg)-20), seg[20:]) {
					t.Errorf("segment %d: TCP checksum does not verify", i)
				}
				got = append(got, seg[52:]...)
			}
			if !bytes.Equal(got, payload) {
				t.Error("segments' payloads do not reassemble to the original")
			}
		})
	}
}

func TestSegmentTCPRefuses(t *testing.T) {
	tcp := func(mod func(pkt []byte)) []byte {
		pkt := superPacket(0x10, 1, make([]byte, 3000))
		mod(pkt)
		return pkt
	}
	for name, pkt := range map[string][]byte{
		"UDP":                testPacket("10.244.1.10", "10.244.2.10", 17, 63, 0, make([]byte, 3000)),
		"ICMP":               testPacket("10.244.1.10", "10.244.2.10", protoICMP, 63, 0, make([]byte, 3000)),
		"first fragment":     tcp(func(p []byte) { p[6] |= 0x20 }),
		"later fragment":     tcp(func(p []byte) { p[7] = 1 }),
		"TCP header 16":      tcp(func(p []byte) { p[32] = 4 << 4 }),
		"SYN":                tcp(func(p []byte) { p[33] |= tcpSYN }),
		"RST":                tcp(func(p []byte) { p[33] |= tcpRST }),
		"URG":                tcp(func(p []byte) { p[33] |= tcpURG }),
		"no TCP header room": testPacket("10.244.1.10", "10.244.2.10", protoTCP, 63, 0, make([]byte, 12)),
	} {
		before := bytes.Clone(pkt)
		if segmentTCP(pkt, 20, 1472, func([]byte) { t.Errorf("%s: segment written", name) }) || !bytes.Equal(pkt, before) {
			t.Errorf("%s: segmentTCP = true or changed the packet", name)
		}
	}
	if segmentTCP(superPacket(0x10, 1, make([]byte, 3000)), 20, 52, func([]byte) { t.Error("segment without payload room written") }) {
		t.Error("MTU 52 (no payload room): segmentTCP = true")
	}
}

// TestCompleteChecksum: a TCP packet whose checksum is only the
// pseudo-header sum gets its full checksum; one with a valid or a corrupt
// full checksum is left as it is, and so is a fragment.
func TestCompleteChecksum(t *testing.T) {
	partial := superPacket(tcpPSH|0x10, 1000, bytes.Repeat([]byte("weft"), 100))
	full := bytes.Clone(partial)
	completeChecksum(full, 20)
	if !verifies(pseudoSum(full[12:20], len(full)-20), full[20:]) {
		t.Fatal("the completed TCP checksum does not verify")
	}
	again := bytes.Clone(full)
	completeChecksum(again, 20)
	if !bytes.Equal(again, full) {
		t.Error("a valid checksum was changed")
	}
	corrupt := bytes.Clone(full)
	corrupt[len(corrupt)-1] ^= 0xff
	before := bytes.Clone(corrupt)
	completeChecksum(corrupt, 20)
	if !bytes.Equal(corrupt, before) {
		t.Error("a corrupt full checksum was replaced: the receiver must reject the packet")
	}
	frag := bytes.Clone(partial)
	binary.BigEndian.PutUint16(frag[6:8], 0x2000) // more fragments
	before = bytes.Clone(frag)
	completeChecksum(frag, 20)
	if !bytes.Equal(frag, before) {
		t.Error("a fragment's checksum was touched")
	}
}

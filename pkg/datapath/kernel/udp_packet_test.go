package kernel

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// testPacket returns an IPv4 packet src -> dst of protocol proto with ttl,
// fragment field frag and payload, with a valid header checksum.
func testPacket(src, dst string, proto, ttl byte, frag uint16, payload []byte) []byte {
	pkt := make([]byte, 20+len(payload))
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	binary.BigEndian.PutUint16(pkt[4:], 0x1234)
	binary.BigEndian.PutUint16(pkt[6:], frag)
	pkt[8], pkt[9] = ttl, proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(pkt[12:], s[:])
	copy(pkt[16:], d[:])
	binary.BigEndian.PutUint16(pkt[10:], checksum(pkt[:20]))
	copy(pkt[20:], payload)
	return pkt
}

func TestIPv4Header(t *testing.T) {
	good := testPacket("10.244.1.10", "10.244.2.10", 6, 64, 0, []byte("0123456789"))
	withOptions := append(append([]byte{}, good[:20]...), 1, 1, 1, 0)
	withOptions[0] = 0x46
	binary.BigEndian.PutUint16(withOptions[2:], 24)
	for _, c := range []struct {
		name string
		pkt  []byte
		want int
	}{
		{"good", good, 20},
		{"options", withOptions, 24},
		{"short", good[:19], 0},
		{"IPv6", append([]byte{0x60}, good[1:]...), 0},
		{"header length 4", append([]byte{0x44}, good[1:]...), 0},
		{"header beyond packet", append([]byte{0x4f}, good[1:30]...), 0},
		{"truncated", good[:25], 0},
		{"trailing bytes", append(append([]byte{}, good...), 0), 0},
	} {
		if got := ipv4Header(c.pkt); got != c.want {
			t.Errorf("%s: ipv4Header = %d, want %d", c.name, got, c.want)
		}
	}
	if src, dst := srcAddr(good), dstAddr(good); src.String() != "10.244.1.10" || dst.String() != "10.244.2.10" {
		t.Errorf("addresses %s -> %s", src, dst)
	}
}

func TestDecTTL(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		pkt := testPacket("10.244.1.10", "10.244.2.10", byte(r.IntN(256)), byte(2+r.IntN(254)), uint16(r.IntN(1<<16)), nil)
		binary.BigEndian.PutUint16(pkt[4:], uint16(r.IntN(1<<16)))
		binary.BigEndian.PutUint16(pkt[10:], 0)
		binary.BigEndian.PutUint16(pkt[10:], checksum(pkt))
		ttl := pkt[8]
		if !decTTL(pkt) {
			t.Fatalf("case %d: decTTL refused TTL %d", i, ttl)
		}
		if pkt[8] != ttl-1 || checksum(pkt) != 0 {
			t.Fatalf("case %d: TTL %d -> %d, checksum of the result %#x, want %d and 0", i, ttl, pkt[8], checksum(pkt), ttl-1)
		}
	}
	for _, ttl := range []byte{0, 1} {
		pkt := testPacket("10.244.1.10", "10.244.2.10", 17, ttl, 0, nil)
		before := bytes.Clone(pkt)
		if decTTL(pkt) || !bytes.Equal(pkt, before) {
			t.Errorf("decTTL of TTL %d = true or changed the packet", ttl)
		}
	}
}

func TestNetUnreachable(t *testing.T) {
	buf := make([]byte, 576)
	own := netip.MustParseAddr("10.244.1.0")
	pkt := testPacket("10.244.1.10", "10.244.9.10", 6, 63, 0x4000, []byte("0123456789abcdef"))
	msg := netUnreachable(buf, pkt, 20, own)
	if len(msg) != 20+8+28 {
		t.Fatalf("message of %d bytes, want 56", len(msg))
	}
	if ipv4Header(msg) != 20 || checksum(msg[:20]) != 0 || msg[9] != protoICMP || msg[8] != icmpTTL {
		t.Errorf("bad IPv4 header % x", msg[:20])
	}
	if srcAddr(msg) != own || dstAddr(msg) != srcAddr(pkt) {
		t.Errorf("ICMP %s -> %s, want %s -> %s", srcAddr(msg), dstAddr(msg), own, srcAddr(pkt))
	}
	icmp := msg[20:]
	if icmp[0] != 3 || icmp[1] != 0 || checksum(icmp) != 0 || !bytes.Equal(icmp[8:], pkt[:28]) {
		t.Errorf("bad ICMP message % x", icmp)
	}
	short := testPacket("10.244.1.10", "10.244.9.10", 17, 63, 0, []byte("abc"))
	if msg := netUnreachable(buf, short, 20, own); len(msg) != 20+8+23 || !bytes.Equal(msg[28:], short) {
		t.Errorf("short packet: message % x does not quote it whole", msg)
	}
	echo := testPacket("10.244.1.10", "10.244.9.10", protoICMP, 63, 0, append([]byte{8, 0}, make([]byte, 14)...))
	if msg := netUnreachable(buf, echo, 20, own); len(msg) != 56 {
		t.Errorf("echo request: message % x, want one quoting it", msg)
	}
	for name, p := range map[string][]byte{
		"ICMP error":              testPacket("10.244.1.10", "10.244.9.10", protoICMP, 63, 0, append([]byte{3, 1}, make([]byte, 6)...)),
		"ICMP without header":     testPacket("10.244.1.10", "10.244.9.10", protoICMP, 63, 0, nil),
		"non-first fragment":      testPacket("10.244.1.10", "10.244.9.10", 17, 63, 0x2000|185, make([]byte, 8)),
		"last non-first fragment": testPacket("10.244.1.10", "10.244.9.10", 17, 63, 1, make([]byte, 8)),
	} {
		if msg := netUnreachable(buf, p, 20, own); msg != nil {
			t.Errorf("%s: got an ICMP error % x, want none", name, msg)
		}
	}
}

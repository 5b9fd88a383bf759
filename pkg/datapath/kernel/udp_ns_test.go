package kernel_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/test/testns"
)

func TestUDP(t *testing.T) {
	nodes := newCluster(t, datapath.ModeUDP, false)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	for _, n := range nodes {
		n.setup(t)
		t.Cleanup(func() {
			if err := n.dp.Close(); err != nil {
				t.Errorf("%s: close: %v", n.ns.Name, err)
			}
		})
	}
	var links []struct {
		Flags    []string `json:"flags"`
		MTU      int      `json:"mtu"`
		LinkInfo struct {
			Kind string `json:"info_kind"`
			Data struct {
				Type string `json:"type"`
				PI   bool   `json:"pi"`
			} `json:"info_data"`
		} `json:"linkinfo"`
	}
	n1.ipJSON(t, "ip", &links, "-d", "link", "show", "flannel0")
	if len(links) != 1 || links[0].MTU != 1472 || !slices.Contains(links[0].Flags, "UP") ||
		links[0].LinkInfo.Kind != "tun" || links[0].LinkInfo.Data.Type != "tun" || links[0].LinkInfo.Data.PI {
		t.Fatalf("flannel0 = %+v, want an up tun device without packet information, MTU 1472", links)
	}
	if n1.info.MTU != 1472 {
		t.Errorf("Info.MTU = %d, want 1472", n1.info.MTU)
	}
	if got := n1.ns.MustRun(t, "ip", "-4", "-o", "addr", "show", "dev", "flannel0"); !strings.Contains(got, " 10.244.1.0/16 ") {
		t.Errorf("flannel0 addresses %q, want 10.244.1.0/16", got)
	}
	if got := n1.routes(t, "dev", "flannel0"); !slices.Contains(got, "10.244.0.0/16") {
		t.Errorf("routes on flannel0 %q, want 10.244.0.0/16", got)
	}
	expectNetUnreachable(t, n1, n2.podIP) // no peers yet

	for _, n := range nodes {
		n.mustSync(t, peersOf(n, nodes))
	}
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				a.ping(t, b.podIP)
			}
		}
	}
	transfer(t, n1, n3)
	if c := counters(t, n1); c["tx"] == 0 || c["rx"] == 0 || c["tx_bytes"] < 1<<20 {
		t.Errorf("n1 counters after pings and a 1 MiB transfer: %v", c)
	}

	t.Run("wire format", func(t *testing.T) {
		inner := capture(t, n2, n1.node.NodeIP, func() {
			n1.pod.MustRun(t, "ping", "-c1", "-W2", "-t", "64", n2.podIP.String())
		})
		// The pod sends TTL 64; node 1 routes it (63) and forwards it (62).
		if inner[8] != 62 || netip.AddrFrom4([4]byte(inner[12:16])) != n1.podIP ||
			netip.AddrFrom4([4]byte(inner[16:20])) != n2.podIP || inner[9] != 1 {
			t.Errorf("inner packet % x: want ICMP %s -> %s with TTL 62", inner[:20], n1.podIP, n2.podIP)
		}
		if sum := ipChecksum(inner[:20]); sum != 0 {
			t.Errorf("inner header checksum does not verify: %#x", sum)
		}
	})

	t.Run("spoofed source", func(t *testing.T) {
		// Pod 2 claims an address of node 3's subnet; node 2 forwards it.
		n2.ns.MustRun(t, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.veth0.rp_filter=0")
		n2.pod.MustRun(t, "ip", "addr", "add", "10.244.3.77/32", "dev", "eth0")
		before := counters(t, n1)["spoofed_source"]
		if _, err := n2.pod.Run("ping", "-c1", "-W1", "-I", "10.244.3.77", n1.podIP.String()); err == nil {
			t.Error("a packet with a spoofed source got an answer")
		}
		waitCounter(t, n1, "spoofed_source", before)
	})

	t.Run("unknown node", func(t *testing.T) {
		before := counters(t, n1)["unknown_node"]
		// The router is no peer, though it sends from port 8285.
		router := strings.TrimSuffix(n1.ns.Name, "n1") + "r"
		h, err := netns.GetFromName(router)
		if err != nil {
			t.Fatalf("open netns %s: %v", router, err)
		}
		defer h.Close()
		err = testns.Enter(h, router, func() error {
			c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("192.168.10.254:8285")),
				net.UDPAddrFromAddrPort(netip.AddrPortFrom(n1.node.NodeIP, 8285)))
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write(echoRequest(n2.podIP, n1.podIP))
			return err
		})
		if err != nil {
			t.Fatalf("send from the router: %v", err)
		}
		waitCounter(t, n1, "unknown_node", before)
	})

	t.Run("GSO super-packet", func(t *testing.T) {
		// Node 2 sends what a peer's eBPF datapath does when nothing
		// segments its GSO packets: datagrams with inner TCP packets longer
		// than flannel0's MTU. The client is a fake 10.244.2.200, so pod 1's
		// answers die unanswered in node 2.
		client := netip.AddrPortFrom(netip.MustParseAddr("10.244.2.200"), 40000)
		server := netip.AddrPortFrom(n1.podIP, 5002)
		var ln net.Listener
		if err := n1.pod.Do(func() (err error) {
			ln, err = net.Listen("tcp4", server.String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		synAck := capture(t, n2, n1.node.NodeIP, func() {
			sendDatagram(t, n2, n1.node.NodeIP, tcpPacket(client, server, 1000, 0, 0x02, nil, true))
		})
		if len(synAck) < 40 || synAck[9] != unix.IPPROTO_TCP || synAck[33] != 0x12 {
			t.Fatalf("answer to the SYN % x is no SYN-ACK", synAck)
		}
		isn := binary.BigEndian.Uint32(synAck[24:])
		data := make([]byte, 3*1400+100)
		_, _ = rand.Read(data)
		before := counters(t, n1)
		// ACK, data, PSH and FIN in one super-packet.
		sendDatagram(t, n2, n1.node.NodeIP, tcpPacket(client, server, 1001, isn+1, 0x19, data, false))
		c, err := acceptWithin(ln, 5*time.Second)
		if err != nil {
			t.Fatalf("accept: %v", err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("pod received %d bytes (%v), want the %d sent up to FIN", len(got), err, len(data))
		}
		after := counters(t, n1)
		if rx := after["rx"] - before["rx"]; rx != 4 {
			t.Errorf("super-packet of %d bytes written as %d packets into flannel0, want 4", 52+len(data), rx)
		}

		before = after
		sendDatagram(t, n2, n1.node.NodeIP, udpPacket(client, server, data))
		waitCounter(t, n1, "oversize", before["oversize"])
	})

	t.Run("peer removed by Apply", func(t *testing.T) {
		n1.mustApply(t, peersOfNodes(n2))
		expectNetUnreachable(t, n1, n3.podIP)
		n1.ping(t, n2.podIP)
		n1.mustApply(t, peersOf(n1, nodes))
		n1.ping(t, n3.podIP)
	})

	t.Run("drift repair", func(t *testing.T) {
		n1.ns.MustRun(t, "ip", "link", "del", "flannel0")
		n1.mustSync(t, peersOf(n1, nodes))
		if got := n1.ns.MustRun(t, "ip", "-4", "-o", "addr", "show", "dev", "flannel0"); !strings.Contains(got, " 10.244.1.0/16 ") {
			t.Errorf("recreated flannel0 addresses %q, want 10.244.1.0/16", got)
		}
		n1.ping(t, n2.podIP)
		n3.ping(t, n1.podIP)
	})

	t.Run("cleanup", func(t *testing.T) {
		if err := n1.ns.Do(func() error { return n1.dp.Cleanup(t.Context()) }); err != nil {
			t.Fatal(err)
		}
		if out, err := n1.ns.Run("ip", "link", "show", "flannel0"); err == nil {
			t.Errorf("flannel0 still present after Cleanup: %s", out)
		}
	})
}

// expectNetUnreachable fails t unless a ping from n's pod to dst gets an
// ICMP destination net unreachable.
func expectNetUnreachable(t *testing.T, n *testNode, dst netip.Addr) {
	t.Helper()
	out, err := n.pod.Run("ping", "-c1", "-W1", dst.String())
	if err == nil || !strings.Contains(out, "Destination Net Unreachable") {
		t.Errorf("ping %s from %s: %v, want Destination Net Unreachable", dst, n.podIP, err)
	}
}

// counters reads n's udp-kernel counters: "tx", "rx", "tx_bytes",
// "rx_bytes" and each drop reason.
func counters(t *testing.T, n *testNode) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, c := range n.stats(t) {
		if c.Backend != "udp-kernel" {
			t.Errorf("counter %+v has backend %q", c, c.Backend)
		}
		if c.Direction != "" {
			out[c.Direction], out[c.Direction+"_bytes"] = c.Packets, c.Bytes
			continue
		}
		out[c.Reason] = c.Packets
	}
	return out
}

// waitCounter waits until n's counter name exceeds before.
func waitCounter(t *testing.T, n *testNode, name string, before uint64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if counters(t, n)[name] > before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: counter %s stayed at %d", n.ns.Name, name, before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// transfer sends 1 MiB over TCP from a's pod to b's pod and checks it
// arrives intact.
func transfer(t *testing.T, a, b *testNode) {
	t.Helper()
	var ln net.Listener
	if err := b.pod.Do(func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(b.podIP, 5001).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(got)
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		h := sha256.New()
		_, _ = io.Copy(h, c)
		got <- [32]byte(h.Sum(nil))
	}()
	data := make([]byte, 1<<20)
	_, _ = rand.Read(data)
	var c net.Conn
	if err := a.pod.Do(func() (err error) {
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(b.podIP, 5001).String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	_, err := c.Write(data)
	c.Close()
	if err != nil {
		t.Fatalf("TCP transfer %s -> %s: %v", a.podIP, b.podIP, err)
	}
	select {
	case sum, ok := <-got:
		if !ok || sum != sha256.Sum256(data) {
			t.Fatalf("TCP transfer %s -> %s: data differs", a.podIP, b.podIP)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("TCP transfer %s -> %s: no end", a.podIP, b.podIP)
	}
}

// capture runs send and returns the payload of the first datagram from
// from to n on n's eth0, after checking its outer headers: UDP port 8285
// both ways, DF set, the payload exactly one IPv4 packet.
func capture(t *testing.T, n *testNode, from netip.Addr, send func()) []byte {
	t.Helper()
	var fd int
	if err := n.ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_IP)))
		if err != nil {
			return err
		}
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index})
	}); err != nil {
		t.Fatalf("open capture socket: %v", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200000}); err != nil {
		t.Fatal(err)
	}
	send()
	buf := make([]byte, 65536)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		m, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("capture: %v", err)
		}
		pkt := buf[:m]
		if len(pkt) < 28 || pkt[9] != unix.IPPROTO_UDP || netip.AddrFrom4([4]byte(pkt[12:16])) != from {
			continue
		}
		hl := int(pkt[0]&0x0f) * 4
		udp := pkt[hl:]
		sport, dport := binary.BigEndian.Uint16(udp[0:]), binary.BigEndian.Uint16(udp[2:])
		if sport != 8285 || dport != 8285 {
			t.Fatalf("datagram from %s has ports %d -> %d, want 8285 -> 8285", from, sport, dport)
		}
		if binary.BigEndian.Uint16(pkt[6:])&0x4000 == 0 {
			t.Errorf("outer header % x has no DF", pkt[:hl])
		}
		payload := bytes.Clone(udp[8:])
		if int(binary.BigEndian.Uint16(udp[4:])) != 8+len(payload) || len(payload) < 20 ||
			payload[0] != 0x45 || int(binary.BigEndian.Uint16(payload[2:])) != len(payload) {
			t.Fatalf("payload % x is not exactly one IPv4 packet", payload)
		}
		return payload
	}
	t.Fatalf("no datagram from %s seen on %s", from, n.ns.Name)
	return nil
}

// htons converts a 16-bit value to network byte order.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// ipChecksum is the Internet checksum of b (0 for a valid header).
func ipChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// echoRequest is an ICMP echo request src -> dst with TTL 64.
func echoRequest(src, dst netip.Addr) []byte {
	pkt := make([]byte, 28)
	pkt[0], pkt[8], pkt[9] = 0x45, 64, 1
	binary.BigEndian.PutUint16(pkt[2:], 28)
	s, d := src.As4(), dst.As4()
	copy(pkt[12:], s[:])
	copy(pkt[16:], d[:])
	binary.BigEndian.PutUint16(pkt[10:], ipChecksum(pkt[:20]))
	pkt[20] = 8
	binary.BigEndian.PutUint16(pkt[22:], ipChecksum(pkt[20:]))
	return pkt
}

// sendDatagram sends payload from n's node IP, port 8285, to port 8285 of
// dst through a raw socket (n's datapath holds the port), letting the
// kernel fragment it as an underlay would carry a GSO datagram.
func sendDatagram(t *testing.T, n *testNode, dst netip.Addr, payload []byte) {
	t.Helper()
	err := n.ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_UDP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT); err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: n.node.NodeIP.As4()}); err != nil {
			return err
		}
		return unix.Sendto(fd, udpDatagram(8285, 8285, payload), 0, &unix.SockaddrInet4{Addr: dst.As4()})
	})
	if err != nil {
		t.Fatalf("%s: send a %d-byte datagram to %s: %v", n.ns.Name, len(payload), dst, err)
	}
}

// ipv4Packet returns an IPv4 packet src -> dst of protocol proto with TTL
// 64, DF set, and payload l4.
func ipv4Packet(src, dst netip.Addr, proto byte, l4 []byte) []byte {
	pkt := make([]byte, 20, 20+len(l4))
	pkt[0], pkt[6], pkt[8], pkt[9] = 0x45, 0x40, 64, proto
	binary.BigEndian.PutUint16(pkt[2:], uint16(20+len(l4)))
	s, d := src.As4(), dst.As4()
	copy(pkt[12:], s[:])
	copy(pkt[16:], d[:])
	binary.BigEndian.PutUint16(pkt[10:], ipChecksum(pkt))
	return append(pkt, l4...)
}

// tcpPacket returns a TCP packet src -> dst with seq, ack, flags and
// payload; its checksum is complete, or with partial only the
// pseudo-header sum as GSO leaves it for the segmenting device.
func tcpPacket(src, dst netip.AddrPort, seq, ack uint32, flags byte, payload []byte, complete bool) []byte {
	tcp := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(tcp[0:], src.Port())
	binary.BigEndian.PutUint16(tcp[2:], dst.Port())
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], ack)
	tcp[12], tcp[13] = 5<<4, flags
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	tcp = append(tcp, payload...)
	s, d := src.Addr().As4(), dst.Addr().As4()
	pseudo := append(append(s[:], d[:]...), 0, unix.IPPROTO_TCP, byte(len(tcp)>>8), byte(len(tcp)))
	sum := ^ipChecksum(pseudo)
	if complete {
		sum = ipChecksum(append(pseudo, tcp...))
	}
	binary.BigEndian.PutUint16(tcp[16:], sum)
	return ipv4Packet(src.Addr(), dst.Addr(), unix.IPPROTO_TCP, tcp)
}

// udpPacket returns a UDP packet src -> dst with payload and no checksum.
func udpPacket(src, dst netip.AddrPort, payload []byte) []byte {
	return ipv4Packet(src.Addr(), dst.Addr(), unix.IPPROTO_UDP, udpDatagram(src.Port(), dst.Port(), payload))
}

// udpDatagram returns a UDP header sport -> dport without checksum and
// payload.
func udpDatagram(sport, dport uint16, payload []byte) []byte {
	udp := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	return append(udp, payload...)
}

// acceptWithin accepts one connection on ln, failing after timeout.
func acceptWithin(ln net.Listener, timeout time.Duration) (net.Conn, error) {
	if err := ln.(*net.TCPListener).SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	return ln.Accept()
}

package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/datapath"
)

// TUNName is the udp backend's TUN device, as flannel names it.
const TUNName = "flannel0"

// DefaultUDPPort is flannel's udp backend port.
const DefaultUDPPort = 8285

// udpOverhead is what the udp backend adds to a pod packet: outer IPv4 (20)
// and UDP (8) headers.
const udpOverhead = 28

// dropReason is why the udp forwarding loop dropped a packet.
type dropReason int

// Drop reasons; dropNone is no drop.
const (
	dropNone dropReason = iota
	dropUnknownNode
	dropSpoofedSource
	dropMalformed
	dropNoRoute
	dropTTLExceeded
	dropSendError
	dropTUNWriteError
	dropOversize
	numDropReasons
)

// dropNames are the drop reasons as counters name them.
var dropNames = [numDropReasons]string{
	dropUnknownNode:   "unknown_node",
	dropSpoofedSource: "spoofed_source",
	dropMalformed:     "malformed",
	dropNoRoute:       "no_route",
	dropTTLExceeded:   "ttl_exceeded",
	dropSendError:     "send_error",
	dropTUNWriteError: "tun_write_error",
	dropOversize:      "oversize",
}

// udpBackend is the counters' Backend label.
const udpBackend = "udp-kernel"

// udpCounters are the forwarding loop's counters; they outlive a tunnel
// reopened after drift.
type udpCounters struct {
	txPackets, txBytes, rxPackets, rxBytes atomic.Uint64
	drops                                  [numDropReasons]atomic.Uint64
}

// drop counts one dropped packet.
func (c *udpCounters) drop(r dropReason) { c.drops[r].Add(1) }

// counters returns the counters for Stats.
func (c *udpCounters) counters() []datapath.Counter {
	out := []datapath.Counter{
		{Backend: udpBackend, Direction: "tx", Packets: c.txPackets.Load(), Bytes: c.txBytes.Load()},
		{Backend: udpBackend, Direction: "rx", Packets: c.rxPackets.Load(), Bytes: c.rxBytes.Load()},
	}
	for r := dropNone + 1; r < numDropReasons; r++ {
		out = append(out, datapath.Counter{Backend: udpBackend, Reason: dropNames[r], Packets: c.drops[r].Load()})
	}
	return out
}

// udpTunnel is the udp backend's forwarder: the TUN device's fd, the UDP
// socket and the two goroutines that copy packets between them.
type udpTunnel struct {
	nodeIP netip.Addr
	port   uint16
	tun    *os.File
	conn   *net.UDPConn
	table  *peerTable
	stats  *udpCounters
	// mtu is the TUN device's MTU: longer received packets are segmented
	// (TCP) or dropped.
	mtu atomic.Int32
	wg  sync.WaitGroup
}

// openUDPTunnel creates (or attaches to) the TUN device and binds the UDP
// socket to node's IP and port, in the calling thread's network namespace,
// and starts forwarding between them; mtu is the device's MTU.
func openUDPTunnel(node datapath.Node, mtu int, table *peerTable, stats *udpCounters) (*udpTunnel, error) {
	tun, err := openTUN(TUNName)
	if err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			// DF on every datagram, as flannel sends them.
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
		})
		return errors.Join(err, serr)
	}}
	addr := netip.AddrPortFrom(node.NodeIP, uint16(node.Port))
	pc, err := lc.ListenPacket(context.Background(), "udp4", addr.String())
	if err != nil {
		_ = tun.Close()
		return nil, fmt.Errorf("bind udp backend socket to %s: %w", addr, err)
	}
	u := &udpTunnel{
		nodeIP: node.NodeIP, port: uint16(node.Port),
		tun: tun, conn: pc.(*net.UDPConn), table: table, stats: stats,
	}
	u.mtu.Store(int32(mtu))
	u.wg.Add(2)
	go u.fromTUN()
	go u.fromUDP()
	return u, nil
}

// openTUN opens the TUN device name (IFF_TUN, no packet information),
// creating it if missing, as a pollable file whose Close ends a pending
// Read.
func openTUN(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("attach TUN device %s (is another flanneld or weftd running?): %w", name, err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun"), nil
}

// matches reports whether u serves node.
func (u *udpTunnel) matches(node datapath.Node) bool {
	return u.nodeIP == node.NodeIP && int(u.port) == node.Port
}

// close stops the forwarding goroutines and closes the fds; the TUN device
// goes with its fd.
func (u *udpTunnel) close() error {
	err := errors.Join(u.tun.Close(), u.conn.Close())
	u.wg.Wait()
	if err != nil {
		return fmt.Errorf("close udp backend: %w", err)
	}
	return nil
}

// maxPacket is the largest IPv4 packet, and so the largest datagram
// payload the loops read: a super-packet must not be truncated.
const maxPacket = 65535

// fromTUN sends each packet the kernel routes into the TUN device to the
// node of its destination's subnet, until the device is closed.
func (u *udpTunnel) fromTUN() {
	defer u.wg.Done()
	buf := make([]byte, maxPacket)
	icmp := make([]byte, 576)
	for {
		n, err := u.tun.Read(buf)
		if err != nil {
			u.stopped("read from "+TUNName, err)
			return
		}
		pkt := buf[:n]
		hl := ipv4Header(pkt)
		if hl == 0 {
			u.stats.drop(dropMalformed)
			continue
		}
		peer, ok := u.table.route(dstAddr(pkt))
		if !ok {
			u.stats.drop(dropNoRoute)
			if msg := netUnreachable(icmp, pkt, hl, peer); msg != nil && peer.IsValid() {
				_, _ = u.tun.Write(msg)
			}
			continue
		}
		if !decTTL(pkt) {
			u.stats.drop(dropTTLExceeded)
			continue
		}
		if _, err := u.conn.WriteToUDPAddrPort(pkt, netip.AddrPortFrom(peer, u.port)); err != nil {
			u.stats.drop(dropSendError)
			slog.Debug("udp backend: send failed", "peer", peer.String(), "err", err)
			continue
		}
		u.stats.txPackets.Add(1)
		u.stats.txBytes.Add(uint64(n))
	}
}

// fromUDP writes into the TUN device each datagram's packet that a known
// peer sent from its port with a source inside its subnet, until the
// socket is closed. It segments TCP packets longer than the device's MTU
// (the GSO super-packets of a peer's eBPF datapath) and drops other
// oversize ones, and completes TCP and UDP checksums such a peer left
// partial.
func (u *udpTunnel) fromUDP() {
	defer u.wg.Done()
	buf := make([]byte, maxPacket)
	writeTUN := func(pkt []byte) {
		if _, err := u.tun.Write(pkt); err != nil {
			u.stats.drop(dropTUNWriteError)
			return
		}
		u.stats.rxPackets.Add(1)
		u.stats.rxBytes.Add(uint64(len(pkt)))
	}
	for {
		n, from, err := u.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			u.stopped("receive on udp backend socket", err)
			return
		}
		pkt := buf[:n]
		if from.Port() != u.port {
			u.stats.drop(dropUnknownNode)
			continue
		}
		hl := ipv4Header(pkt)
		if hl == 0 {
			u.stats.drop(dropMalformed)
			continue
		}
		if r := u.table.admit(from.Addr().Unmap(), srcAddr(pkt)); r != dropNone {
			u.stats.drop(r)
			continue
		}
		if !decTTL(pkt) {
			u.stats.drop(dropTTLExceeded)
			continue
		}
		if mtu := int(u.mtu.Load()); n > mtu {
			if !segmentTCP(pkt, hl, mtu, writeTUN) {
				u.stats.drop(dropOversize)
			} else if slog.Default().Enabled(context.Background(), slog.LevelDebug) {
				slog.Debug("udp backend: segmented a TCP super-packet", "from", from.Addr().String(), "bytes", n, "mtu", mtu)
			}
			continue
		}
		completeChecksum(pkt, hl)
		writeTUN(pkt)
	}
}

// stopped logs why a forwarding goroutine ends, unless close ended it.
func (u *udpTunnel) stopped(what string, err error) {
	if !errors.Is(err, os.ErrClosed) && !errors.Is(err, net.ErrClosed) {
		slog.Error("udp backend stopped forwarding (the next Sync restarts it)", "op", what, "err", err)
	}
}

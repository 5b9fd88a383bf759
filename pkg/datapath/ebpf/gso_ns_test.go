package ebpf

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/datapath"
)

// TestIPv6BulkTCP: bulk TCP over IPv6 between dual-stack pods, whose TSO
// bursts are GSO packets, from an ebpf node to an ebpf node and to a
// kernel (flannel-like) node, and back. An ebpf sender carries them on its
// fast path (through flannel-v6.1, which checksums each segment), so its
// IPv6 vxlan tx counter counts the stream's bytes in GSO-sized packets; an
// ebpf receiver decapsulates the aggregates (as GRO builds them: the
// underlay veth passes GSO packets on) and drops nothing. The second round
// segments on the underlay, checksums computed in software and verified by
// the receivers (segmentUnderlay): a wrong outer UDP or inner TCP checksum
// loses segments and the stream stalls.
func TestIPv6BulkTCP(t *testing.T) {
	for _, kernelPeer := range []bool{false, true} {
		name := "ebpf-to-ebpf"
		if kernelPeer {
			name = "ebpf-to-kernel"
		}
		t.Run(name, func(t *testing.T) {
			nodes := newStackNodes(t, datapath.ModeVXLAN, true)
			nodes[0].startEBPF(t, AttachAuto)
			if kernelPeer {
				nodes[1].startKernel(t)
			} else {
				nodes[1].startEBPF(t, AttachAuto)
			}
			for _, n := range nodes {
				n.addPod(t, n.info.MTU)
			}
			syncAll(t, nodes)
			for _, n := range nodes {
				if _, ok := n.dp.(*Datapath); ok {
					n.register(t)
				}
			}
			waitPing(t, nodes[0].pod, nodes[1].podIP6)
			checkBulkIPv6(t, nodes, true)
			for _, n := range nodes {
				segmentUnderlay(t, n)
			}
			checkBulkIPv6(t, nodes, false)
		})
	}
}

// checkBulkIPv6 streams fastPathTransfer bytes over IPv6 from each node's pod
// to the other's and checks that ebpf nodes carried at least half of each
// stream on the fast path, sending in GSO packets and, with aggregates,
// receiving in packets larger than a frame too, and dropped nothing.
func checkBulkIPv6(t *testing.T, nodes [2]*testNode, aggregates bool) {
	t.Helper()
	tx := datapath.Counter{Backend: BackendVXLAN + IPv6Suffix, Direction: "tx"}
	rx := datapath.Counter{Backend: BackendVXLAN + IPv6Suffix, Direction: "rx"}
	for i, sender := range nodes {
		receiver := nodes[1-i]
		before := map[*testNode][3]datapath.Counter{}
		for _, n := range nodes {
			if _, ok := n.dp.(*Datapath); ok {
				before[n] = [3]datapath.Counter{find(t, n, tx), find(t, n, rx), drops(t, n)}
			}
		}
		tcpTransferVia(t, sender, receiver, netip.AddrPortFrom(receiver.podIP6, 5201).String(), fastPathTransfer)
		for n, b := range before {
			idx, want, dir, large := 0, tx, "sent", true
			if n == receiver {
				idx, want, dir, large = 1, rx, "received", aggregates
			}
			got := grown(find(t, n, want), b[idx])
			t.Logf("%s %s %d bytes in %d packets on the fast path", n.node.NodeIPv6, dir, got.Bytes, got.Packets)
			if got.Bytes < fastPathTransfer/2 {
				t.Errorf("%s %s %d bytes of a %d-byte IPv6 stream on the fast path, want >= half",
					n.node.NodeIPv6, dir, got.Bytes, fastPathTransfer)
			} else if avg := got.Bytes / got.Packets; large && avg <= 2*uint64(n.info.MTU) {
				t.Errorf("%s %s %d-byte packets on average: not GSO packets or aggregates", n.node.NodeIPv6, dir, avg)
			}
			if d := grown(drops(t, n), b[2]); d.Packets != 0 {
				t.Errorf("%s dropped %d packets during the IPv6 stream", n.node.NodeIPv6, d.Packets)
			}
		}
	}
}

// grown is how much c grew since before.
func grown(c, before datapath.Counter) datapath.Counter {
	return datapath.Counter{Packets: c.Packets - before.Packets, Bytes: c.Bytes - before.Bytes}
}

// drops sums the drop counters of n's programs (not its kernel devices').
func drops(t *testing.T, n *testNode) datapath.Counter {
	t.Helper()
	var sum datapath.Counter
	for _, c := range stats(t, n) {
		if c.Reason != "" && strings.HasPrefix(c.Backend, BackendVXLAN) {
			sum.Packets += c.Packets
			sum.Bytes += c.Bytes
		}
	}
	return sum
}

// segmentUnderlay makes the GSO packets n sends segmented before they
// cross its uplink, with checksums computed in software, and n verify the
// checksums of what it receives there, until the test ends: an XDP program
// on a veth (passing everything) keeps its peer from sending GSO packets;
// transmit and receive checksum offload go off.
func segmentUnderlay(t *testing.T, n *testNode) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2 /* XDP_PASS */), asm.Return()},
	})
	must(t, err)
	t.Cleanup(func() { prog.Close() })
	must(t, n.ns.Do(func() error {
		uplink, err := netlink.LinkByName(n.node.Uplink)
		if err != nil {
			return err
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: uplink.Attrs().Index})
		if err != nil {
			return err
		}
		t.Cleanup(func() { l.Close() })
		if err := ethtoolSet(n.node.Uplink, unix.ETHTOOL_SRXCSUM, 0); err != nil {
			return err
		}
		return ethtoolSet(n.node.Uplink, unix.ETHTOOL_STXCSUM, 0)
	}))
}

// ethtoolSet runs one of ethtool's legacy set commands (struct
// ethtool_value) on the interface dev of the caller's network namespace.
func ethtoolSet(dev string, cmd, value uint32) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	v := struct{ cmd, data uint32 }{cmd, value}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [16]byte // the rest of struct ifreq
	}
	copy(ifr.name[:], dev)
	ifr.data = unsafe.Pointer(&v)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return fmt.Errorf("ethtool command %#x on %s: %w", cmd, dev, errno)
	}
	return nil
}

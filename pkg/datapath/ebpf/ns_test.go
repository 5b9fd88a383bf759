package ebpf

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/datapath/kernel"
	"github.com/weftnet/weft/pkg/endpoint"
	"github.com/weftnet/weft/test/testns"
)

// Two node namespaces joined by a veth pair (the underlay, 192.168.50.0/24),
// each with a bridge cni0 (10.244.<i>.1/24) and a pod namespace behind a
// veth on it (10.244.<i>.10), as the bridge CNI plugin would leave them, and
// conntrack on, as on any node (NAT and firewall rules turn it on). Dual
// stack adds fd00:50::<i>/64 to the underlay, fd10:244:0:<i>::1/64 to cni0
// and fd10:244:0:<i>::10 to the pod.
type testNode struct {
	ns, pod *testns.NS
	node    datapath.Node
	subnet  netip.Prefix
	podIP   netip.Addr
	// subnet6 and podIP6 are invalid without IPv6.
	subnet6 netip.Prefix
	podIP6  netip.Addr
	bpfDir  string
	// endpointDir holds the node's endpoint records.
	endpointDir string
	// veth is the host end of the pod's veth.
	veth string
	dp   datapath.Datapath
	info datapath.Info
}

// newTestNodes builds two IPv4 nodes of backend.
func newTestNodes(t *testing.T, backend datapath.Mode) [2]*testNode {
	t.Helper()
	return newStackNodes(t, backend, false)
}

// newStackNodes builds two nodes of backend, dual-stack when v6 is set.
func newStackNodes(t *testing.T, backend datapath.Mode, v6 bool) [2]*testNode {
	t.Helper()
	prefix := testns.Prefix()
	var nodes [2]*testNode
	for i := range nodes {
		n := &testNode{
			ns:          testns.New(t, prefix, fmt.Sprintf("n%d", i+1)),
			pod:         testns.New(t, prefix, fmt.Sprintf("p%d", i+1)),
			subnet:      netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i+1)),
			podIP:       netip.MustParseAddr(fmt.Sprintf("10.244.%d.10", i+1)),
			bpfDir:      filepath.Join(t.TempDir(), "bpf"),
			endpointDir: filepath.Join(t.TempDir(), "endpoints"),
			veth:        "vethpod",
			node: datapath.Node{
				NodeIP:  netip.MustParseAddr(fmt.Sprintf("192.168.50.%d", i+1)),
				Uplink:  "eth0",
				Network: netip.MustParsePrefix("10.244.0.0/16"),
				Backend: backend,
				VNI:     1,
			},
		}
		if v6 {
			n.node.NodeIPv6 = netip.MustParseAddr(fmt.Sprintf("fd00:50::%d", i+1))
			n.node.IPv6Network = netip.MustParsePrefix("fd10:244::/56")
			n.subnet6 = netip.MustParsePrefix(fmt.Sprintf("fd10:244:0:%d::/64", i+1))
			n.podIP6 = netip.MustParseAddr(fmt.Sprintf("fd10:244:0:%d::10", i+1))
		}
		t.Cleanup(func() {
			if err := unix.Unmount(n.bpfDir, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
				t.Errorf("unmount %s: %v", n.bpfDir, err)
			}
		})
		nodes[i] = n
	}
	nodes[0].ns.MustRun(t, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", nodes[1].ns.Name)
	for _, n := range nodes {
		n.ns.MustRun(t, "ip", "addr", "add", n.node.NodeIP.String()+"/24", "dev", "eth0")
		if v6 {
			n.ns.MustRun(t, "ip", "addr", "add", n.node.NodeIPv6.String()+"/64", "dev", "eth0", "nodad")
		}
		n.ns.MustRun(t, "ip", "link", "set", "eth0", "up")
		// No netfilter rule here: the datapath keeps connection tracking
		// on itself (tracking.go), or nothing takes the fast path.
	}
	return nodes
}

// addPod creates cni0 and the pod behind it with the given MTU.
func (n *testNode) addPod(t *testing.T, mtu int) {
	t.Helper()
	gw := n.subnet.Addr().Next()
	mtuArg := fmt.Sprint(mtu)
	n.ns.MustRun(t, "ip", "link", "add", "cni0", "type", "bridge")
	n.ns.MustRun(t, "ip", "addr", "add", gw.String()+"/24", "dev", "cni0")
	n.ns.MustRun(t, "ip", "link", "set", "cni0", "mtu", mtuArg, "up")
	n.ns.MustRun(t, "ip", "link", "add", n.veth, "mtu", mtuArg, "type", "veth", "peer", "name", "eth0", "netns", n.pod.Name)
	n.ns.MustRun(t, "ip", "link", "set", n.veth, "master", "cni0", "up")
	n.pod.MustRun(t, "ip", "link", "set", "eth0", "mtu", mtuArg, "up")
	n.pod.MustRun(t, "ip", "addr", "add", n.podIP.String()+"/24", "dev", "eth0")
	n.pod.MustRun(t, "ip", "route", "add", "default", "via", gw.String())
	if n.subnet6.IsValid() {
		gw6 := n.subnet6.Addr().Next()
		n.ns.MustRun(t, "ip", "addr", "add", gw6.String()+"/64", "dev", "cni0", "nodad")
		n.pod.MustRun(t, "ip", "addr", "add", n.podIP6.String()+"/64", "dev", "eth0", "nodad")
		n.pod.MustRun(t, "ip", "-6", "route", "add", "default", "via", gw6.String())
	}
}

// register saves n's pod's endpoint record and registers the pod with the
// ebpf datapath, one endpoint per address, as weft-cni does.
func (n *testNode) register(t *testing.T) {
	t.Helper()
	must(t, n.store().Save(n.record(t)))
	n.registerEndpoints(t)
}

// registerEndpoints registers n's pod with the ebpf datapath, one endpoint
// per address, as weft-cni does (without a record: as older ones do).
func (n *testNode) registerEndpoints(t *testing.T) {
	t.Helper()
	ep := n.endpoint(t)
	for _, ip := range []netip.Addr{n.podIP, n.podIP6} {
		if ip.IsValid() {
			ep.IP = ip
			must(t, RegisterEndpoint(n.bpfDir, ep))
		}
	}
}

// record is n's pod's endpoint record as weft-cni saves it.
func (n *testNode) record(t *testing.T) endpoint.Record {
	t.Helper()
	r := endpoint.Record{ContainerID: "pod-" + n.pod.Name, IfName: "eth0", HostIfName: n.veth,
		MAC: n.endpoint(t).MAC.String(), IPs: []netip.Addr{n.podIP}}
	if n.podIP6.IsValid() {
		r.IPs = append(r.IPs, n.podIP6)
	}
	return r
}

// store is n's endpoint record store.
func (n *testNode) store() endpoint.Store { return endpoint.Store{Dir: n.endpointDir} }

// options are the datapath options of n with the attach mode attach.
func (n *testNode) options(attach string) Options {
	return Options{BPFDir: n.bpfDir, EndpointDir: n.endpointDir, Attach: attach}
}

// endpoint describes n's pod as the CNI plugin registers it.
func (n *testNode) endpoint(t *testing.T) Endpoint {
	t.Helper()
	ep := Endpoint{IP: n.podIP}
	must(t, n.ns.Do(func() error {
		l, err := netlink.LinkByName(n.veth)
		if err == nil {
			ep.HostIfindex = l.Attrs().Index
		}
		return err
	}))
	must(t, n.pod.Do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err == nil {
			ep.MAC = l.Attrs().HardwareAddr
		}
		return err
	}))
	return ep
}

// startEBPF runs the ebpf datapath for n (New in n's namespace, Setup,
// SetSubnet); it is cleaned up when the test ends.
func (n *testNode) startEBPF(t *testing.T, attach string) *Datapath {
	t.Helper()
	var dp *Datapath
	must(t, n.ns.Do(func() error {
		var err error
		dp, err = New(n.options(attach))
		return err
	}))
	n.setup(t, dp)
	t.Cleanup(func() { // n.dp: the datapath of the last restart
		if err := n.dp.Cleanup(context.Background()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		n.dp.Close()
	})
	return dp
}

func (n *testNode) setup(t *testing.T, dp datapath.Datapath) {
	t.Helper()
	ctx := context.Background()
	info, err := dp.Setup(ctx, n.node)
	must(t, err)
	must(t, dp.SetSubnet(ctx, n.subnet))
	n.dp, n.info = dp, info
}

// startKernel runs the kernel datapath alone for n (a flannel-like node).
func (n *testNode) startKernel(t *testing.T) {
	t.Helper()
	dp := kernel.New()
	must(t, n.ns.Do(func() error {
		info, err := dp.Setup(context.Background(), n.node)
		if err == nil {
			err = dp.SetSubnet(context.Background(), n.subnet)
		}
		n.dp, n.info = dp, info
		return err
	}))
}

// runningNodes starts two nodes as syncedNodes does, registers the pods
// and waits until pod 1 reaches pod 2.
func runningNodes(t *testing.T, backend datapath.Mode, attach string) [2]*testNode {
	t.Helper()
	nodes := syncedNodes(t, backend, attach)
	for _, n := range nodes {
		n.register(t)
	}
	waitPing(t, nodes[0].pod, nodes[1].podIP)
	return nodes
}

// syncedNodes starts two nodes of backend, each with one pod (MTU 1450 for
// vxlan, 1500 otherwise) and the ebpf datapath attached with attach, and
// syncs them.
func syncedNodes(t *testing.T, backend datapath.Mode, attach string) [2]*testNode {
	t.Helper()
	mtu := 1500
	if backend == datapath.ModeVXLAN {
		mtu = 1450
	}
	nodes := newTestNodes(t, backend)
	for _, n := range nodes {
		n.addPod(t, mtu)
		n.startEBPF(t, attach)
	}
	syncAll(t, nodes)
	return nodes
}

// syncAll tells every node about the others.
func syncAll(t *testing.T, nodes [2]*testNode) {
	t.Helper()
	for i, n := range nodes {
		o := nodes[1-i]
		peers := []datapath.Peer{{Subnet: o.subnet, NodeIP: o.node.NodeIP, VtepMAC: o.info.VtepMAC}}
		if o.subnet6.IsValid() {
			peers = append(peers, datapath.Peer{Subnet: o.subnet6, NodeIP: o.node.NodeIPv6, VtepMAC: o.info.VtepMACv6})
		}
		sync := func() error { return n.dp.Sync(context.Background(), peers) }
		if _, isKernel := n.dp.(*kernel.Datapath); isKernel {
			must(t, n.ns.Do(sync))
		} else {
			must(t, sync())
		}
	}
}

// waitPing pings from pod until one answer comes (first packets resolve
// neighbours), failing after a deadline.
func waitPing(t *testing.T, pod *testns.NS, dst netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := pod.Run("ping", "-c", "1", "-W", "1", dst.String())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ping answer from %s: %v", dst, err)
		}
	}
}

// pingSeries sends count pings every interval and fails on any loss.
func pingSeries(t *testing.T, pod *testns.NS, dst netip.Addr, count int, interval string) {
	t.Helper()
	out, err := pod.Run("ping", "-c", fmt.Sprint(count), "-i", interval, "-W", "2", dst.String())
	if err != nil || !strings.Contains(out, fmt.Sprintf("%d received", count)) {
		t.Fatalf("ping series to %s lost packets: %v\n%s", dst, err, out)
	}
}

// tcpTransfer sends size pseudo-random bytes from client's pod to server's
// pod (its IPv4 address) over TCP and checks they arrive intact.
func tcpTransfer(t *testing.T, client, server *testNode, size int) {
	t.Helper()
	addr := netip.AddrPortFrom(server.podIP, 5201).String()
	tcpTransferVia(t, client, server, addr, size)
}

// tcpTransferVia is tcpTransfer with the client dialling addr; the server
// listens on its pod's address of addr's family.
func tcpTransferVia(t *testing.T, client, server *testNode, addr string, size int) {
	t.Helper()
	listen := server.podIP
	if netip.MustParseAddrPort(addr).Addr().Is6() {
		listen = server.podIP6
	}
	var ln net.Listener
	must(t, server.pod.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(listen, 5201).String())
		return err
	}))
	defer ln.Close()
	type result struct {
		n   int64
		sum []byte
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		h := sha256.New()
		n, err := io.Copy(h, c)
		got <- result{n, h.Sum(nil), err}
	}()
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{1}).Read(data)
	var conn net.Conn
	must(t, client.pod.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, 10*time.Second)
		return err
	}))
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := conn.Write(data); err != nil {
		t.Fatalf("send to %s: %v", addr, err)
	}
	conn.Close()
	r := <-got
	want := sha256.Sum256(data)
	if r.err != nil || r.n != int64(size) || !bytes.Equal(r.sum, want[:]) {
		t.Fatalf("TCP transfer to %s: got %d bytes (err %v), want %d intact", addr, r.n, r.err, size)
	}
}

// counter returns the packets of one traffic counter in n's datapath's Stats.
func counter(t *testing.T, n *testNode, backend, direction string) uint64 {
	t.Helper()
	return stat(t, n, datapath.Counter{Backend: backend, Direction: direction})
}

// stat returns the packets of the counter of n's datapath's Stats with the
// labels of want.
func stat(t *testing.T, n *testNode, want datapath.Counter) uint64 {
	t.Helper()
	return find(t, n, want).Packets
}

// find returns the counter of n's datapath's Stats with the labels of want.
func find(t *testing.T, n *testNode, want datapath.Counter) datapath.Counter {
	t.Helper()
	all := stats(t, n)
	for _, c := range all {
		if c.Backend == want.Backend && c.Direction == want.Direction && c.Reason == want.Reason {
			return c
		}
	}
	t.Fatalf("no counter %+v in %+v", want, all)
	return datapath.Counter{}
}

// stats returns n's datapath's Stats.
func stats(t *testing.T, n *testNode) []datapath.Counter {
	t.Helper()
	var stats []datapath.Counter
	must(t, n.ns.Do(func() error { // the kernel datapath reads its device here
		var err error
		stats, err = n.dp.Stats()
		return err
	}))
	return stats
}

// fastPathTransfer is a TCP transfer long enough that most of it takes the
// fast path: a flow's first milliseconds (until weftd marks its entry
// liberal, offloadAfter) take the kernel path.
const fastPathTransfer = 128 << 20

// checkFastPath runs ping and TCP both ways and checks the ebpf counters of
// the ebpf nodes grew by at least what the transfers sent on the fast path.
func checkFastPath(t *testing.T, nodes [2]*testNode, backend string) {
	t.Helper()
	const pings, size = 20, fastPathTransfer
	before := map[*testNode][2]uint64{}
	for _, n := range nodes {
		if _, ok := n.dp.(*Datapath); ok {
			before[n] = [2]uint64{counter(t, n, backend, "tx"), counter(t, n, backend, "rx")}
		}
	}
	for i, n := range nodes {
		pingSeries(t, n.pod, nodes[1-i].podIP, pings, "0.05")
		tcpTransfer(t, n, nodes[1-i], size)
	}
	for n, b := range before {
		tx, rx := counter(t, n, backend, "tx")-b[0], counter(t, n, backend, "rx")-b[1]
		t.Logf("%s %s fast path: tx %d rx %d packets", n.node.NodeIP, backend, tx, rx)
		// Each direction carried one transfer's data and the other's ACKs:
		// size/64KiB packets each way once the connections were established
		// and their entries liberal; pings, handshakes, closes and a flow's
		// first milliseconds (until weftd marks it: offloadAfter) take the
		// kernel path, so at least half of that.
		if min := uint64(size / 65536 / 2); tx < min || rx < min {
			t.Errorf("%s %s counters grew by tx %d rx %d, want >= %d each: traffic bypassed the programs",
				n.node.NodeIP, backend, tx, rx, min)
		}
	}
}

func TestTrafficVXLAN(t *testing.T) {
	nodes := newTestNodes(t, datapath.ModeVXLAN)
	// Node 1 starts before its bridge exists: the link watcher attaches later.
	dp1 := nodes[0].startEBPF(t, AttachTCX)
	nodes[0].addPod(t, nodes[0].info.MTU)
	nodes[1].startEBPF(t, AttachTCX)
	nodes[1].addPod(t, nodes[1].info.MTU)
	if nodes[0].info.MTU != 1450 {
		t.Errorf("pod MTU %d, want 1450 (uplink 1500 - 50)", nodes[0].info.MTU)
	}
	syncAll(t, nodes)
	waitAttached(t, dp1, "cni0")
	for _, n := range nodes {
		n.register(t)
	}
	waitPing(t, nodes[0].pod, nodes[1].podIP)
	checkFastPath(t, nodes, BackendVXLAN)
	// Host-originated traffic goes out through flannel.1 and its replies
	// come back through it (the programs pass them up).
	nodes[0].ns.MustRun(t, "ping", "-c", "3", "-i", "0.05", "-W", "2", nodes[1].podIP.String())
}

// TestNATedFlowTakesStack: pod 1 reaches pod 2 through a DNAT on node 2
// (like a hostPort or NodePort). The reply must go through node 2's
// conntrack (un-DNAT) instead of being encapsulated straight from the pod.
func TestNATedFlowTakesStack(t *testing.T) {
	nodes := runningNodes(t, datapath.ModeVXLAN, AttachTCX)
	nodes[1].ns.MustRun(t, "nft", "add table ip weft_test; "+
		"add chain ip weft_test pre { type nat hook prerouting priority -100; }; "+
		"add rule ip weft_test pre tcp dport 8080 dnat to "+nodes[1].podIP.String()+":5201")
	tcpTransferVia(t, nodes[0], nodes[1], "192.168.50.2:8080", 1<<20)
	checkFastPath(t, nodes, BackendVXLAN)
}

// TestServiceDNATTakesStack: pod 1 reaches pod 2 through a Service DNAT on
// node 1, as kube-proxy installs it. With br_netfilter the bridge DNATs
// before cni0's tc ingress sees the packet, which then looks like plain
// pod-to-pod traffic; without it the program sees the Service address. Both
// ways the connection must go through node 1's stack (conntrack confirms it
// and translates replies back), while unrelated pod-to-pod traffic stays
// on the fast path.
func TestServiceDNATTakesStack(t *testing.T) {
	for _, brNetfilter := range []string{"1", "0"} {
		t.Run("bridge-nf-call-iptables="+brNetfilter, func(t *testing.T) {
			nodes := runningNodes(t, datapath.ModeVXLAN, AttachTCX)
			if _, err := nodes[0].ns.Run("sysctl", "-w", "net.bridge.bridge-nf-call-iptables="+brNetfilter); err != nil {
				t.Fatalf("set br_netfilter (load the br_netfilter module): %v", err)
			}
			nodes[0].ns.MustRun(t, "nft", "add table ip weft_test; "+
				"add chain ip weft_test pre { type nat hook prerouting priority dstnat; }; "+
				"add rule ip weft_test pre ip daddr 10.96.0.10 tcp dport 80 dnat to "+nodes[1].podIP.String()+":5201")
			tcpTransferVia(t, nodes[0], nodes[1], "10.96.0.10:80", 1<<20)
			checkFastPath(t, nodes, BackendVXLAN)
		})
	}
}

func TestTrafficHostGW(t *testing.T) {
	nodes := newTestNodes(t, datapath.ModeHostGW)
	for _, n := range nodes {
		n.startEBPF(t, AttachAuto)
		n.addPod(t, 1500)
	}
	syncAll(t, nodes)
	for _, n := range nodes {
		n.register(t)
	}
	waitPing(t, nodes[0].pod, nodes[1].podIP)
	checkFastPath(t, nodes, BackendHostGW)
}

func TestTrafficTCAttach(t *testing.T) {
	nodes := syncedNodes(t, datapath.ModeVXLAN, AttachTC)
	for _, n := range nodes {
		n.register(t)
		for _, dev := range []string{"eth0 ingress", "lo ingress", "cni0 ingress", "vethpod ingress"} {
			args := append([]string{"filter", "show", "dev"}, strings.Fields(dev)...)
			if out := n.ns.MustRun(t, "tc", args...); !strings.Contains(out, "weft_") || !strings.Contains(out, "direct-action") {
				t.Errorf("%s: no weft direct-action filter on %s:\n%s", n.node.NodeIP, dev, out)
			}
		}
		if pins, _ := filepath.Glob(filepath.Join(n.bpfDir, linkPinPrefix+"*")); len(pins) != 0 {
			t.Errorf("tc mode left tcx link pins: %v", pins)
		}
	}
	waitPing(t, nodes[0].pod, nodes[1].podIP)
	checkFastPath(t, nodes, BackendVXLAN)
}

// TestInteropKernelNode: an ebpf node and a kernel-only (flannel-like) node
// exchange traffic: the wire format is flannel's.
func TestInteropKernelNode(t *testing.T) {
	nodes := newTestNodes(t, datapath.ModeVXLAN)
	nodes[0].startEBPF(t, AttachAuto)
	nodes[1].startKernel(t)
	for _, n := range nodes {
		n.addPod(t, 1450)
	}
	syncAll(t, nodes)
	nodes[0].register(t)
	waitPing(t, nodes[0].pod, nodes[1].podIP)
	checkFastPath(t, nodes, BackendVXLAN)
	if rx := counter(t, nodes[1], "vxlan-kernel", "rx"); rx < 20 {
		t.Errorf("kernel node's flannel.1 received %d packets: the ebpf node's encapsulation did not reach it", rx)
	}
}

// TestRestart: Close and a new Datapath in the same namespace keep the
// pinned links (programs replaced in place) while a ping series loses nothing.
func TestRestart(t *testing.T) {
	nodes := runningNodes(t, datapath.ModeVXLAN, AttachTCX)
	n := nodes[0]
	linkID, progID := pinnedLink(t, n, "eth0_ingress")

	done := make(chan error, 1)
	go func() {
		out, err := n.pod.Run("ping", "-c", "200", "-i", "0.01", "-W", "2", nodes[1].podIP.String())
		if err == nil && !strings.Contains(out, "200 received") {
			err = fmt.Errorf("lost packets:\n%s", out)
		}
		done <- err
	}()
	for range 3 {
		select {
		case err := <-done:
			t.Fatalf("ping series ended before the restarts: %v", err)
		default:
		}
		must(t, n.dp.Close())
		var dp *Datapath
		must(t, n.ns.Do(func() error {
			var err error
			dp, err = New(n.options(AttachTCX))
			return err
		}))
		n.setup(t, dp)
		syncAll(t, nodes)
	}
	if err := <-done; err != nil {
		t.Errorf("ping during restarts: %v", err)
	}
	newLink, newProg := pinnedLink(t, n, "eth0_ingress")
	if newLink != linkID || newProg == progID {
		t.Errorf("link %d -> %d, program %d -> %d: want the same link with a new program", linkID, newLink, progID, newProg)
	}
	if ep := n.endpoint(t); ep.HostIfindex == 0 {
		t.Fatal("pod veth vanished")
	}
	checkFastPath(t, nodes, BackendVXLAN)
}

// pinnedLink returns the IDs of a pinned tcx link and its program.
func pinnedLink(t *testing.T, n *testNode, name string) (link.ID, ebpf.ProgramID) {
	t.Helper()
	l, err := link.LoadPinnedLink(filepath.Join(n.bpfDir, linkPinPrefix+name), nil)
	must(t, err)
	defer l.Close()
	info, err := l.Info()
	must(t, err)
	return info.ID, info.Program
}

// waitAttached waits until dp's programs are attached to dev.
func waitAttached(t *testing.T, dp *Datapath, dev string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := os.Stat(filepath.Join(dp.opts.BPFDir, linkPinPrefix+dev+"_ingress"))
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("programs not attached to %s: %v", dev, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestVXLANToSecondAddress: VXLAN that reaches a node on another of its
// addresses than the node IP (which its kernel vxlan socket accepts too) is
// validated: from an address that is no node it is dropped as unknown_node,
// from the peer with an inner source outside the peer's subnet as
// spoofed_source.
func TestVXLANToSecondAddress(t *testing.T) {
	nodes := runningNodes(t, datapath.ModeVXLAN, AttachTCX)
	n1, n2 := nodes[0], nodes[1]
	second, stranger := netip.MustParseAddr("192.168.50.20"), netip.MustParseAddr("192.168.50.9")
	n2.ns.MustRun(t, "ip", "addr", "add", second.String()+"/24", "dev", "eth0")
	n1.ns.MustRun(t, "ip", "addr", "add", stranger.String()+"/24", "dev", "eth0")
	for _, c := range []struct {
		from, innerSrc netip.Addr
		reason         weftDropReason
	}{
		{stranger, n1.podIP, weftDropReasonDROP_UNKNOWN_NODE},
		{n1.node.NodeIP, netip.MustParseAddr("10.244.7.7"), weftDropReasonDROP_SPOOFED_SOURCE},
	} {
		labels := datapath.Counter{Backend: BackendVXLAN, Reason: dropReasons[c.reason]}
		before := stat(t, n2, labels)
		inner := ethernet(n2.info.VtepMAC, n1.info.VtepMAC, etherTypeIPv4, tcpPacket(c.innerSrc, n2.podIP, 40000, 5201).bytes())
		payload := vxlanPacket(c.from, second, vxlanPort, 1, inner)[28:] // what follows the UDP header
		must(t, n1.ns.Do(func() error {
			conn, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(c.from, 0)),
				net.UDPAddrFromAddrPort(netip.AddrPortFrom(second, vxlanPort)))
			if err != nil {
				return err
			}
			defer conn.Close()
			_, err = conn.Write(payload)
			return err
		}))
		deadline := time.Now().Add(ioTimeout)
		for stat(t, n2, labels) == before {
			if time.Now().After(deadline) {
				t.Fatalf("VXLAN from %s with inner source %s to %s: no %s drop counted", c.from, c.innerSrc, second, labels.Reason)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

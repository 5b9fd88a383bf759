package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

// What a real node does beside forwarding pods' traffic (issue 9): the
// kubelet probes pods, netfilter rules filter them, pods misbehave, the
// underlay has a smaller MTU. Netfilter decides, eBPF forwards: these tests
// run the ebpf datapath against each (Docker's FORWARD policy of DROP is in
// firewall_test.go).

// probeInterval is how often a kubelet-like probe connects to a pod.
const probeInterval = time.Second

// prober connects from a node to a pod's port every probeInterval, as a
// kubelet's TCP readiness probe does, until the test ends.
type prober struct {
	ok, failed atomic.Int64
	lastErr    atomic.Value // string: errors differ in type
}

// startProber probes to from node n's namespace until t ends.
func startProber(t *testing.T, n *cluster.Node, to netip.AddrPort) *prober {
	t.Helper()
	p := &prober{}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(probeInterval)
		defer tick.Stop()
		for {
			p.probe(ctx, n, to)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return p
}

// probe connects once; a probe cut short because the test ended counts
// neither way.
func (p *prober) probe(parent context.Context, n *cluster.Node, to netip.AddrPort) {
	ctx, cancel := context.WithTimeout(parent, probeInterval)
	defer cancel()
	conn, err := n.NS.DialContext(ctx, "tcp", to.String())
	switch {
	case parent.Err() != nil:
	case err != nil:
		p.failed.Add(1)
		p.lastErr.Store(err.Error())
	default:
		p.ok.Add(1)
	}
	if conn != nil {
		conn.Close()
	}
}

// startEBPFPair builds a 2-node vxlan cluster on the ebpf datapath with a
// pod on each node (dual stack for IPv6), serves echo on echoPort in the
// second pod and waits until the first reaches its address of family f.
func startEBPFPair(t *testing.T, f cluster.Family) (c *cluster.Cluster, a, b *cluster.Pod) {
	t.Helper()
	stack := cluster.IPv4Only
	if f == cluster.IPv6 {
		stack = cluster.DualStack
	}
	c = start(t, cluster.Options{NetConf: cluster.StackNetConf(stack, "vxlan", "ebpf", false)})
	pods := addPods(t, c, 1)
	requireDatapaths(t, c, "ebpf")
	a, b = pods[0], pods[1]
	serveEcho(t, []*cluster.Pod{b})
	if err := waitReach(t.Context(), a.NS, b.IPOf(f)); err != nil {
		t.Fatal(err)
	}
	return c, a, b
}

// families runs test once per address family, IPv6 in a dual-stack
// cluster.
func families(t *testing.T, test func(t *testing.T, f cluster.Family)) {
	for _, f := range []cluster.Family{cluster.IPv4, cluster.IPv6} {
		t.Run(f.String(), func(t *testing.T) { test(t, f) })
	}
}

// TestProbesKeepFastPath probes a pod's serving port from its node every
// second (a kubelet's readiness probe) while a pod on another node streams
// to that port: the probes must not push the stream off the fast path.
func TestProbesKeepFastPath(t *testing.T) {
	families(t, func(t *testing.T, f cluster.Family) {
		c, a, b := startEBPFPair(t, f)
		ctx := t.Context()
		to := netip.AddrPortFrom(b.IPOf(f), echoPort)
		p := startProber(t, b.Node, to)
		if err := cluster.Eventually(ctx, 10*time.Second, "a probe answered before the stream", func() error {
			if p.ok.Load() == 0 {
				return fmt.Errorf("%d probes failed, last: %v", p.failed.Load(), p.lastErr.Load())
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		const stream = 5 * time.Second
		probesBefore := p.ok.Load()
		var sent int64
		d := carriedBytes(t, c.Nodes, func() {
			var err error
			if sent, err = a.NS.EchoStream(ctx, to, stream, streamRate); err != nil {
				t.Fatal(err)
			}
		})
		if during, failed := p.ok.Load()-probesBefore, p.failed.Load(); during < 3 || failed > 0 {
			t.Errorf("%d probes answered during the %v stream (want >= 3), %d failed (last: %v)", during, stream, failed, p.lastErr.Load())
		}
		requireFastPath(t, d, a.Node, b.Node, "vxlan", f, sent)
	})
}

// dialTimeout bounds a connection attempt that a rule may drop.
const dialTimeout = 3 * time.Second

// dial connects from ns to to and closes the connection at once.
func dial(ctx context.Context, ns *cluster.Netns, to netip.AddrPort) error {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	conn, err := ns.DialContext(ctx, "tcp", to.String())
	if err != nil {
		return err
	}
	return conn.Close()
}

// TestForwardRulesObeyed inserts a FORWARD REJECT of one port in the
// receiving node and a FORWARD DROP of one pod pair in the sending node, as
// a NetworkPolicy engine working in netfilter would: both must be obeyed on
// the ebpf datapath, and traffic the rules do not match must still flow,
// on the fast path. IPv6 (a dual-stack cluster, the rules in ip6tables)
// like IPv4.
func TestForwardRulesObeyed(t *testing.T) {
	families(t, func(t *testing.T, f cluster.Family) {
		for _, backend := range []string{"vxlan", "host-gw"} {
			t.Run(backend, func(t *testing.T) { forwardRulesObeyed(t, f, backend) })
		}
	})
}

// forwardRulesObeyed is TestForwardRulesObeyed for pod addresses of family
// f with backend.
func forwardRulesObeyed(t *testing.T, f cluster.Family, backend string) {
	stack, iptables := cluster.IPv4Only, "iptables"
	if f == cluster.IPv6 {
		stack, iptables = cluster.DualStack, "ip6tables"
	}
	c := start(t, cluster.Options{NetConf: cluster.StackNetConf(stack, backend, "ebpf", false)})
	ctx := t.Context()
	pods := addPods(t, c, 2)
	requireDatapaths(t, c, "ebpf")
	a1, a2, b1, b2 := pods[0], pods[1], pods[2], pods[3]
	sender, receiver := a1.Node, b1.Node
	serveEcho(t, pods)
	for _, p := range []*cluster.Pod{b1, b2} {
		s, err := p.NS.ServeEcho(altPort)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
	}
	for _, from := range []*cluster.Pod{a1, a2} {
		for _, to := range []*cluster.Pod{b1, b2} {
			if err := waitReach(ctx, from.NS, to.IPOf(f)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := receiver.Exec(ctx, iptables, "-I", "FORWARD", "-p", "tcp", "--dport", strconv.Itoa(altPort), "-j", "REJECT"); err != nil {
		t.Fatal(err)
	}
	if _, err := sender.Exec(ctx, iptables, "-I", "FORWARD", "-s", a1.IPOf(f).String(), "-d", b2.IPOf(f).String(), "-j", "DROP"); err != nil {
		t.Fatal(err)
	}

	// Rejected at the receiver: refused, whoever connects to whom
	// (a1 -> b2 is dropped at the sender first).
	for _, pair := range [][2]*cluster.Pod{{a1, b1}, {a2, b1}, {a2, b2}} {
		to := netip.AddrPortFrom(pair[1].IPOf(f), altPort)
		if err := dial(ctx, pair[0].NS, to); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%s -> %s: %v, want connection refused by the receiver's FORWARD REJECT", describe(pair[0]), to, err)
		}
	}
	// Dropped at the sender: TCP times out, pings are lost.
	if err := dial(ctx, a1.NS, netip.AddrPortFrom(b2.IPOf(f), echoPort)); err == nil {
		t.Errorf("%s -> %s:%d connected despite the sender's FORWARD DROP of the pair", describe(a1), describe(b2), echoPort)
	}
	if r, err := a1.NS.Ping(ctx, b2.IPOf(f), 3, 200*time.Millisecond); err != nil || r.Received != 0 {
		t.Errorf("ping %s -> %s despite the sender's FORWARD DROP: %d of %d answered (%v)", describe(a1), describe(b2), r.Received, r.Sent, err)
	}
	// Unaffected: other pairs, other ports; the stream on the fast path.
	requirePing(t, a2.NS, fmt.Sprintf("ping %s -> %s", describe(a2), describe(b2)), b2.IPOf(f))
	requirePing(t, a1.NS, fmt.Sprintf("ping %s -> %s", describe(a1), describe(b1)), b1.IPOf(f))
	if err := a2.NS.EchoRoundTrip(ctx, netip.AddrPortFrom(b2.IPOf(f), echoPort), transferSize); err != nil {
		t.Errorf("TCP %s -> %s: %v", describe(a2), describe(b2), err)
	}
	var sent int64
	d := carriedBytes(t, c.Nodes, func() {
		var err error
		if sent, err = a1.NS.EchoStream(ctx, netip.AddrPortFrom(b1.IPOf(f), echoPort), 2*time.Second, streamRate); err != nil {
			t.Errorf("TCP %s -> %s: %v", describe(a1), describe(b1), err)
		}
	})
	requireFastPath(t, d, sender, receiver, backend, f, sent)
}

// shortConns is how many short connections TestShortConnectionsClose opens.
const shortConns = 2000

// TestShortConnectionsClose opens thousands of short cross-node TCP
// connections (connect, send, receive, close): all must succeed, and
// afterwards neither node's conntrack may hold an ESTABLISHED entry for
// them: the kernel saw every FIN although established flows take the fast
// path.
func TestShortConnectionsClose(t *testing.T) {
	families(t, func(t *testing.T, f cluster.Family) {
		c, a, b := startEBPFPair(t, f)
		ctx := t.Context()
		to := netip.AddrPortFrom(b.IPOf(f), echoPort)
		const workers = 8
		jobs := make(chan int)
		var failed atomic.Int64
		var firstErr sync.Once
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range jobs {
					if err := a.NS.EchoRoundTrip(ctx, to, 1000); err != nil {
						failed.Add(1)
						firstErr.Do(func() { t.Errorf("short connection: %v", err) })
					}
				}
			}()
		}
		start := time.Now()
		for i := range shortConns {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		t.Logf("%d connections in %v", shortConns, time.Since(start).Round(time.Millisecond))
		if f := failed.Load(); f > 0 {
			t.Fatalf("%d of %d short connections failed", f, shortConns)
		}
		for _, n := range c.Nodes {
			var states map[string]int
			err := cluster.Eventually(ctx, 30*time.Second, n.Name+" has no ESTABLISHED entry for the closed connections", func() error {
				var err error
				if states, err = conntrackStates(ctx, n, a.IPOf(f), to); err != nil {
					return err
				}
				if states["ESTABLISHED"] > 0 {
					return fmt.Errorf("conntrack entries by state: %v", states)
				}
				return nil
			})
			if err != nil {
				t.Error(err)
				continue
			}
			t.Logf("%s: conntrack entries by state: %v", n.Name, states)
			total := 0
			for _, k := range states {
				total += k
			}
			// Entries linger in TIME_WAIT for two minutes: most must be listed,
			// or the listing is not reading what it should.
			if total < shortConns/2 {
				t.Errorf("%s: conntrack lists %d entries from %s to %s, want about %d", n.Name, total, a.IPOf(f), to, shortConns)
			}
		}
	})
}

// conntrackStates lists node n's TCP conntrack entries from src to dst and
// counts them by state (ESTABLISHED, TIME_WAIT, ...).
func conntrackStates(ctx context.Context, n *cluster.Node, src netip.Addr, dst netip.AddrPort) (map[string]int, error) {
	family := "ipv4"
	if src.Is6() {
		family = "ipv6"
	}
	cmd := n.NS.Command(ctx, "conntrack", "-L", "-f", family, "-p", "tcp", "-s", src.String(), "-d", dst.Addr().String(),
		"--dport", strconv.Itoa(int(dst.Port())))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("conntrack -L on %s: %w: %s", n.Name, err, stderr.String())
	}
	states := map[string]int{}
	for _, line := range strings.Split(string(out), "\n") {
		// tcp      6 117 TIME_WAIT src=... (the summary goes to stderr)
		f := strings.Fields(line)
		if len(f) >= 4 && f[0] == "tcp" {
			states[f[3]]++
		}
	}
	return states, nil
}

// spoofPort is where TestPodSpoofing's receiving pod counts datagrams.
const spoofPort = 7000

// Payloads of TestPodSpoofing's datagrams.
const (
	spoofedPayload = "spoofed"
	markerPayload  = "marker"
)

// udpSink counts the datagrams a pod receives, by payload.
type udpSink struct {
	conn *net.UDPConn
	mu   sync.Mutex
	got  map[string]int
	wg   sync.WaitGroup
}

// sinkUDP listens on port in ns until t ends.
func sinkUDP(t *testing.T, ns *cluster.Netns, port uint16) *udpSink {
	t.Helper()
	s := &udpSink{got: map[string]int{}}
	err := ns.Do(func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: int(port)})
		s.conn = c
		return err
	})
	if err != nil {
		t.Fatalf("UDP sink in %s: %v", ns.Name, err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 2048)
		for {
			k, _, err := s.conn.ReadFromUDP(buf)
			if err != nil {
				return // closed
			}
			s.mu.Lock()
			s.got[string(buf[:k])]++
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		s.conn.Close()
		s.wg.Wait()
	})
	return s
}

func (s *udpSink) count(payload string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[payload]
}

// sendUDP sends count datagrams of payload from ns to to, from the local
// address from (invalid: the kernel's choice).
func sendUDP(ns *cluster.Netns, from netip.Addr, to netip.AddrPort, payload string, count int) error {
	return ns.Do(func() error {
		var laddr *net.UDPAddr
		if from.IsValid() {
			laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0))
		}
		conn, err := net.DialUDP("udp4", laddr, net.UDPAddrFromAddrPort(to))
		if err != nil {
			return fmt.Errorf("UDP to %s from %s in %s: %w", to, from, ns.Name, err)
		}
		defer conn.Close()
		for range count {
			if _, err := conn.Write([]byte(payload)); err != nil {
				return fmt.Errorf("UDP to %s from %s in %s: %w", to, from, ns.Name, err)
			}
		}
		return nil
	})
}

// requireNoneArrived sends markers from p (its own address) to sink's port
// at to until one arrives, then requires that no spoofed datagram did:
// the spoofed ones were sent before, on the same path.
func requireNoneArrived(t *testing.T, p *cluster.Pod, sink *udpSink, to netip.AddrPort) {
	t.Helper()
	err := cluster.Eventually(t.Context(), convergeTimeout, "a marker from "+p.ID+" arrives", func() error {
		if sink.count(markerPayload) > 0 {
			return nil
		}
		return sendUDP(p.NS, netip.Addr{}, to, markerPayload, 1)
	})
	if err != nil {
		t.Fatal(err)
	}
	if k := sink.count(spoofedPayload); k > 0 {
		t.Errorf("%d spoofed datagrams reached %s", k, to)
	}
}

// TestPodSpoofing has pods send what they may not: with another pod's
// source address, with another MAC, and to a node's VXLAN port (which
// masquerade would give the node's own address). Each must be dropped at
// the pod's veth and counted under its reason.
func TestPodSpoofing(t *testing.T) {
	c := start(t, cluster.Options{NetConf: cluster.NetConf("vxlan", "ebpf", false)})
	ctx := t.Context()
	pods := addPods(t, c, 2)
	requireDatapaths(t, c, "ebpf")
	a, a2, b := pods[0], pods[1], pods[2]
	for _, p := range []*cluster.Pod{a, a2} {
		if err := waitReach(ctx, p.NS, b.IP); err != nil {
			t.Fatal(err)
		}
	}
	sender := a.Node
	drops := func(reason string) float64 {
		return metric(t, sender, "weft_datapath_drops_total", `reason="`+reason+`"`)
	}
	to := netip.AddrPortFrom(b.IP, spoofPort)
	const sent = 5

	t.Run("source IP", func(t *testing.T) {
		sink := sinkUDP(t, b.NS, spoofPort)
		// a2's address on a's interface: the kernel sends from it, with a's MAC.
		spoof := []string{"addr", "add", a2.IP.String() + "/32", "dev", "eth0"}
		if _, err := a.NS.Exec(ctx, "ip", spoof...); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			spoof[1] = "del"
			if _, err := a.NS.Exec(context.Background(), "ip", spoof...); err != nil {
				t.Error(err)
			}
		})
		before := drops("pod_source")
		if err := sendUDP(a.NS, a2.IP, to, spoofedPayload, sent); err != nil {
			t.Fatal(err)
		}
		requireNoneArrived(t, a, sink, to)
		if d := drops("pod_source") - before; d < sent {
			t.Errorf("weft_datapath_drops_total{reason=\"pod_source\"} grew by %v, want at least %d", d, sent)
		}
	})
	t.Run("source MAC", func(t *testing.T) {
		sink := sinkUDP(t, b.NS, spoofPort)
		out, err := a2.NS.Exec(ctx, "cat", "/sys/class/net/eth0/address")
		if err != nil {
			t.Fatal(err)
		}
		own := strings.TrimSpace(out)
		gw, gwMAC := gateway(t, a2.Node)
		before := drops("pod_source")
		// A new MAC flushes the pod's neighbours: a permanent one for the
		// gateway lets the datagrams leave at once, without ARP.
		for _, args := range [][]string{
			{"link", "set", "eth0", "address", "02:00:00:00:5b:01"},
			{"neigh", "replace", gw.String(), "lladdr", gwMAC, "dev", "eth0", "nud", "permanent"},
		} {
			if _, err := a2.NS.Exec(ctx, "ip", args...); err != nil {
				t.Fatal(err)
			}
		}
		serr := sendUDP(a2.NS, netip.Addr{}, to, spoofedPayload, sent)
		if _, err := a2.NS.Exec(ctx, "ip", "link", "set", "eth0", "address", own); err != nil {
			t.Fatal(err)
		}
		if serr != nil {
			t.Fatal(serr)
		}
		requireNoneArrived(t, a2, sink, to)
		if d := drops("pod_source") - before; d < sent {
			t.Errorf("weft_datapath_drops_total{reason=\"pod_source\"} grew by %v, want at least %d", d, sent)
		}
	})
	t.Run("to VXLAN port", func(t *testing.T) {
		for _, node := range c.Nodes {
			before := drops("pod_to_tunnel")
			if err := a.NS.Do(func() error { return sendVXLAN(node.IP, a.IP, b.IP, sent) }); err != nil {
				t.Fatal(err)
			}
			if err := cluster.Eventually(ctx, 10*time.Second, "pod_to_tunnel drops counted", func() error {
				if d := drops("pod_to_tunnel") - before; d != sent {
					return fmt.Errorf("VXLAN from %s to %s:%d: weft_datapath_drops_total{reason=\"pod_to_tunnel\"} grew by %v, want %d",
						describe(a), node.IP, vxlanPort, d, sent)
				}
				return nil
			}); err != nil {
				t.Error(err)
			}
		}
	})
}

// gateway returns the pods' gateway on node n (cni0's address and MAC).
func gateway(t *testing.T, n *cluster.Node) (netip.Addr, string) {
	t.Helper()
	env, err := n.SubnetEnv()
	if err != nil {
		t.Fatal(err)
	}
	gw, err := netip.ParsePrefix(env["FLANNEL_SUBNET"])
	if err != nil {
		t.Fatalf("%s: FLANNEL_SUBNET: %v", n.Name, err)
	}
	mac, err := n.Exec(t.Context(), "cat", "/sys/class/net/cni0/address")
	if err != nil {
		t.Fatal(err)
	}
	return gw.Addr(), strings.TrimSpace(mac)
}

// pathMTU is the underlay MTU between the segments in TestUnderlayMTU,
// below the nodes' 1500.
const pathMTU = 1300

// TestUnderlayMTU puts the nodes on two underlay segments whose router
// forwards at most pathMTU bytes toward the second: 1400-byte pings and a
// TCP stream between pods must still pass, because the outer header's DF is
// clear (as flannel's kernel vxlan leaves it) and the router fragments.
func TestUnderlayMTU(t *testing.T) {
	for _, dp := range []string{"ebpf", "kernel"} {
		t.Run(dp, func(t *testing.T) {
			c := start(t, cluster.Options{Segments: []int{0, 1}, NetConf: cluster.NetConf("vxlan", dp, false)})
			ctx := t.Context()
			pods := addPods(t, c, 1)
			requireDatapaths(t, c, dp)
			a, b := pods[0], pods[1]
			if _, err := c.Infra.Exec(ctx, "ip", "link", "set", "br1", "mtu", strconv.Itoa(pathMTU)); err != nil {
				t.Fatal(err)
			}
			serveEcho(t, pods)
			fragsBefore := snmp(t, c.Infra, "Ip", "FragCreates")
			for _, pair := range [][2]*cluster.Pod{{a, b}, {b, a}} {
				from, to := pair[0], pair[1]
				if err := waitReach(ctx, from.NS, to.IP); err != nil {
					t.Fatal(err)
				}
				r, err := from.NS.Ping(ctx, to.IP, 5, 100*time.Millisecond, "-s", "1400")
				if err != nil || r.Lost() != 0 {
					t.Errorf("1400-byte ping %s -> %s over a %d-byte underlay hop: lost %d of %d (%v):\n%s",
						describe(from), describe(to), pathMTU, r.Lost(), r.Sent, err, r.Output)
				}
			}
			var sent int64
			d := carriedBytes(t, c.Nodes, func() {
				var err error
				if sent, err = a.NS.EchoStream(ctx, netip.AddrPortFrom(b.IP, echoPort), 2*time.Second, streamRate); err != nil {
					t.Errorf("TCP %s -> %s over a %d-byte underlay hop: %v", describe(a), describe(b), pathMTU, err)
				}
			})
			if frags := snmp(t, c.Infra, "Ip", "FragCreates") - fragsBefore; frags == 0 {
				t.Errorf("the router created no fragments: the path MTU was not lowered")
			}
			// Toward the smaller hop the eBPF encapsulation sent full-size
			// packets, which only pass because their DF is clear.
			if fast := d[a.Node.Name+" vxlan-ebpf tx"]; dp == "ebpf" && fast < carriedShare*float64(sent) {
				t.Errorf("%s: vxlan-ebpf tx grew by %.0f bytes for a %d-byte stream: the fast path did not carry it", a.Node.Name, fast, sent)
			}
		})
	}
}

// snmp reads a counter of /proc/net/snmp (e.g. "Ip", "FragCreates") in ns.
func snmp(t *testing.T, ns *cluster.Netns, proto, name string) int64 {
	t.Helper()
	var out []byte
	err := ns.Do(func() error {
		var err error
		// /proc/net is the reading thread's network namespace.
		out, err = os.ReadFile("/proc/thread-self/net/snmp")
		return err
	})
	if err != nil {
		t.Fatalf("read /proc/net/snmp in %s: %v", ns.Name, err)
	}
	var header []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != proto+":" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i, h := range header {
			if h == name && i < len(f) {
				v, err := strconv.ParseInt(f[i], 10, 64)
				if err != nil {
					t.Fatalf("/proc/net/snmp in %s: %s %s: %v", ns.Name, proto, name, err)
				}
				return v
			}
		}
	}
	t.Fatalf("/proc/net/snmp in %s has no %s %s", ns.Name, proto, name)
	return 0
}

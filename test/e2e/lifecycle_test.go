package e2e

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

// TestNodeLeave removes a node's lease, once by deleting the key after
// stopping weftd and once by letting its etcd lease run out after a crash,
// and requires every other node to drop that peer's route, neighbour and fdb
// entry, of every family of the stack (IPv4 only, dual stack, IPv6 only).
func TestNodeLeave(t *testing.T) {
	for _, stack := range cluster.Stacks {
		t.Run(stack.String(), func(t *testing.T) { checkNodeLeave(t, stack) })
	}
}

// checkNodeLeave is TestNodeLeave for one stack.
func checkNodeLeave(t *testing.T, stack cluster.Stack) {
	c := start(t, cluster.Options{Nodes: 3, NetConf: cluster.StackNetConf(stack, "vxlan", "kernel", false)})
	ctx := t.Context()
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	waitVXLANConverged(t, c, c.Nodes...)

	steps := []struct {
		name   string
		leaver *cluster.Node
		sig    syscall.Signal
		remove func(key string) error
		stay   []*cluster.Node
	}{
		{"stopped and deleted", n3, syscall.SIGTERM, func(key string) error { return c.Etcd.Delete(ctx, key) }, []*cluster.Node{n1, n2}},
		{"crashed and expired", n2, syscall.SIGKILL, func(key string) error { return c.Etcd.ExpireLease(ctx, key) }, []*cluster.Node{n1}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			leases, err := c.Etcd.Leases(ctx)
			if err != nil {
				t.Fatal(err)
			}
			subnets, err := s.leaver.Subnets()
			if err != nil {
				t.Fatal(err)
			}
			var gone []peer
			for _, subnet := range subnets {
				a, ok := leases[subnet]
				if !ok || a.PublicIP != s.leaver.IPOf(cluster.FamilyOf(subnet.Addr())) {
					t.Fatalf("no lease of %s (%s) in %v", s.leaver.Name, subnet, leases)
				}
				p, err := peerOf(subnet, a)
				if err != nil {
					t.Fatal(err)
				}
				gone = append(gone, p)
			}
			key, err := c.Etcd.LeaseKey(ctx, subnets[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := s.leaver.StopWeftd(s.sig); err != nil {
				t.Fatal(err)
			}
			if err := s.remove(key); err != nil {
				t.Fatal(err)
			}
			for _, n := range s.stay {
				err := cluster.Eventually(ctx, convergeTimeout, n.Name+" forgets "+s.leaver.Name, func() error {
					var errs []error
					for _, p := range gone {
						errs = append(errs, checkVXLANPeerGone(n, p))
					}
					return errors.Join(errs...)
				})
				if err != nil {
					t.Error(err)
				}
			}
			waitVXLANConverged(t, c, s.stay...)
		})
	}
}

// TestUDPNodeLeave deletes a udp node's lease after stopping its weftd:
// the other nodes forget it. Their pods' pings to its pods get "net
// unreachable" from weftd's own loop (while the peer was known they went
// unanswered to the stopped node), and the eBPF peers map drops its subnet.
func TestUDPNodeLeave(t *testing.T) {
	for _, dp := range []string{"kernel", "ebpf"} {
		t.Run(dp, func(t *testing.T) {
			c := start(t, cluster.Options{Nodes: 3, NetConf: cluster.NetConf("udp", dp, false)})
			ctx := t.Context()
			pods := addPods(t, c, 1)
			n1, n3 := c.Nodes[0], c.Nodes[2]
			requirePing(t, pods[0].NS, "n1 pod -> n3 pod before n3 leaves", pods[2].IP)
			subnet, err := n3.Subnet()
			if err != nil {
				t.Fatal(err)
			}
			if err := n3.StopWeftd(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := c.Etcd.Delete(ctx, cluster.SubnetKey(subnet)); err != nil {
				t.Fatal(err)
			}
			err = cluster.Eventually(ctx, convergeTimeout, n1.Name+" forgets "+n3.Name, func() error {
				if dp == "ebpf" {
					if err := checkBPFPeer(n1, subnet, false); err != nil {
						return err
					}
				}
				r, _ := pods[0].NS.Ping(ctx, pods[2].IP, 1, 100*time.Millisecond)
				if !strings.Contains(r.Output, "Net Unreachable") {
					return fmt.Errorf("ping %s from n1's pod says no \"Net Unreachable\":\n%s", pods[2].IP, r.Output)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			requirePing(t, pods[0].NS, "n1 pod -> n2 pod after n3 left", pods[1].IP)
		})
	}
}

// floodCount and floodInterval size the ping flood across daemon restarts
// and upgrades: long enough to outlast four restarts (or three upgrades) on
// a busy machine.
const (
	floodCount    = 1500
	floodInterval = 10 * time.Millisecond
)

// TestHitlessRestart restarts weftd on both ends, gracefully and by
// SIGKILL, during a ping flood between their pods (the kernel path: ICMP
// never takes the fast path) and a TCP stream between them (on the ebpf
// datapath the fast path, once established): no ping may be lost, the
// stream must go on intact, on the fast path, and each node must keep its
// subnet. With udp the kernel path is weftd's own forwarding loop, which
// stops while weftd restarts: pings may be lost then, but the stream on the
// eBPF fast path must not notice. The IPv6 cases run a dual-stack cluster
// and send between the pods' IPv6 addresses; both subnets must stay.
func TestHitlessRestart(t *testing.T) {
	for _, tc := range []struct {
		datapath, backend string
		f                 cluster.Family
	}{
		{"kernel", "vxlan", cluster.IPv4}, {"ebpf", "vxlan", cluster.IPv4}, {"ebpf", "udp", cluster.IPv4},
		{"kernel", "vxlan", cluster.IPv6}, {"ebpf", "vxlan", cluster.IPv6},
	} {
		dp, stack := tc.datapath, cluster.IPv4Only
		if tc.f == cluster.IPv6 {
			stack = cluster.DualStack
		}
		t.Run(tc.f.String()+"/"+dp+"/"+tc.backend, func(t *testing.T) {
			c := start(t, cluster.Options{NetConf: cluster.StackNetConf(stack, tc.backend, dp, false)})
			ctx := t.Context()
			pods := addPods(t, c, 1)
			requireDatapaths(t, c, dp)
			subnets := nodeSubnets(t, c.Nodes)
			to := pods[1].IPOf(tc.f)
			if err := waitReach(ctx, pods[0].NS, to); err != nil {
				t.Fatal(err)
			}
			echo, err := pods[1].NS.ServeEcho(altPort)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { echo.Close() })
			var sent int64
			d := carriedBytes(t, c.Nodes, func() {
				l := startLoad(t, floodCount, pods[0].NS, to, pods[0].NS, netip.AddrPortFrom(to, altPort))
				restartBoth(t, c, subnets)
				res, n, err := l.finish(t)
				sent = n
				if (res.Lost() != 0 && tc.backend != "udp") || res.Sent != floodCount {
					t.Errorf("ping flood across restarts: lost %d of %d", res.Lost(), res.Sent)
				}
				t.Logf("ping flood across restarts: lost %d of %d", res.Lost(), res.Sent)
				if err != nil {
					t.Errorf("TCP stream across restarts: %v", err)
				}
			})
			if dp == "ebpf" {
				requireFastPath(t, d, c.Nodes[0], c.Nodes[1], tc.backend, tc.f, sent)
			}
			checkMesh(t, c, pods)
		})
	}
}

// nodeSubnets are the nodes' subnets, each as fmt.Sprint prints its list
// (see checkKeptSubnet).
func nodeSubnets(t *testing.T, nodes []*cluster.Node) map[*cluster.Node]string {
	t.Helper()
	out := map[*cluster.Node]string{}
	for _, n := range nodes {
		s, err := n.Subnets()
		if err != nil {
			t.Fatal(err)
		}
		out[n] = fmt.Sprint(s)
	}
	return out
}

// load is traffic that must outlast a disruption of the nodes: a ping
// flood every floodInterval and a paced TCP echo stream as long as it.
type load struct {
	flood  *cluster.Pinger
	stream chan error
	sent   int64 // bytes the stream sent each way; valid after stream
}

// startLoad starts a flood of count pings from pingFrom to pingTo, and an
// echo stream from streamFrom to the echo server at streamTo (streamRate,
// for as long as the flood lasts).
func startLoad(t *testing.T, count int, pingFrom *cluster.Netns, pingTo netip.Addr, streamFrom *cluster.Netns, streamTo netip.AddrPort) *load {
	t.Helper()
	flood, err := pingFrom.StartPing(t.Context(), pingTo, count, floodInterval)
	if err != nil {
		t.Fatal(err)
	}
	l := &load{flood: flood, stream: make(chan error, 1)}
	go func() {
		var err error
		l.sent, err = streamFrom.EchoStream(t.Context(), streamTo, time.Duration(count)*floodInterval, streamRate)
		l.stream <- err
	}()
	return l
}

// finish fails t if the flood or the stream ended before the disruption
// was over (spanned), then waits for both (wait).
func (l *load) finish(t *testing.T) (cluster.PingResult, int64, error) {
	t.Helper()
	l.spanned(t)
	return l.wait(t)
}

// spanned fails t if the flood or the stream has ended: the load must
// span the disruption, so call it once that is over.
func (l *load) spanned(t *testing.T) {
	t.Helper()
	if !l.flood.Running() {
		t.Fatalf("the ping flood ended before the disruption was over: raise its count")
	}
	select {
	case err := <-l.stream:
		t.Fatalf("the TCP stream ended before the disruption was over (%v): raise the flood's count", err)
	default:
	}
}

// wait waits for the flood and the stream to end and returns the flood's
// result, the bytes the stream sent each way and its error.
func (l *load) wait(t *testing.T) (cluster.PingResult, int64, error) {
	t.Helper()
	res, err := l.flood.Wait()
	if err != nil {
		t.Fatal(err)
	}
	serr := <-l.stream
	return res, l.sent, serr
}

// restartBoth restarts weftd on the first two nodes, each gracefully and
// then by SIGKILL, and requires that each keeps its subnet.
func restartBoth(t *testing.T, c *cluster.Cluster, subnets map[*cluster.Node]string) {
	t.Helper()
	ctx := t.Context()
	for _, r := range []struct {
		n   *cluster.Node
		sig syscall.Signal
	}{{c.Nodes[0], syscall.SIGTERM}, {c.Nodes[1], syscall.SIGTERM}, {c.Nodes[0], syscall.SIGKILL}, {c.Nodes[1], syscall.SIGKILL}} {
		if err := r.n.RestartWeftd(ctx, r.sig); err != nil {
			t.Fatal(err)
		}
		if err := r.n.WaitReady(ctx, subnetTimeout); err != nil {
			t.Fatal(err)
		}
		checkKeptSubnet(t, c, r.n, subnets[r.n])
	}
}

// checkKeptSubnet requires that node n still announces subnets (its
// subnets, as fmt.Sprint prints them), in its subnet file and in its etcd
// lease, and that no other lease names them.
func checkKeptSubnet(t *testing.T, c *cluster.Cluster, n *cluster.Node, subnets string) {
	t.Helper()
	err := cluster.Eventually(t.Context(), subnetTimeout, n.Name+" keeps "+subnets, func() error {
		got, err := n.Subnets()
		if err != nil {
			return err
		}
		if fmt.Sprint(got) != subnets {
			return fmt.Errorf("subnet file says %v, had %s", got, subnets)
		}
		leases, err := c.Etcd.Leases(t.Context())
		if err != nil {
			return err
		}
		for _, own := range got {
			ip := n.IPOf(cluster.FamilyOf(own.Addr()))
			for s, a := range leases {
				if cluster.FamilyOf(s.Addr()) == cluster.FamilyOf(own.Addr()) && (s == own) != (a.PublicIP == ip) {
					return fmt.Errorf("lease %s has PublicIP %s; %s (%s) holds %s", s, a.PublicIP, n.Name, ip, own)
				}
			}
			if _, ok := leases[own]; !ok {
				return fmt.Errorf("no lease for %s in etcd", own)
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// etcdOutage is how long etcd stays down in TestEtcdOutage.
const etcdOutage = 30 * time.Second

// TestEtcdOutage stops etcd while pods talk: forwarding must go on and no
// weftd may exit. A node started during the outage joins once etcd is back,
// and the others program it.
func TestEtcdOutage(t *testing.T) {
	c := start(t, cluster.Options{Nodes: 3, NetConf: cluster.NetConf("vxlan", "kernel", false), NoStart: true})
	ctx := t.Context()
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	for _, n := range []*cluster.Node{n1, n2} {
		if err := n.StartWeftd(ctx); err != nil {
			t.Fatal(err)
		}
	}
	p1, err := n1.AddPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := n2.AddPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := waitReach(ctx, p1.NS, p2.IP); err != nil {
		t.Fatal(err)
	}
	interval := 200 * time.Millisecond
	series, err := p1.NS.StartPing(ctx, p2.IP, int((etcdOutage+5*time.Second)/interval), interval)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Etcd.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := n3.StartWeftd(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-time.After(etcdOutage):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	for _, n := range c.Nodes {
		if done, err := n.WeftdExited(); done {
			t.Errorf("weftd on %s exited during the etcd outage: %v", n.Name, err)
		}
	}
	if _, err := os.Stat(n3.SubnetFile); !os.IsNotExist(err) {
		t.Errorf("%s wrote a subnet file while etcd was down (no lease to back it): %v", n3.Name, err)
	}
	if !series.Running() {
		t.Fatal("the ping series ended before etcd came back: it must span the outage")
	}
	if err := c.Etcd.Start(ctx); err != nil {
		t.Fatal(err)
	}
	p3, err := n3.AddPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]*cluster.Pod{{p1, p3}, {p3, p2}, {p2, p3}} {
		requirePing(t, pair[0].NS, fmt.Sprintf("%s -> %s after the outage", describe(pair[0]), describe(pair[1])), pair[1].IP)
	}
	res, err := series.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.Lost() != 0 {
		t.Errorf("pings across the etcd outage: lost %d of %d:\n%s", res.Lost(), res.Sent, res.Output)
	}
	waitVXLANConverged(t, c, c.Nodes...)
}

// badNetConf has SubnetLen 31, beyond flannel's limit of 30.
const badNetConf = `{"Network":"10.244.0.0/16","SubnetLen":31,"Backend":{"Type":"vxlan","Datapath":"kernel"}}`

// TestBadNetConf gives weftd an invalid net-conf.json. Decided behaviour:
// weftd logs one error line naming the bad key, programs nothing, takes no
// lease, stays up and retries; once the config is fixed in etcd it comes up
// without a restart.
func TestBadNetConf(t *testing.T) {
	c := start(t, cluster.Options{Nodes: 1, NetConf: badNetConf})
	ctx := t.Context()
	n := c.Nodes[0]
	var line string
	err := cluster.Eventually(ctx, convergeTimeout, "an error naming SubnetLen in weftd's log", func() error {
		if done, err := n.WeftdExited(); done {
			return fmt.Errorf("weftd exited on a bad net-conf.json (%v): it must log and retry", err)
		}
		log, err := n.Log()
		if err != nil {
			return err
		}
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, "SubnetLen") && !strings.HasPrefix(l, "### harness") {
				line = l
				return nil
			}
		}
		return errors.New("no such line yet")
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("weftd: %s", line)
	if !strings.Contains(strings.ToLower(line), "error") {
		t.Errorf("the line naming SubnetLen is not an error: %s", line)
	}
	if log, _ := n.Log(); strings.Contains(log, "panic:") || strings.Contains(log, "goroutine ") {
		t.Errorf("weftd panicked on a bad net-conf.json:\n%s", log)
	}
	if _, err := os.Stat(n.SubnetFile); !os.IsNotExist(err) {
		t.Errorf("subnet file written despite the bad config: %v", err)
	}
	if out, err := n.Exec(ctx, "ip", "link", "show", vxlanDev); err == nil {
		t.Errorf("%s created despite the bad config:\n%s", vxlanDev, out)
	}
	if leases, err := c.Etcd.Leases(ctx); err != nil || len(leases) != 0 {
		t.Errorf("leases taken despite the bad config: %v %v", leases, err)
	}

	if err := c.Etcd.Put(ctx, cluster.ConfigKey, cluster.NetConf("vxlan", "kernel", false)); err != nil {
		t.Fatal(err)
	}
	if _, err := n.WaitSubnet(ctx, 2*subnetTimeout); err != nil {
		t.Fatalf("weftd did not come up after the config was fixed: %v", err)
	}
}

package firewall

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/test/testns"
)

// TestTraffic sends TCP from a pod through a dual-stack node with the rules
// to an outside host that also stands in for another node's pod subnet, in
// each family:
//
//	pod 10.244.1.2 --- 10.244.1.1 node 192.0.2.1 --- 192.0.2.2 outside
//	fd10:244:0:1::2    fd10:244:0:1::1  2001:db8::1    2001:db8::2
//	                                              (lo 10.244.2.1, fd10:244:0:2::1)
//
// Leaving the cluster the pod must appear as the node; towards another
// cluster subnet it must keep its own address. In iptables mode the node's
// FORWARD policies are DROP, as Docker sets them, and the forward rules must
// let the pod's traffic through.
func TestTraffic(t *testing.T) {
	for _, nft := range []bool{false, true} {
		name := map[bool]string{false: "iptables", true: "nftables"}[nft]
		t.Run(name, func(t *testing.T) {
			c := dual
			c.NFTables = nft
			testTraffic(t, c)
		})
	}
}

// trafficFamily is one family's addresses in testTraffic.
type trafficFamily struct {
	f              *family
	pod, node      netip.Addr
	outside, other string
}

var trafficFamilies = []trafficFamily{
	{ipv4, netip.MustParseAddr("10.244.1.2"), netip.MustParseAddr("192.0.2.1"), "192.0.2.2", "10.244.2.1"},
	{ipv6, netip.MustParseAddr("fd10:244:0:1::2"), netip.MustParseAddr("2001:db8::1"), "2001:db8::2", "fd10:244:0:2::1"},
}

func testTraffic(t *testing.T, c Config) {
	prefix := testns.Prefix()
	pod := testns.New(t, prefix, "pod")
	node := testns.New(t, prefix, "node")
	outside := testns.New(t, prefix, "outside")
	pod.MustRun(t, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "vpod", "netns", node.Name)
	outside.MustRun(t, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "vout", "netns", node.Name)
	for _, step := range []struct {
		ns   *testns.NS
		args []string
	}{
		{pod, []string{"ip", "addr", "add", "10.244.1.2/24", "dev", "eth0"}},
		{pod, []string{"ip", "addr", "add", "fd10:244:0:1::2/64", "dev", "eth0", "nodad"}},
		{pod, []string{"ip", "link", "set", "eth0", "up"}},
		{pod, []string{"ip", "route", "add", "default", "via", "10.244.1.1"}},
		{pod, []string{"ip", "-6", "route", "add", "default", "via", "fd10:244:0:1::1"}},
		{node, []string{"ip", "addr", "add", "10.244.1.1/24", "dev", "vpod"}},
		{node, []string{"ip", "addr", "add", "fd10:244:0:1::1/64", "dev", "vpod", "nodad"}},
		{node, []string{"ip", "addr", "add", "192.0.2.1/24", "dev", "vout"}},
		{node, []string{"ip", "addr", "add", "2001:db8::1/64", "dev", "vout", "nodad"}},
		{node, []string{"ip", "link", "set", "vpod", "up"}},
		{node, []string{"ip", "link", "set", "vout", "up"}},
		{node, []string{"ip", "route", "add", "10.244.2.0/24", "via", "192.0.2.2"}},
		{node, []string{"ip", "-6", "route", "add", "fd10:244:0:2::/64", "via", "2001:db8::2"}},
		{node, []string{"sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"}},
		{outside, []string{"ip", "addr", "add", "192.0.2.2/24", "dev", "eth0"}},
		{outside, []string{"ip", "addr", "add", "2001:db8::2/64", "dev", "eth0", "nodad"}},
		{outside, []string{"ip", "addr", "add", "10.244.2.1/32", "dev", "lo"}},
		{outside, []string{"ip", "addr", "add", "fd10:244:0:2::1/128", "dev", "lo"}},
		{outside, []string{"ip", "link", "set", "eth0", "up"}},
		{outside, []string{"ip", "route", "add", "10.244.1.0/24", "via", "192.0.2.1"}},
		{outside, []string{"ip", "-6", "route", "add", "fd10:244:0:1::/64", "via", "2001:db8::1"}},
	} {
		step.ns.MustRun(t, step.args[0], step.args[1:]...)
	}
	sources := listen(t, outside)
	from := func(dst string) netip.Addr {
		t.Helper()
		return connectFrom(t, pod, sources, dst)
	}

	// Without the rules the outside sees the pod: the checks below can fail.
	for _, tf := range trafficFamilies {
		if got := from(tf.outside); got != tf.pod {
			t.Fatalf("before Ensure the outside saw %s, want the pod's %s", got, tf.pod)
		}
		if !c.NFTables {
			// A drop policy stops the pod until the forward rules are in.
			node.MustRun(t, tf.f.tool, "-P", "FORWARD", "DROP")
			if err := dial(pod, tf.outside, time.Second); err == nil {
				t.Fatalf("%s FORWARD policy DROP let the pod through without the forward rules", tf.f.tool)
			}
		}
	}
	fw := New()
	if err := node.Do(func() error { return fw.Ensure(t.Context(), c) }); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	for _, tf := range trafficFamilies {
		if got := from(tf.outside); got != tf.node {
			t.Errorf("pod to outside: source %s, want the node's %s (masqueraded)", got, tf.node)
		}
		if got := from(tf.other); got != tf.pod {
			t.Errorf("pod to another node's subnet: source %s, want the pod's %s (not masqueraded)", got, tf.pod)
		}
	}
}

// listen accepts TCP on port 8080 of every address in ns and reports each
// peer's address.
func listen(t *testing.T, ns *testns.NS) <-chan netip.Addr {
	t.Helper()
	var l net.Listener
	if err := ns.Do(func() (err error) {
		l, err = net.Listen("tcp", ":8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan netip.Addr, 8)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			ch <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			c.Close()
		}
	}()
	return ch
}

// dial connects from ns to dst:8080 within timeout.
func dial(ns *testns.NS, dst string, timeout time.Duration) error {
	return ns.Do(func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(dst, "8080"), timeout)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// connectFrom connects from ns to dst:8080 and returns the source address
// the listener saw.
func connectFrom(t *testing.T, ns *testns.NS, sources <-chan netip.Addr, dst string) netip.Addr {
	t.Helper()
	if err := dial(ns, dst, 5*time.Second); err != nil {
		t.Fatalf("connect to %s: %v", dst, err)
	}
	select {
	case a := <-sources:
		return a
	case <-time.After(5 * time.Second):
		t.Fatalf("connection to %s never reached the listener", dst)
		return netip.Addr{}
	}
}

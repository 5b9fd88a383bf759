package kernel_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/datapath/kernel"
)

// checkDevice6 fails t unless n's flannel-v6.1 is flannel's: vxlan id 1
// over n's IPv6 node IP on eth0, port 8472, nolearning, MTU 1430 (uplink -
// 70), up, with the published MAC, taking no router advertisements.
func checkDevice6(t *testing.T, n *testNode) {
	t.Helper()
	dev := n.link(t, kernel.DeviceNameV6(1))
	d := dev.LinkInfo.Data
	if dev.LinkInfo.Kind != "vxlan" || d.ID != 1 || d.Local6 != n.node.NodeIPv6.String() || d.Link != "eth0" || d.Port != 8472 ||
		d.Learning || d.GBP || dev.MTU != 1430 || !slices.Contains(dev.Flags, "UP") || dev.Address != n.info.VtepMACv6.String() {
		t.Fatalf("flannel-v6.1 = %+v, want vxlan id 1 local %s dev eth0 port 8472 nolearning mtu 1430 up, MAC %s",
			dev, n.node.NodeIPv6, n.info.VtepMACv6)
	}
	if ra := strings.TrimSpace(n.ns.MustRun(t, "cat", "/proc/sys/net/ipv6/conf/flannel-v6.1/accept_ra")); ra != "0" {
		t.Errorf("flannel-v6.1 accept_ra = %s, want 0", ra)
	}
	if fwd := strings.TrimSpace(n.ns.MustRun(t, "cat", "/proc/sys/net/ipv6/conf/all/forwarding")); fwd != "1" {
		t.Errorf("IPv6 forwarding = %s after Setup", fwd)
	}
}

// tcpEcho sends 1 MiB from from's pod to dst (a pod of to), which echoes
// it, and fails t unless the same bytes come back: TCP across the nodes,
// with full-size segments that must fit the devices' MTU.
func tcpEcho(t *testing.T, from, to *testNode, dst netip.Addr) {
	t.Helper()
	addr := netip.AddrPortFrom(dst, 5201).String()
	var ln net.Listener
	if err := to.pod.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		_, _ = io.Copy(c, c)
	}()

	var conn net.Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := from.pod.Do(func() (err error) {
			conn, err = net.DialTimeout("tcp", addr, time.Second)
			return err
		})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s cannot connect to %s: %v", from.pod.Name, addr, err)
		}
		time.Sleep(100 * time.Millisecond) // back off between connection attempts
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1<<20)
	_, _ = rand.Read(data)
	sent := make(chan error, 1)
	go func() {
		_, err := conn.Write(data)
		sent <- errors.Join(err, conn.(*net.TCPConn).CloseWrite())
	}()
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("echo from %s: %v after %d bytes", addr, err, len(got))
	}
	if err := <-sent; err != nil {
		t.Fatalf("send to %s: %v", addr, err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echo from %s: got %d bytes back, not the %d sent", addr, len(got), len(data))
	}
}

func TestVXLANDualStack(t *testing.T) {
	nodes := newStackCluster(t, datapath.ModeVXLAN, false, dualStack)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	setupAll(t, nodes)

	checkDevice6(t, n1)
	if mtu := n1.device(t, 1).MTU; mtu != 1450 {
		t.Errorf("flannel.1 MTU %d, want 1450", mtu)
	}
	if n1.info.MTU != 1430 || n1.info.VtepMAC == nil || n1.info.VtepMAC.String() == n1.info.VtepMACv6.String() {
		t.Errorf("Info = %+v, want MTU 1430 (the smaller family's) and a MAC per device", n1.info)
	}
	for _, f := range []testFamily{fam4, fam6} {
		checkVXLANOf(t, f, n1, n2, n3)
		checkVXLANOf(t, f, n3, n1, n2)
	}
	pingAll(t, nodes, fam4, fam6)
	tcpEcho(t, n1, n3, n3.podIP6)
	tcpEcho(t, n3, n2, n2.podIP)

	t.Run("drift repair", func(t *testing.T) {
		n1.ns.MustRun(t, "ip", "-6", "route", "del", n2.subnet6.String(), "dev", "flannel-v6.1")
		n1.ns.MustRun(t, "ip", "-6", "neigh", "del", n3.subnet6.Addr().String(), "dev", "flannel-v6.1")
		n1.ns.MustRun(t, "bridge", "fdb", "del", n2.info.VtepMACv6.String(), "dev", "flannel-v6.1", "dst", n2.node.NodeIPv6.String())
		n1.ns.MustRun(t, "ip", "-6", "addr", "add", "fd10:244:0:99::/128", "dev", "flannel-v6.1", "nodad")
		n1.ns.MustRun(t, "ip", "link", "set", "flannel-v6.1", "mtu", "1400")
		n1.mustSync(t, peersOf(n1, nodes))
		checkVXLANOf(t, fam6, n1, n2, n3)
		checkVXLANOf(t, fam4, n1, n2, n3)
		checkDevice6(t, n1)
		n1.ping(t, n2.podIP6)

		// A recreated device gets the published MAC back, in this process
		// and in a restarted one.
		mac := n1.info.VtepMACv6.String()
		n1.ns.MustRun(t, "ip", "link", "del", "flannel-v6.1")
		n1.setup(t)
		restarted := *n1
		restarted.dp = kernel.New()
		restarted.setup(t)
		if n1.info.VtepMACv6.String() != mac || restarted.info.VtepMACv6.String() != mac {
			t.Fatalf("VtepMACv6 after recreation %s, after restart %s, want the published %s", n1.info.VtepMACv6, restarted.info.VtepMACv6, mac)
		}
		restarted.mustSync(t, peersOf(n1, nodes))
		checkVXLANOf(t, fam6, &restarted, n2, n3)
		restarted.ping(t, n3.podIP6)
		n1.mustSync(t, peersOf(n1, nodes))
	})

	t.Run("a peer leaving", func(t *testing.T) {
		// Apply: n2's IPv6 half goes, its IPv4 half stays.
		n1.mustApply(t, slices.DeleteFunc(peersOf(n1, nodes), func(p datapath.Peer) bool { return p.Subnet == n2.subnet6 }))
		checkVXLANOf(t, fam6, n1, n3)
		checkVXLANOf(t, fam4, n1, n2, n3)
		if _, err := n1.pod.Run("ping", "-c1", "-W1", n2.podIP6.String()); err == nil {
			t.Error("a removed IPv6 peer is still reachable")
		}
		n1.ping(t, n2.podIP)
		// Sync: n3 leaves altogether.
		n1.mustSync(t, n2.peers())
		checkVXLANOf(t, fam6, n1, n2)
		checkVXLANOf(t, fam4, n1, n2)
		n1.ping(t, n2.podIP6)
		n1.mustSync(t, peersOf(n1, nodes))
		checkVXLANOf(t, fam6, n1, n2, n3)
	})

	t.Run("stale removal", func(t *testing.T) {
		// A leftover route on the device and a host-gw route into the
		// IPv6 network are ours; a route outside it and one into the own
		// subnet are not.
		n1.ns.MustRun(t, "ip", "-6", "route", "add", "fd10:244:0:77::/64", "via", "fd10:244:0:77::", "dev", "flannel-v6.1", "onlink")
		n1.ns.MustRun(t, "ip", "-6", "route", "add", "fd10:244:0:66::/64", "via", "fd00:10::2", "dev", "eth0")
		n1.ns.MustRun(t, "ip", "-6", "route", "add", "fd99::/64", "via", "fd00:10::2", "dev", "eth0")
		n1.ns.MustRun(t, "ip", "-6", "route", "add", "fd10:244:0:1:8000::/65", "via", "fd00:10::2", "dev", "eth0")
		n1.mustSync(t, peersOf(n1, nodes))
		checkVXLANOf(t, fam6, n1, n2, n3)
		got := n1.familyRoutes(t, fam6, "dev", "eth0", "proto", "boot")
		want := []string{"fd00:20::/64 via fd00:10::254", "fd10:244:0:1:8000::/65 via fd00:10::2", "fd99::/64 via fd00:10::2"}
		if !slices.Equal(got, want) {
			t.Errorf("IPv6 routes on eth0 %q, want %q", got, want)
		}
	})

	t.Run("cleanup", func(t *testing.T) {
		if err := n1.ns.Do(func() error { return n1.dp.Cleanup(context.Background()) }); err != nil {
			t.Fatal(err)
		}
		for _, dev := range []string{"flannel.1", "flannel-v6.1"} {
			if out, err := n1.ns.Run("ip", "link", "show", dev); err == nil {
				t.Errorf("%s survived Cleanup: %s", dev, out)
			}
		}
		// weftd --cleanup (no Setup) finds a flannel-v6.<N> too.
		n2.ns.MustRun(t, "ip", "link", "add", "flannel-v6.9", "type", "vxlan", "id", "9", "local", "fd00:10::2", "dev", "eth0", "dstport", "8472")
		if err := n2.ns.Do(func() error { return kernel.New().Cleanup(context.Background()) }); err != nil {
			t.Fatal(err)
		}
		for _, dev := range []string{"flannel.1", "flannel-v6.1", "flannel-v6.9"} {
			if out, err := n2.ns.Run("ip", "link", "show", dev); err == nil {
				t.Errorf("%s survived Cleanup without Setup: %s", dev, out)
			}
		}
	})
}

func TestVXLANIPv6Only(t *testing.T) {
	nodes := newStackCluster(t, datapath.ModeVXLAN, false, ipv6Only)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	// An IPv4 device left from an earlier configuration goes.
	n1.ns.MustRun(t, "ip", "link", "add", "flannel.1", "type", "vxlan", "id", "1", "dev", "eth0", "dstport", "8472")
	setupAll(t, nodes)
	checkDevice6(t, n1)
	if n1.info.MTU != 1430 || n1.info.VtepMAC != nil {
		t.Errorf("Info = %+v, want MTU 1430 and no IPv4 VtepMAC", n1.info)
	}
	for _, n := range nodes {
		if out, err := n.ns.Run("ip", "link", "show", "flannel.1"); err == nil {
			t.Errorf("%s: IPv6-only node has flannel.1: %s", n.ns.Name, out)
		}
		if got := n.routes(t); len(got) != 0 {
			t.Errorf("%s: IPv4 routes on an IPv6-only node: %q", n.ns.Name, got)
		}
	}
	checkVXLANOf(t, fam6, n1, n2, n3)
	checkVXLANOf(t, fam6, n3, n1, n2)
	pingAll(t, nodes, fam6)
	tcpEcho(t, n3, n1, n1.podIP6)

	checkTraffic(t, n1, "flannel-v6.1")
	// A subnet of a family the node does not run is refused.
	err := n1.ns.Do(func() error { return n1.dp.SetSubnet(context.Background(), netip.MustParsePrefix("10.244.1.0/24")) })
	if err == nil || !strings.Contains(err.Error(), "does not run IPv4") {
		t.Errorf("SetSubnet(IPv4) on an IPv6-only node: %v", err)
	}
}

// TestHostGWIPv6 runs host-gw with IPv6 on dual-stack and IPv6-only nodes:
// routes via the peer's IPv6 node IP on the uplink.
func TestHostGWIPv6(t *testing.T) {
	for name, st := range map[string]stack{"dual-stack": dualStack, "IPv6-only": ipv6Only} {
		t.Run(name, func(t *testing.T) {
			nodes := newStackCluster(t, datapath.ModeHostGW, false, st)
			n1, n2 := nodes[0], nodes[1]
			for _, n := range nodes[:2] {
				n.setup(t)
				if n.info.MTU != 1500 || n.info.VtepMACv6 != nil {
					t.Fatalf("host-gw Info = %+v, want no MAC and MTU 1500", n.info)
				}
			}
			n1.mustSync(t, n2.peers())
			n2.mustSync(t, n1.peers())
			want := []string{"fd10:244:0:1::/64 dev veth0", "fd10:244:0:2::/64 via fd00:10::2 dev eth0"}
			if got := podRoutesOf(t, n1, fam6); !slices.Equal(got, want) {
				t.Fatalf("n1 IPv6 routes into the network = %q, want %q", got, want)
			}
			if out, err := n1.ns.Run("ip", "link", "show", "flannel-v6.1"); err == nil {
				t.Errorf("host-gw created a vxlan device: %s", out)
			}
			n1.ping(t, n2.podIP6)
			tcpEcho(t, n2, n1, n1.podIP6)
			if st == dualStack {
				n1.ping(t, n2.podIP)
			}
			// The peer leaving takes its route.
			n1.mustSync(t, nil)
			if got := podRoutesOf(t, n1, fam6); !slices.Equal(got, want[:1]) {
				t.Errorf("n1 IPv6 routes after n2 left = %q, want %q", got, want[:1])
			}
		})
	}
}

// TestDirectRoutingIPv6: a vxlan node with DirectRouting routes to an IPv6
// peer on its segment on the uplink and to one behind the router through
// flannel-v6.1.
func TestDirectRoutingIPv6(t *testing.T) {
	nodes := newStackCluster(t, datapath.ModeVXLAN, true, ipv6Only)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	setupAll(t, nodes)
	checkVXLANOf(t, fam6, n1, n3)
	if got := n1.familyRoutes(t, fam6, n2.subnet6.String()); !slices.Equal(got, []string{n2.subnet6.String() + " via fd00:10::2 dev eth0"}) {
		t.Fatalf("n1 route to %s = %q, want a host-gw route via fd00:10::2 dev eth0", n2.subnet6, got)
	}
	checkVXLANOf(t, fam6, n3, n1, n2)
	n1.ping(t, n2.podIP6)
	n1.ping(t, n3.podIP6)
	n3.ping(t, n2.podIP6)
}

package cluster

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/test/testns"
)

// fakeWeftd stands in for weftd so the harness can be tested alone: it
// writes a dual-stack subnet file from $FAKE_SUBNET and $FAKE_SUBNET6 and
// sleeps (exec keeps the PID).
const fakeWeftd = `#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in --subnet-file) f=$2; shift;; esac; shift; done
echo "fake weftd pid $$"
printf 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=%s\nFLANNEL_IPV6_NETWORK=fd10:244::/56\nFLANNEL_IPV6_SUBNET=%s\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=true\n' "$FAKE_SUBNET" "$FAKE_SUBNET6" >"$f"
exec sleep 1000
`

// bridgeConfList is the delegate weft-cni would build for a dual-stack
// node, written out, so the harness's CNI path is tested without weft-cni.
func bridgeConfList(t *testing.T, n *Node, subnet, subnet6 string) *libcni.NetworkConfigList {
	t.Helper()
	conf := `{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"bridge","bridge":"cni0",
	"isGateway":true,"isDefaultGateway":true,"hairpinMode":true,"ipMasq":false,"mtu":1500,
	"ipam":{"type":"host-local","dataDir":"` + filepath.Join(n.Dir, "ipam") + `",
	"ranges":[[{"subnet":"` + subnet + `"}],[{"subnet":"` + subnet6 + `"}]],
	"routes":[{"dst":"10.244.0.0/16"},{"dst":"fd10:244::/56"}]}}]}`
	list, err := libcni.NetworkConfFromBytes([]byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func TestHarness(t *testing.T) {
	testns.RequireRoot(t)
	ctx := t.Context()
	bin := filepath.Join(t.TempDir(), "fake-weftd")
	if err := os.WriteFile(bin, []byte(fakeWeftd), 0o755); err != nil {
		t.Fatal(err)
	}
	var c *Cluster
	t.Run("build", func(t *testing.T) {
		var err error
		c, err = New(ctx, Options{Binaries: Binaries{Weftd: bin}, Nodes: 3, Segments: []int{0, 0, 1}, NoStart: true,
			NetConf: StackNetConf(DualStack, "vxlan", "kernel", false)})
		if err != nil {
			t.Fatal(err)
		}
	})
	if c == nil {
		t.FailNow()
	}
	defer func() {
		if t.Failed() {
			t.Log(c.Diagnose(context.Background()))
		}
		c.Close()
	}()
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]

	t.Run("underlay", func(t *testing.T) {
		for _, to := range []*Node{n2, n3} {
			if r, err := n1.NS.Ping(ctx, to.IP, 2, 200*time.Millisecond); err != nil || r.Lost() != 0 {
				t.Errorf("n1 -> %s %s: %+v %v", to.Name, to.IP, r, err)
			}
		}
		// n3 is on the other segment: reached only through the router.
		out, err := n1.Exec(ctx, "ip", "route", "get", n3.IP.String())
		if err != nil || !strings.Contains(out, "via "+routerIP(0).String()) {
			t.Errorf("n1 route to n3 should go via the router: %q %v", out, err)
		}
		out, err = n1.Exec(ctx, "ip", "route", "get", n2.IP.String())
		if err != nil || strings.Contains(out, "via") {
			t.Errorf("n1 route to n2 should be on-link: %q %v", out, err)
		}
		// The IPv6 underlay: the same topology, usable at once (no DAD).
		for _, to := range []*Node{n2, n3} {
			if r, err := n1.NS.Ping(ctx, to.IPv6, 2, 200*time.Millisecond); err != nil || r.Lost() != 0 {
				t.Errorf("n1 -> %s %s: %+v %v", to.Name, to.IPv6, r, err)
			}
		}
		out, err = n1.Exec(ctx, "ip", "-6", "route", "get", n3.IPv6.String())
		if err != nil || !strings.Contains(out, "via "+underlayIP(0, routerHost, IPv6).String()) {
			t.Errorf("n1 IPv6 route to n3 should go via the router: %q %v", out, err)
		}
		if out, err := n1.Exec(ctx, "ip", "-6", "addr", "show", "dev", "eth0"); err != nil || strings.Contains(out, "tentative") ||
			!strings.Contains(out, n1.IPv6.String()+"/64") {
			t.Errorf("n1 eth0 should have %s/64 and nothing tentative: %v\n%s", n1.IPv6, err, out)
		}
	})

	t.Run("etcd", func(t *testing.T) {
		conf, err := c.Etcd.Get(ctx, ConfigKey)
		if err != nil || conf != StackNetConf(DualStack, "vxlan", "kernel", false) || c.Stack() != DualStack {
			t.Fatalf("net-conf in etcd = %q, %v", conf, err)
		}
		key := SubnetKey(netip.MustParsePrefix("10.244.7.0/24"))
		if key != "/coreos.com/network/subnets/10.244.7.0-24" {
			t.Fatalf("SubnetKey = %s", key)
		}
		grant, err := c.Etcd.Client().Grant(ctx, 3600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Etcd.Client().Put(ctx, key, `{"PublicIP":"10.250.0.9","BackendType":"host-gw"}`, clientv3.WithLease(grant.ID)); err != nil {
			t.Fatal(err)
		}
		leases, err := c.Etcd.Leases(ctx)
		if err != nil || leases[netip.MustParsePrefix("10.244.7.0/24")].PublicIP != netip.MustParseAddr("10.250.0.9") {
			t.Fatalf("Leases = %v, %v", leases, err)
		}
		if err := c.Etcd.ExpireLease(ctx, key); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Etcd.Get(ctx, key); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after ExpireLease: %v", err)
		}
	})

	t.Run("etcd dual-stack leases", func(t *testing.T) {
		dual := SubnetsPrefix + "10.244.8.0-24&fd10:244:0:8::-64"
		v6only := SubnetsPrefix + "0.0.0.0-0&fd10:244:0:9::-64"
		for k, v := range map[string]string{
			dual: `{"PublicIP":"10.250.0.8","PublicIPv6":"fd00:100::8","BackendType":"vxlan",
			"BackendData":{"VNI":1,"VtepMAC":"3a:6b:5b:22:85:f1"},"BackendV6Data":{"VNI":1,"VtepMAC":"3e:1a:a9:fe:f1:0a"}}`,
			v6only: `{"PublicIPv6":"fd00:100::9","BackendType":"host-gw"}`,
		} {
			if err := c.Etcd.Put(ctx, k, v); err != nil {
				t.Fatal(err)
			}
			defer c.Etcd.Delete(ctx, k)
		}
		leases, err := c.Etcd.Leases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		v4, v6 := leases[netip.MustParsePrefix("10.244.8.0/24")], leases[netip.MustParsePrefix("fd10:244:0:8::/64")]
		if len(leases) != 3 || v4.PublicIP.String() != "10.250.0.8" || v6.PublicIP.String() != "fd00:100::8" ||
			!strings.Contains(string(v6.BackendData), "3e:1a:a9:fe:f1:0a") ||
			leases[netip.MustParsePrefix("fd10:244:0:9::/64")].PublicIP.String() != "fd00:100::9" {
			t.Fatalf("Leases = %v, want one entry per family", leases)
		}
		for subnet, want := range map[string]string{"fd10:244:0:8::/64": dual, "10.244.8.0/24": dual, "fd10:244:0:9::/64": v6only} {
			if k, err := c.Etcd.LeaseKey(ctx, netip.MustParsePrefix(subnet)); err != nil || k != want {
				t.Errorf("LeaseKey(%s) = %q, %v; want %s", subnet, k, err, want)
			}
		}
	})

	t.Run("etcd restart", func(t *testing.T) {
		if err := c.Etcd.Put(ctx, "/test/k", "v"); err != nil {
			t.Fatal(err)
		}
		if err := c.Etcd.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := c.Etcd.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if v, err := c.Etcd.Get(ctx, "/test/k"); err != nil || v != "v" {
			t.Fatalf("after restart: %q %v", v, err)
		}
	})

	t.Run("no root namespace routes", func(t *testing.T) {
		out, err := exec.Command("ip", "route", "show", "table", "all").CombinedOutput()
		if err != nil || strings.Contains(string(out), "10.250.") || strings.Contains(string(out), "fd00:100:") {
			t.Fatalf("root namespace routes mention the underlay: %v\n%s", err, out)
		}
	})

	var p1, p2 *Pod
	t.Run("weftd process and pods", func(t *testing.T) {
		n1.Env = []string{"FAKE_SUBNET=10.244.1.1/24", "FAKE_SUBNET6=fd10:244:0:1::1/64"}
		n2.Env = []string{"FAKE_SUBNET=10.244.2.1/24", "FAKE_SUBNET6=fd10:244:0:2::1/64"}
		for _, n := range []*Node{n1, n2} {
			if err := n.StartWeftd(ctx); err != nil {
				t.Fatal(err)
			}
		}
		s, err := n1.WaitSubnet(ctx, 10*time.Second)
		if err != nil || s != netip.MustParsePrefix("10.244.1.0/24") {
			t.Fatalf("WaitSubnet = %v, %v", s, err)
		}
		pid := n1.WeftdPID()
		if err := n1.RestartWeftd(ctx, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if n1.WeftdPID() == pid {
			t.Fatal("restart kept the PID")
		}
		err = Eventually(ctx, 10*time.Second, "log of two runs", func() error {
			if log, _ := n1.Log(); strings.Count(log, "fake weftd pid") != 2 {
				return errors.New(log)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n2.WaitSubnet(ctx, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if subnets, err := n2.Subnets(); err != nil || len(subnets) != 2 || subnets[1] != netip.MustParsePrefix("fd10:244:0:2::/64") {
			t.Fatalf("Subnets = %v, %v", subnets, err)
		}
		if p1, err = n1.attach(ctx, bridgeConfList(t, n1, "10.244.1.0/24", "fd10:244:0:1::/64")); err != nil {
			t.Fatal(err)
		}
		if p2, err = n2.attach(ctx, bridgeConfList(t, n2, "10.244.2.0/24", "fd10:244:0:2::/64")); err != nil {
			t.Fatal(err)
		}
		// host-gw by hand, as weftd would program it.
		for _, r := range [][]string{
			{"10.244.2.0/24", n2.IP.String(), "10.244.1.0/24", n1.IP.String()},
			{"fd10:244:0:2::/64", n2.IPv6.String(), "fd10:244:0:1::/64", n1.IPv6.String()},
		} {
			n1.Exec(ctx, "ip", "route", "add", r[0], "via", r[1])
			n2.Exec(ctx, "ip", "route", "add", r[2], "via", r[3])
		}
	})
	if p1 == nil || p2 == nil {
		t.FailNow()
	}

	t.Run("traffic", func(t *testing.T) {
		if len(p2.Addrs()) != 2 || !p2.IP.Is4() || !p2.IPv6.Is6() {
			t.Fatalf("pod %s has addresses %v, want one of each family", p2.ID, p2.Addrs())
		}
		srv, err := p2.NS.ServeEcho(5201)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		for _, to := range p2.Addrs() {
			if r, err := p1.NS.Ping(ctx, to, 3, 200*time.Millisecond); err != nil || r.Lost() != 0 || r.RTT <= 0 {
				t.Fatalf("ping %s -> %s: %+v %v", p1.ID, to, r, err)
			}
			if err := p1.NS.EchoRoundTrip(ctx, netip.AddrPortFrom(to, 5201), 8<<20); err != nil {
				t.Fatal(err)
			}
		}
		// An unreachable address is reported as loss, not as an error.
		r, err := p1.NS.Ping(ctx, netip.MustParseAddr("10.244.9.9"), 2, 200*time.Millisecond)
		if err != nil || r.Lost() != 2 {
			t.Fatalf("ping to nowhere: %+v %v", r, err)
		}
	})

	t.Run("upgrade in place", func(t *testing.T) {
		v2 := Binaries{Weftd: filepath.Join(t.TempDir(), "fake-weftd-v2"), CNI: "/v2/weft-cni", Commit: "v2"}
		if err := os.WriteFile(v2.Weftd, []byte(strings.Replace(fakeWeftd, "fake weftd pid", "fake weftd v2 pid", 1)), 0o755); err != nil {
			t.Fatal(err)
		}
		pid := n1.WeftdPID()
		if err := n1.Upgrade(ctx, v2); err != nil {
			t.Fatal(err)
		}
		if n1.WeftdPID() == pid || n1.Binaries() != v2 {
			t.Fatalf("after Upgrade: pid %d (was %d), binaries %+v", n1.WeftdPID(), pid, n1.Binaries())
		}
		err := Eventually(ctx, 10*time.Second, "the new weftd's log", func() error {
			if log, _ := n1.Log(); !strings.Contains(log, "fake weftd v2 pid") {
				return errors.New(log)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if to, err := os.Readlink(filepath.Join(n1.cniBinDir(), "flannel")); err != nil || to != v2.CNI {
			t.Fatalf("n1's CNI plugin links to %q (%v), want %s", to, err, v2.CNI)
		}
		if n2.Binaries().Weftd != bin {
			t.Fatalf("n2 runs %s, want the cluster's %s", n2.Binaries().Weftd, bin)
		}
	})

	t.Run("pod delete", func(t *testing.T) {
		if err := p2.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(p2.NS.Path()); !os.IsNotExist(err) {
			t.Fatalf("pod namespace still there: %v", err)
		}
	})

	t.Run("close", func(t *testing.T) {
		dir, prefix := c.Dir, c.Prefix
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		out, _ := exec.Command("ip", "netns", "list").CombinedOutput()
		if strings.Contains(string(out), prefix) {
			t.Errorf("namespaces left:\n%s", out)
		}
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		if strings.Contains(string(mounts), dir) {
			t.Errorf("mounts left under %s", dir)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s left: %v", dir, err)
		}
		if done, _ := n1.WeftdExited(); !done {
			t.Error("weftd still running")
		}
	})
}

// TestKubeNeedsStart: kube mode runs kube-apiserver through test/kubetest,
// which needs a test, so New refuses it with a line that says what to use.
func TestKubeNeedsStart(t *testing.T) {
	testns.RequireRoot(t)
	_, err := New(t.Context(), Options{Kube: true})
	if err == nil || !strings.Contains(err.Error(), "cluster.Start") {
		t.Fatalf("New in kube mode: %v, want an error that points to cluster.Start", err)
	}
}

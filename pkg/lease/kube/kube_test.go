package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/pkg/lease"
	"github.com/weftnet/weft/pkg/netconf"
)

const prefix = DefaultAnnotationPrefix + "/"

// logBuffer is a slog destination tests can search.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// count returns how many log lines contain every one of subs.
func (b *logBuffer) count(subs ...string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, line := range strings.Split(b.buf.String(), "\n") {
		all := line != ""
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			n++
		}
	}
	return n
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// eventually polls cond every 20 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writeNetConf writes a vxlan net-conf.json with Network network.
func writeNetConf(t *testing.T, network string) string {
	t.Helper()
	return writeNetConfJSON(t, `{"Network": "`+network+`", "Backend": {"Type": "vxlan"}}`)
}

// writeNetConfJSON writes net-conf.json with data and returns its path.
func writeNetConfJSON(t *testing.T, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "net-conf.json")
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func node(name, podCIDR string, ann map[string]string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann}}
	if podCIDR != "" {
		n.Spec.PodCIDR, n.Spec.PodCIDRs = podCIDR, []string{podCIDR}
	}
	return n
}

func keys(t *testing.T) annotationKeys {
	t.Helper()
	k, err := newAnnotationKeys(DefaultAnnotationPrefix)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestAnnotationPrefix(t *testing.T) {
	k, err := newAnnotationKeys("example.com/")
	if err != nil || k.backendData != "example.com/backend-data" {
		t.Fatalf("got %q, %v", k.backendData, err)
	}
	if _, err := newAnnotationKeys("not a prefix!"); err == nil {
		t.Fatal("invalid prefix accepted")
	}
}

func TestLeaseOf(t *testing.T) {
	k := keys(t)
	good := map[string]string{
		prefix + "backend-type":    "vxlan",
		prefix + "backend-data":    `{"VNI":1,"VtepMAC":"c6:d2:8e:11:22:33"}`,
		prefix + "public-ip":       "192.168.64.3",
		prefix + "backend-v6-data": `{"VNI":1,"VtepMAC":"3e:1a:a9:fe:f1:0a"}`,
		prefix + "public-ipv6":     "fd00:100::3",
	}
	with := func(kv ...string) map[string]string {
		m := maps.Clone(good)
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "-" {
				delete(m, prefix+kv[i])
			} else {
				m[prefix+kv[i]] = kv[i+1]
			}
		}
		return m
	}
	cidrs := func(n *corev1.Node, cs ...string) *corev1.Node {
		n.Spec.PodCIDR, n.Spec.PodCIDRs = cs[0], cs
		return n
	}
	for _, tc := range []struct {
		name    string
		n       *corev1.Node
		ok      bool
		wantErr string
		lease   string // lease.Lease.String()
	}{
		{"flannel node", node("a", "10.244.3.0/24", good), true, "", "10.244.3.0/24"},
		{"dual stack, masked", cidrs(node("dual", "", good), "10.244.7.1/24", "fd00:1::/64"), true, "", "10.244.7.0/24+fd00:1::/64"},
		// flannel #1629: IPv6 first.
		{"dual stack, IPv6 first", cidrs(node("dual", "", good), "fd00:1::/64", "10.244.7.0/24"), true, "", "10.244.7.0/24+fd00:1::/64"},
		{"IPv6 only", cidrs(node("v6", "", with("public-ip", "-", "backend-data", "-")), "fd00:1::/64"), true, "", "fd00:1::/64"},
		{"IPv6 only, flannel's public-ip 0.0.0.0", cidrs(node("v6", "", with("public-ip", "0.0.0.0", "backend-data", "null")), "fd00:1::/64"), true, "", "fd00:1::/64"},
		{"dual podCIDRs, IPv4 annotations only", cidrs(node("v4", "", with("public-ipv6", "-")), "10.244.7.0/24", "fd00:1::/64"), true, "", "10.244.7.0/24"},
		{"no annotations", node("b", "10.244.3.0/24", nil), false, "", ""},
		{"no podCIDR", node("c", "", good), false, "", ""},
		{"bad public-ip", node("d", "10.244.3.0/24", with("public-ip", "nope")), false, "public-ip", ""},
		{"IPv6 public-ip", node("d", "10.244.3.0/24", with("public-ip", "fd00::1")), false, "public-ip", ""},
		{"bad backend-data", node("e", "10.244.3.0/24", with("backend-data", "{")), false, "backend-data", ""},
		{"bad public-ipv6", cidrs(node("f", "", with("public-ipv6", "1.2.3.4")), "fd00:1::/64"), false, "public-ipv6", ""},
		{"bad backend-v6-data", cidrs(node("f", "", with("backend-v6-data", "{")), "fd00:1::/64"), false, "backend-v6-data", ""},
		{"bad podCIDR", node("g", "10.244.3.0/99", good), false, "podCIDR", ""},
		{"three podCIDRs", cidrs(node("h", "", good), "10.244.7.0/24", "fd00:1::/64", "10.244.8.0/24"), false, "3 podCIDRs", ""},
		{"two IPv4 podCIDRs", cidrs(node("h", "", good), "10.244.7.0/24", "10.244.8.0/24"), false, "two podCIDRs of one family", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, ok, err := k.leaseOf(tc.n)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to name %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || ok != tc.ok {
				t.Fatalf("ok=%v err=%v, want ok=%v", ok, err, tc.ok)
			}
			if !ok {
				return
			}
			if l.String() != tc.lease || l.Attrs.BackendType != "vxlan" {
				t.Fatalf("lease %s %+v, want %s", l, l.Attrs, tc.lease)
			}
			for _, h := range l.Halves() {
				mac, _, err := h.VXLAN()
				want := map[bool]string{false: "192.168.64.3 c6:d2:8e:11:22:33", true: "fd00:100::3 3e:1a:a9:fe:f1:0a"}[h.Subnet.Addr().Is6()]
				if got := h.PublicIP.String() + " " + mac.String(); err != nil || got != want {
					t.Errorf("half %s: %s, %v, want %s", h.Subnet, got, err, want)
				}
			}
		})
	}
}

func TestPatchOnlyWhenDifferent(t *testing.T) {
	k := keys(t)
	v6 := netip.MustParseAddr("fd00::1")
	a := lease.Attrs{PublicIP: netip.MustParseAddr("10.0.0.1"), PublicIPv6: &v6, BackendType: "vxlan",
		BackendData: json.RawMessage(`{"VNI":1}`), BackendV6Data: json.RawMessage(`{"VNI":1,"VtepMAC":"3e:1a:a9:fe:f1:0a"}`)}
	n := node("a", "10.244.1.0/24", map[string]string{"other": "kept"})
	want, done := k.patch(n, a)
	if done {
		t.Fatal("node without annotations reported as published")
	}
	if *want[k.publicIPv6] != "fd00::1" || *want[k.backendV6Data] != `{"VNI":1,"VtepMAC":"3e:1a:a9:fe:f1:0a"}` {
		t.Fatalf("IPv6 annotations %q %q", *want[k.publicIPv6], *want[k.backendV6Data])
	}
	apply := func(want map[string]*string) {
		for key, v := range want {
			if v == nil {
				delete(n.Annotations, key)
			} else {
				n.Annotations[key] = *v
			}
		}
	}
	apply(want)
	if _, done := k.patch(n, a); !done {
		t.Fatal("published node needs another patch")
	}
	a.PublicIPv6 = nil
	want, done = k.patch(n, a)
	if done || want[k.publicIPv6] != nil || want[k.backendV6Data] != nil {
		t.Fatalf("stale public-ipv6 and backend-v6-data not removed: done=%v", done)
	}
	hostgw := lease.Attrs{PublicIP: a.PublicIP, BackendType: "host-gw"}
	if want, _ := k.patch(n, hostgw); *want[k.backendData] != "null" {
		t.Fatalf("host-gw backend-data = %q, want null", *want[k.backendData])
	}
	// IPv6 only: the IPv4 keys go, host-gw's backend-v6-data is null.
	v6only := lease.Attrs{PublicIPv6: &v6, BackendType: "host-gw"}
	want, _ = k.patch(n, v6only)
	if want[k.publicIP] != nil || want[k.backendData] != nil || *want[k.backendV6Data] != "null" || *want[k.publicIPv6] != "fd00::1" {
		t.Fatalf("IPv6-only annotations %v", want)
	}
	apply(want)
	if _, done := k.patch(n, v6only); !done || n.Annotations["other"] != "kept" {
		t.Fatalf("IPv6-only node needs another patch, or lost a foreign annotation: %v", n.Annotations)
	}
}

func TestOwnLease(t *testing.T) {
	m := &Manager{keys: keys(t)}
	conf := func(s string) *netconf.Config {
		c, err := netconf.Parse([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	v4 := conf(`{"Network":"10.244.0.0/16"}`)
	dual := conf(`{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd10:244::/56"}`)
	v6only := conf(`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd10:244::/56"}`)
	ip6 := netip.MustParseAddr("fd00::5")
	base := lease.Attrs{PublicIP: netip.MustParseAddr("192.168.1.5"), PublicIPv6: &ip6, BackendType: "vxlan"}
	cidrs := func(ann map[string]string, cs ...string) *corev1.Node {
		n := node("a", "", ann)
		n.Spec.PodCIDRs = cs
		return n
	}
	for _, tc := range []struct {
		name string
		nc   *netconf.Config
		n    *corev1.Node
		want string // error substrings, "|"-separated; "" for success
		l    string // lease, public IP, public IPv6
	}{
		{"ok", v4, node("a", "10.244.5.0/24", nil), "", "10.244.5.0/24 192.168.1.5 invalid IP"},
		{"overwrite", v4, node("a", "10.244.5.0/24", map[string]string{prefix + "public-ip-overwrite": "172.16.0.9"}), "", "10.244.5.0/24 172.16.0.9 invalid IP"},
		{"bad overwrite", v4, node("a", "10.244.5.0/24", map[string]string{prefix + "public-ip-overwrite": "x"}), `node "a"|public-ip-overwrite|fix or remove`, ""},
		{"missing", v4, node("a", "", nil), `node "a"|no IPv4 podCIDR|--allocate-node-cidrs=true --cluster-cidr=10.244.0.0/16|--pod-network-cidr=10.244.0.0/16`, ""},
		{"outside", v4, node("a", "10.99.1.0/24", nil), `node "a"|10.99.1.0/24|10.244.0.0/16|--cluster-cidr`, ""},
		{"wider than network", v4, node("a", "10.0.0.0/8", nil), `10.0.0.0/8|10.244.0.0/16`, ""},
		{"IPv4 config, dual-stack node", v4, cidrs(nil, "fd10:244:0:5::/64", "10.244.5.0/24"), "", "10.244.5.0/24 192.168.1.5 invalid IP"},
		{"dual stack", dual, cidrs(nil, "10.244.5.0/24", "fd10:244:0:5::/64"), "", "10.244.5.0/24+fd10:244:0:5::/64 192.168.1.5 fd00::5"},
		{"dual stack, IPv6 first", dual, cidrs(nil, "fd10:244:0:5::/64", "10.244.5.0/24"), "", "10.244.5.0/24+fd10:244:0:5::/64 192.168.1.5 fd00::5"},
		{"dual stack, IPv6 overwrite", dual, cidrs(map[string]string{prefix + "public-ipv6-overwrite": "fd00::99"}, "10.244.5.0/24", "fd10:244:0:5::/64"), "", "10.244.5.0/24+fd10:244:0:5::/64 192.168.1.5 fd00::99"},
		{"bad IPv6 overwrite", dual, cidrs(map[string]string{prefix + "public-ipv6-overwrite": "10.1.1.1"}, "10.244.5.0/24", "fd10:244:0:5::/64"), `public-ipv6-overwrite|not an IPv6 address`, ""},
		{"dual stack, no IPv6 podCIDR", dual, node("a", "10.244.5.0/24", nil), `node "a"|no IPv6 podCIDR|--cluster-cidr=fd10:244::/56`, ""},
		{"IPv6 outside", dual, cidrs(nil, "10.244.5.0/24", "fd99::/64"), `fd99::/64|IPv6Network fd10:244::/56`, ""},
		{"IPv6 only", v6only, cidrs(nil, "fd10:244:0:5::/64"), "", "fd10:244:0:5::/64 invalid IP fd00::5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := m.ownLease(tc.n, tc.nc, base)
			if tc.want == "" {
				if got := fmt.Sprint(l, " ", l.Attrs.PublicIP, " ", addrOf(l.Attrs.PublicIPv6)); err != nil || got != tc.l {
					t.Fatalf("lease %q, err %v, want %q", got, err, tc.l)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range strings.Split(tc.want, "|") {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

// TestUnreachable: with no API server, Acquire logs one line naming the
// server and keeps retrying until its context ends.
func TestUnreachable(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	const cfg = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`
	if err := os.WriteFile(kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := New(ctx, Config{Kubeconfig: kubeconfig, NodeName: "n1", NetConfPath: writeNetConf(t, "10.244.0.0/16"), Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithTimeout(ctx, 4*time.Second)
	defer acancel()
	_, err = m.Acquire(actx, lease.Attrs{PublicIP: netip.MustParseAddr("10.0.0.1"), BackendType: "vxlan"}, lease.Lease{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire = %v, want the context's deadline", err)
	}
	if n := logs.count("cannot list/watch Nodes", "https://127.0.0.1:1"); n != 1 {
		t.Fatalf("%d log lines about the unreachable API server, want 1:\n%s", n, logs.String())
	}
}

func TestNodeNameRequired(t *testing.T) {
	t.Setenv("NODE_NAME", "")
	_, err := newManager(context.Background(), Config{}, nil, "")
	if err == nil || !strings.Contains(err.Error(), "NODE_NAME") {
		t.Fatalf("err = %v, want one naming NODE_NAME", err)
	}
}

func TestLeaseHash(t *testing.T) {
	seed := maphash.MakeSeed()
	v6 := netip.MustParseAddr("fd00::1")
	base := func() lease.Lease {
		return lease.Lease{Subnet: netip.MustParsePrefix("10.244.3.0/24"), Attrs: lease.Attrs{
			PublicIP: netip.MustParseAddr("192.168.1.3"), BackendType: "vxlan", BackendData: []byte(`{"VNI":1}`)}}
	}
	h := leaseHash(seed, base())
	if leaseHash(seed, base()) != h {
		t.Fatal("equal leases hash differently")
	}
	for name, change := range map[string]func(*lease.Lease){
		"subnet":        func(l *lease.Lease) { l.Subnet = netip.MustParsePrefix("10.244.4.0/24") },
		"prefix len":    func(l *lease.Lease) { l.Subnet = netip.MustParsePrefix("10.244.3.0/25") },
		"PublicIP":      func(l *lease.Lease) { l.Attrs.PublicIP = netip.MustParseAddr("192.168.1.4") },
		"PublicIPv6":    func(l *lease.Lease) { l.Attrs.PublicIPv6 = &v6 },
		"BackendType":   func(l *lease.Lease) { l.Attrs.BackendType = "host-gw" },
		"BackendData":   func(l *lease.Lease) { l.Attrs.BackendData = []byte(`{"VNI":2}`) },
		"IPv6Subnet":    func(l *lease.Lease) { l.IPv6Subnet = netip.MustParsePrefix("fd00:3::/64") },
		"BackendV6Data": func(l *lease.Lease) { l.Attrs.BackendV6Data = []byte(`{"VNI":1}`) },
		"data moved to BackendV6Data": func(l *lease.Lease) {
			l.Attrs.BackendData, l.Attrs.BackendV6Data = nil, l.Attrs.BackendData
		},
	} {
		l := base()
		change(&l)
		if leaseHash(seed, l) == h {
			t.Errorf("a lease with another %s hashes alike", name)
		}
	}
}

// TestSubscriptions checks that a subscription to every Node collects the
// changed names, each once, and one to a Node wakes only for it.
func TestSubscriptions(t *testing.T) {
	c := &nodeCache{subs: map[*subscription]struct{}{}}
	all, own := c.subscribe(""), c.subscribe("a")
	defer all.stop()
	defer own.stop()
	woken := func(s *subscription) bool {
		select {
		case <-s.wake:
			return true
		default:
			return false
		}
	}
	c.notify("b")
	if !woken(all) || woken(own) {
		t.Fatal("a change of b must wake the subscription to every Node only")
	}
	c.notify("a")
	c.notify("b")
	c.notify("a")
	if !woken(all) || !woken(own) || woken(all) {
		t.Fatal("changes of a must wake both subscriptions, once")
	}
	if got := slices.Sorted(maps.Keys(all.changed())); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("changed names %v, want [a b]", got)
	}
	if got := all.changed(); len(got) != 0 {
		t.Fatalf("changed names %v after they were taken, want none", got)
	}
	c.notify("") // synced
	if !woken(all) || !woken(own) || len(all.changed()) != 0 {
		t.Fatal("the sync must wake both subscriptions and name no Node")
	}
}

// TestWatchEventCostIndependentOfNodes checks that recomputing one changed
// Node allocates as much with 10,000 Nodes as with 1,000 (listing or
// copying the Nodes would allocate ten times more).
func TestWatchEventCostIndependentOfNodes(t *testing.T) {
	const events = 200
	perEvent := func(n int) uint64 {
		m := &Manager{keys: keys(t), log: slog.New(slog.DiscardHandler), nodes: newNodeCache(nil, "", slog.New(slog.DiscardHandler))}
		store := m.nodes.inf.GetStore()
		ann := func(mac int) map[string]string {
			return map[string]string{prefix + "backend-type": "vxlan", prefix + "public-ip": "192.168.1.1",
				prefix + "backend-data": fmt.Sprintf(`{"VNI":1,"VtepMAC":"aa:bb:cc:00:00:%02x"}`, mac)}
		}
		for i := range n {
			cidr := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24).String()
			if err := store.Add(node(fmt.Sprint("node-", i), cidr, ann(0))); err != nil {
				t.Fatal(err)
			}
		}
		w := newNodeWatch(m)
		if u, _ := w.next(nil); !u.Full || len(u.Changes) != n {
			t.Fatalf("first delivery: full %v with %d changes, want full with %d", u.Full, len(u.Changes), n)
		}
		changed := node("node-7", "10.0.7.0/24", nil)
		dirty := map[string]struct{}{changed.Name: {}}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range events {
			changed.Annotations = ann(1 + i%2)
			if err := store.Update(changed); err != nil {
				t.Fatal(err)
			}
			if u, ok := w.next(dirty); !ok || u.Full || len(u.Changes) != 1 {
				t.Fatalf("event %d delivered %+v, want one change", i, u)
			}
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / events
	}
	small, large := perEvent(1000), perEvent(10000)
	t.Logf("bytes allocated per event: %d with 1000 Nodes, %d with 10000", small, large)
	if large > small+small/2 {
		t.Errorf("an event allocates %d bytes with 10000 Nodes, %d with 1000: its cost grows with the Node count", large, small)
	}
}

package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/weftnet/weft/pkg/lease"
	"github.com/weftnet/weft/test/kubetest"
)

// env is one API server shared by the subtests of TestAPIServer; weftd's
// side authenticates as the ServiceAccount of deploy/weft.yaml, so a
// permission missing from its ClusterRole fails these tests.
type env struct {
	cluster    *kubetest.Cluster
	admin      kubernetes.Interface
	kubeconfig string
	netConf    string
}

func TestAPIServer(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	e := &env{cluster: c, admin: c.Admin(t), kubeconfig: c.WeftKubeconfig(t), netConf: writeNetConf(t, "10.244.0.0/16")}
	t.Run("AcquirePublishesAndSetsCondition", e.testAcquire)
	t.Run("PublicIPOverwrite", e.testOverwrite)
	t.Run("KeepRepublishes", e.testKeep)
	t.Run("WatchAddChangeDelete", e.testWatch)
	t.Run("PodCIDRMissing", e.testPodCIDRMissing)
	t.Run("PodCIDROutsideNetwork", e.testPodCIDROutside)
	t.Run("NodeClient", e.testNodeClient)
	t.Run("DualStack", e.testDualStack)
	t.Run("IPv6Only", e.testIPv6Only)
}

func vxlanAttrs(ip, mac string) lease.Attrs {
	data, _ := json.Marshal(lease.VXLANData{VNI: 1, VtepMAC: mac})
	return lease.Attrs{PublicIP: netip.MustParseAddr(ip), BackendType: "vxlan", BackendData: data}
}

// manager starts a Manager for node name that stops when t ends.
func (e *env) manager(t *testing.T, name string, logs *logBuffer) *Manager {
	t.Helper()
	return e.managerWith(t, name, e.netConf, logs)
}

// managerWith is manager with the net-conf.json at netConf.
func (e *env) managerWith(t *testing.T, name, netConf string, logs *logBuffer) *Manager {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	m, err := New(ctx, Config{Kubeconfig: e.kubeconfig, NodeName: name, NetConfPath: netConf, SetNodeNetworkUnavailable: true, Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// createNode registers n's name, podCIDR and annotations.
func (e *env) createNode(t *testing.T, n *corev1.Node) {
	t.Helper()
	e.cluster.CreateNode(t, n.Name, n.Spec.PodCIDR, n.Annotations)
}

// setPodCIDRs assigns node name's podCIDRs, in this order, as
// kube-controller-manager does.
func (e *env) setPodCIDRs(t *testing.T, name string, cidrs ...string) {
	t.Helper()
	n := e.getNode(t, name)
	n.Spec.PodCIDR, n.Spec.PodCIDRs = cidrs[0], cidrs
	if _, err := e.admin.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) getNode(t *testing.T, name string) *corev1.Node {
	t.Helper()
	n, err := e.admin.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// patchNode applies a merge patch as the admin (subresource "" or "status").
func (e *env) patchNode(t *testing.T, name, sub string, patch map[string]any) {
	t.Helper()
	data, _ := json.Marshal(patch)
	var subs []string
	if sub != "" {
		subs = []string{sub}
	}
	if _, err := e.admin.CoreV1().Nodes().Patch(context.Background(), name, types.MergePatchType, data, metav1.PatchOptions{}, subs...); err != nil {
		t.Fatal(err)
	}
}

func (e *env) testAcquire(t *testing.T) {
	var logs logBuffer
	e.createNode(t, node("acq", "10.244.1.0/24", nil))
	m := e.manager(t, "acq", &logs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	attrs := vxlanAttrs("192.168.50.1", "c6:d2:8e:00:00:01")
	l, err := m.Acquire(ctx, attrs, lease.Lease{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Subnet != netip.MustParsePrefix("10.244.1.0/24") || l.Attrs.PublicIP != attrs.PublicIP || !l.Expiration.IsZero() {
		t.Fatalf("lease %+v", l)
	}
	ann := e.getNode(t, "acq").Annotations
	for k, want := range map[string]string{
		"kube-subnet-manager": "true",
		"backend-type":        "vxlan",
		"backend-data":        `{"VNI":1,"VtepMAC":"c6:d2:8e:00:00:01"}`,
		"public-ip":           "192.168.50.1",
	} {
		if ann[prefix+k] != want {
			t.Errorf("annotation %s = %q, want %q", k, ann[prefix+k], want)
		}
	}
	if err := m.SetNetworkAvailable(ctx); err != nil {
		t.Fatal(err)
	}
	var cond *corev1.NodeCondition
	for _, c := range e.getNode(t, "acq").Status.Conditions {
		if c.Type == corev1.NodeNetworkUnavailable {
			cond = &c
		}
	}
	if cond == nil || cond.Status != corev1.ConditionFalse || cond.Reason != ConditionReason {
		t.Fatalf("NetworkUnavailable condition %+v, want False/%s", cond, ConditionReason)
	}
}

func (e *env) testOverwrite(t *testing.T) {
	var logs logBuffer
	e.createNode(t, node("ovw", "10.244.2.0/24", map[string]string{prefix + "public-ip-overwrite": "203.0.113.7"}))
	m := e.manager(t, "ovw", &logs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := m.Acquire(ctx, vxlanAttrs("192.168.50.2", "c6:d2:8e:00:00:02"), lease.Lease{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs.PublicIP.String() != "203.0.113.7" {
		t.Errorf("lease PublicIP %s, want the overwrite 203.0.113.7", l.Attrs.PublicIP)
	}
	if got := e.getNode(t, "ovw").Annotations[prefix+"public-ip"]; got != "203.0.113.7" {
		t.Errorf("published public-ip %q, want 203.0.113.7", got)
	}
}

func (e *env) testKeep(t *testing.T) {
	var logs logBuffer
	e.createNode(t, node("keep", "10.244.3.0/24", nil))
	m := e.manager(t, "keep", &logs)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := m.Acquire(ctx, vxlanAttrs("192.168.50.3", "c6:d2:8e:00:00:03"), lease.Lease{})
	if err != nil {
		t.Fatal(err)
	}
	k := keep(ctx, m, l)
	// Someone removes backend-data and changes public-ip: Keep restores both.
	e.patchNode(t, "keep", "", map[string]any{"metadata": map[string]any{"annotations": map[string]any{
		prefix + "backend-data": nil, prefix + "public-ip": "1.2.3.4",
	}}})
	eventually(t, 30*time.Second, "annotations restored", func() bool {
		ann := e.getNode(t, "keep").Annotations
		return ann[prefix+"public-ip"] == "192.168.50.3" && ann[prefix+"backend-data"] == string(l.Attrs.BackendData)
	})
	// The user sets public-ip-overwrite: the held lease changes.
	e.patchNode(t, "keep", "", map[string]any{"metadata": map[string]any{"annotations": map[string]any{prefix + "public-ip-overwrite": "203.0.113.9"}}})
	eventually(t, 30*time.Second, "lease change for public-ip-overwrite", func() bool {
		changes := k.changes()
		return len(changes) == 1 && changes[0].Attrs.PublicIP.String() == "203.0.113.9" && changes[0].Subnet == l.Subnet
	})
	eventually(t, 30*time.Second, "overwrite published", func() bool {
		return e.getNode(t, "keep").Annotations[prefix+"public-ip"] == "203.0.113.9"
	})
	select {
	case <-k.done:
		t.Fatal("Keep returned before its context ended")
	default:
	}
	k.stop()
}

// keeper runs Keep and records the lease changes it reports.
type keeper struct {
	mu   sync.Mutex
	got  []lease.Lease
	done chan struct{} // closed when Keep returned
	stop func()        // ends Keep and waits for it
}

// keep runs m.Keep(l) until the keeper is stopped or ctx ends.
func keep(ctx context.Context, m *Manager, l lease.Lease) *keeper {
	ctx, cancel := context.WithCancel(ctx)
	k := &keeper{done: make(chan struct{})}
	k.stop = func() { cancel(); <-k.done }
	go func() {
		defer close(k.done)
		m.Keep(ctx, l, func(l lease.Lease) { k.mu.Lock(); k.got = append(k.got, l); k.mu.Unlock() })
	}()
	return k
}

// changes returns the changes reported so far.
func (k *keeper) changes() []lease.Lease {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.got)
}

// watchLeases runs m.Watch until ctx ends; t's cleanup waits for it.
func watchLeases(t *testing.T, ctx context.Context, m *Manager) *leaseSet {
	ctx, cancel := context.WithCancel(ctx)
	set := &leaseSet{}
	done := make(chan struct{})
	go func() { defer close(done); m.Watch(ctx, set.update) }()
	t.Cleanup(func() { cancel(); <-done })
	return set
}

// leaseSet keeps every Update Watch delivers.
type leaseSet struct {
	mu      sync.Mutex
	updates []lease.Update
}

func (s *leaseSet) update(u lease.Update) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.updates = append(s.updates, u)
}

// get returns node name's lease in the set the updates make: its last
// change, unless a full update without it came later.
func (s *leaseSet) get(name string) (lease.Lease, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range slices.Backward(s.updates) {
		for _, c := range slices.Backward(u.Changes) {
			if c.Key == name {
				return c.Lease, !c.Removed
			}
		}
		if u.Full {
			break
		}
	}
	return lease.Lease{}, false
}

// since describes the updates from the i-th on: "full" or "changes", then
// each change sorted by Node name, "+name=subnet,publicIP" or "-name".
func (s *leaseSet) since(i int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, u := range s.updates[min(i, len(s.updates)):] {
		d := "changes"
		if u.Full {
			d = "full"
		}
		for _, c := range slices.SortedFunc(slices.Values(u.Changes), func(a, b lease.Change) int { return strings.Compare(a.Key, b.Key) }) {
			if c.Removed {
				d += " -" + c.Key
			} else {
				d += fmt.Sprintf(" +%s=%s,%s", c.Key, c.Lease.Subnet, c.Lease.Attrs.PublicIP)
			}
		}
		out = append(out, d)
	}
	return out
}

// count returns the number of updates so far.
func (s *leaseSet) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.updates)
}

// expectSince fails t unless the updates from the i-th on are want, and
// returns the number of updates so far.
func (s *leaseSet) expectSince(t *testing.T, i int, want ...string) int {
	t.Helper()
	if got := s.since(i); !slices.Equal(got, want) {
		t.Errorf("updates %q, want %q", got, want)
	}
	return s.count()
}

func (e *env) testWatch(t *testing.T) {
	var logs logBuffer
	e.createNode(t, node("watcher", "10.244.10.0/24", nil))
	flannel := func(ip, data string) map[string]string {
		return map[string]string{
			prefix + "kube-subnet-manager": "true", prefix + "backend-type": "vxlan",
			prefix + "backend-data": data, prefix + "public-ip": ip,
		}
	}
	e.createNode(t, node("peer-0", "10.244.9.0/24", flannel("192.168.60.9", `{"VNI":1,"VtepMAC":"aa:bb:cc:00:00:09"}`)))
	m := e.manager(t, "watcher", &logs)
	ctx, cancel := context.WithCancel(context.Background())
	set := watchLeases(t, ctx, m)
	t.Cleanup(cancel)

	// First the full set, once the Node cache has synced.
	eventually(t, 30*time.Second, "the first update", func() bool { return set.count() > 0 })
	n := set.expectSince(t, 0, "full +peer-0=10.244.9.0/24,192.168.60.9")
	// Added: a node published by flannel.
	e.createNode(t, node("peer-a", "10.244.11.0/24", flannel("192.168.60.1", `{"VNI":1,"VtepMAC":"aa:bb:cc:00:00:01"}`)))
	eventually(t, 30*time.Second, "peer-a in Watch", func() bool {
		l, ok := set.get("peer-a")
		mac, err := l.VtepMAC()
		return ok && l.Attrs.PublicIP.String() == "192.168.60.1" && err == nil && mac.String() == "aa:bb:cc:00:00:01"
	})
	n = set.expectSince(t, n, "changes +peer-a=10.244.11.0/24,192.168.60.1")
	// Changed annotation: a new VTEP MAC.
	e.patchNode(t, "peer-a", "", map[string]any{"metadata": map[string]any{"annotations": map[string]any{prefix + "backend-data": `{"VNI":1,"VtepMAC":"aa:bb:cc:00:00:02"}`}}})
	eventually(t, 30*time.Second, "peer-a's new VtepMAC in Watch", func() bool {
		l, ok := set.get("peer-a")
		mac, err := l.VtepMAC()
		return ok && err == nil && mac.String() == "aa:bb:cc:00:00:02"
	})
	n = set.expectSince(t, n, "changes +peer-a=10.244.11.0/24,192.168.60.1")
	// A status update and an annotation weft does not read change no lease.
	e.patchNode(t, "peer-a", "status", map[string]any{"status": map[string]any{"addresses": []map[string]string{{"type": "InternalIP", "address": "192.168.60.1"}}}})
	e.patchNode(t, "peer-a", "", map[string]any{"metadata": map[string]any{"annotations": map[string]any{"example.com/poke": "1"}}})
	// Changed podCIDR: annotated but unassigned (no lease), then assigned.
	e.createNode(t, node("peer-b", "", flannel("192.168.60.2", `{"VNI":1,"VtepMAC":"aa:bb:cc:00:00:03"}`)))
	e.setPodCIDRs(t, "peer-b", "10.244.12.0/24")
	eventually(t, 30*time.Second, "peer-b in Watch after podCIDR assignment", func() bool {
		_, ok := set.get("peer-b")
		return ok
	})
	n = set.expectSince(t, n, "changes +peer-b=10.244.12.0/24,192.168.60.2")
	// Unparsable: left out and logged once; a lease that becomes
	// unparsable is removed.
	e.createNode(t, node("peer-bad", "10.244.13.0/24", flannel("not-an-ip", `{}`)))
	eventually(t, 30*time.Second, "peer-bad logged", func() bool { return logs.count("ignoring unusable lease", "peer-bad") == 1 })
	e.patchNode(t, "peer-0", "", map[string]any{"metadata": map[string]any{"annotations": map[string]any{prefix + "backend-data": `{`}}})
	eventually(t, 30*time.Second, "peer-0 gone from Watch", func() bool {
		_, ok := set.get("peer-0")
		return !ok
	})
	n = set.expectSince(t, n, "changes -peer-0")
	// Deleted.
	if err := e.admin.CoreV1().Nodes().Delete(context.Background(), "peer-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "peer-a gone from Watch", func() bool {
		_, ok := set.get("peer-a")
		return !ok
	})
	set.expectSince(t, n, "changes -peer-a")
	if _, ok := set.get("peer-b"); !ok {
		t.Error("peer-b vanished with peer-a")
	}
	if n := logs.count("ignoring unusable lease", "peer-bad"); n != 1 {
		t.Errorf("peer-bad logged %d times, want 1", n)
	}
}

func (e *env) testPodCIDRMissing(t *testing.T) {
	var logs logBuffer
	e.createNode(t, node("nocidr", "", nil))
	m := e.manager(t, "nocidr", &logs)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type result struct {
		l   lease.Lease
		err error
	}
	res := make(chan result, 1)
	go func() {
		l, err := m.Acquire(ctx, vxlanAttrs("192.168.50.5", "c6:d2:8e:00:00:05"), lease.Lease{})
		res <- result{l, err}
	}()
	line := []string{`node \"nocidr\" has no IPv4 podCIDR assigned`, "--allocate-node-cidrs=true --cluster-cidr=10.244.0.0/16", "--pod-network-cidr=10.244.0.0/16"}
	eventually(t, 30*time.Second, "the podCIDR log line", func() bool { return logs.count(line...) > 0 })
	// Node changes wake Acquire up; it must not log again for each.
	for i := range 3 {
		e.patchNode(t, "nocidr", "", map[string]any{"metadata": map[string]any{"annotations": map[string]any{"example.com/poke": string(rune('a' + i))}}})
	}
	e.setPodCIDRs(t, "nocidr", "10.244.4.0/24")
	r := <-res
	if r.err != nil || r.l.Subnet != netip.MustParsePrefix("10.244.4.0/24") {
		t.Fatalf("Acquire = %+v, %v; want 10.244.4.0/24", r.l, r.err)
	}
	if c := logs.count(line...); c != 1 {
		t.Errorf("podCIDR problem logged %d times, want once:\n%s", c, logs.String())
	}
}

func (e *env) testPodCIDROutside(t *testing.T) {
	var logs logBuffer
	e.createNode(t, node("outside", "10.99.1.0/24", nil))
	m := e.manager(t, "outside", &logs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := make(chan error, 1)
	go func() {
		_, err := m.Acquire(ctx, vxlanAttrs("192.168.50.6", "c6:d2:8e:00:00:06"), lease.Lease{})
		res <- err
	}()
	line := []string{`node \"outside\" podCIDR 10.99.1.0/24 is outside net-conf.json Network 10.244.0.0/16`, "--cluster-cidr"}
	eventually(t, 30*time.Second, "the outside-Network log line", func() bool { return logs.count(line...) > 0 })
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire = %v, want it to wait until canceled", err)
	}
	if c := logs.count(line...); c != 1 {
		t.Errorf("outside-Network problem logged %d times, want once:\n%s", c, logs.String())
	}
	if ann := e.getNode(t, "outside").Annotations; ann[prefix+"backend-type"] != "" {
		t.Error("a lease outside Network was published")
	}
}

// The clientset's Node client, and so its fake, fits nodeClient.
var _ nodeClient = typedcorev1.NodeInterface(nil)

// testNodeClient checks that restNodes encodes list, watch and patch
// options, decodes Nodes, watch events and errors, as weftd's ServiceAccount.
func (e *env) testNodeClient(t *testing.T) {
	rc, err := restConfig(Config{Kubeconfig: e.kubeconfig})
	if err != nil {
		t.Fatal(err)
	}
	c, err := newRESTNodes(rc)
	if err != nil {
		t.Fatal(err)
	}
	e.createNode(t, node("cli-a", "10.244.20.0/24", nil))
	e.createNode(t, node("cli-b", "10.244.21.0/24", nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	byName := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", "cli-b").String()}
	list, err := c.List(ctx, byName)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Name != "cli-b" || list.Items[0].Spec.PodCIDR != "10.244.21.0/24" {
		t.Fatalf("list by name cli-b: %+v", list.Items)
	}
	page, err := c.List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil || len(page.Items) != 1 || page.Continue == "" {
		t.Fatalf("list with limit 1: %d items, continue %q, %v; want 1 and a continue token", len(page.Items), page.Continue, err)
	}

	byName.ResourceVersion = list.ResourceVersion
	w, err := c.Watch(ctx, byName)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	annotate := func(name, value string) *corev1.Node {
		t.Helper()
		patch := []byte(`{"metadata":{"annotations":{"example.com/client":"` + value + `"}}}`)
		n, err := c.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "weftd"}, "status")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	annotate("cli-a", "1") // not watched
	n := annotate("cli-b", "2")
	if n.Name != "cli-b" || n.Annotations["example.com/client"] != "2" {
		t.Fatalf("patch returned %s with annotations %v", n.Name, n.Annotations)
	}
	if !slices.ContainsFunc(n.ManagedFields, func(f metav1.ManagedFieldsEntry) bool {
		return f.Manager == "weftd" && f.Subresource == "status"
	}) {
		t.Errorf("patch not recorded for field manager weftd on subresource status: %+v", n.ManagedFields)
	}
	select {
	case ev := <-w.ResultChan():
		got, ok := ev.Object.(*corev1.Node)
		if ev.Type != watch.Modified || !ok || got.Name != "cli-b" || got.Annotations["example.com/client"] != "2" {
			t.Fatalf("watch event %s %+v, want cli-b modified", ev.Type, ev.Object)
		}
	case <-ctx.Done():
		t.Fatal("no watch event for the patch of cli-b")
	}

	// Without a subresource the patch is on the Node, which the
	// ServiceAccount may not change.
	_, err = c.Patch(ctx, "cli-b", types.MergePatchType, []byte(`{"metadata":{"labels":{"a":"b"}}}`), metav1.PatchOptions{FieldManager: "weftd"})
	if !apierrors.IsForbidden(err) || !strings.Contains(apiError("patch", err).Error(), rbacHint) {
		t.Fatalf("patch of the Node itself = %v, want Forbidden with the RBAC hint", err)
	}
}

// dualAttrs are the attrs of a vxlan node with IPv6 address ip6 and VTEP
// MAC mac6 for IPv6; ip "" leaves IPv4 out.
func dualAttrs(ip, mac, ip6, mac6 string) lease.Attrs {
	var a lease.Attrs
	if ip != "" {
		a = vxlanAttrs(ip, mac)
	}
	v6 := netip.MustParseAddr(ip6)
	a.BackendType, a.PublicIPv6 = "vxlan", &v6
	a.BackendV6Data, _ = json.Marshal(lease.VXLANData{VNI: 1, VtepMAC: mac6})
	return a
}

// testDualStack: podCIDRs in either order (flannel #1629 panicked on IPv6
// first), the IPv6 annotations published and public-ipv6-overwrite
// honoured, flannel's dual-stack peers read with both halves.
func (e *env) testDualStack(t *testing.T) {
	var logs logBuffer
	netConf := writeNetConfJSON(t, `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd10:244::/56","Backend":{"Type":"vxlan"}}`)
	e.createNode(t, node("dual", "", nil))
	e.setPodCIDRs(t, "dual", "fd10:244:0:1b::/64", "10.244.34.0/24")
	m := e.managerWith(t, "dual", netConf, &logs)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := m.Acquire(ctx, dualAttrs("192.168.50.7", "c6:d2:8e:00:00:07", "fd00:50::7", "3e:1a:a9:00:00:07"), lease.Lease{})
	if err != nil {
		t.Fatal(err)
	}
	if l.String() != "10.244.34.0/24+fd10:244:0:1b::/64" || addrOf(l.Attrs.PublicIPv6).String() != "fd00:50::7" {
		t.Fatalf("lease %s with PublicIPv6 %v", l, l.Attrs.PublicIPv6)
	}
	ann := e.getNode(t, "dual").Annotations
	for k, want := range map[string]string{
		"backend-type":    "vxlan",
		"backend-data":    `{"VNI":1,"VtepMAC":"c6:d2:8e:00:00:07"}`,
		"public-ip":       "192.168.50.7",
		"backend-v6-data": `{"VNI":1,"VtepMAC":"3e:1a:a9:00:00:07"}`,
		"public-ipv6":     "fd00:50::7",
	} {
		if ann[prefix+k] != want {
			t.Errorf("annotation %s = %q, want %q", k, ann[prefix+k], want)
		}
	}

	// The user sets public-ipv6-overwrite: Keep changes the lease and
	// publishes it.
	k := keep(ctx, m, l)
	defer k.stop()
	e.patchNode(t, "dual", "", map[string]any{"metadata": map[string]any{"annotations": map[string]any{prefix + "public-ipv6-overwrite": "2001:db8::7"}}})
	eventually(t, 30*time.Second, "lease change for public-ipv6-overwrite", func() bool {
		changes := k.changes()
		return len(changes) == 1 && addrOf(changes[0].Attrs.PublicIPv6).String() == "2001:db8::7" && changes[0].String() == l.String()
	})
	eventually(t, 30*time.Second, "IPv6 overwrite published", func() bool {
		return e.getNode(t, "dual").Annotations[prefix+"public-ipv6"] == "2001:db8::7"
	})

	// A flannel dual-stack peer (IPv4 first) and one with IPv6 first.
	flannel := func(n int) map[string]string {
		return map[string]string{
			prefix + "kube-subnet-manager": "true", prefix + "backend-type": "vxlan",
			prefix + "backend-data":    fmt.Sprintf(`{"VNI":1,"VtepMAC":"aa:bb:cc:00:00:%02x"}`, n),
			prefix + "public-ip":       fmt.Sprintf("192.168.61.%d", n),
			prefix + "backend-v6-data": fmt.Sprintf(`{"VNI":1,"VtepMAC":"aa:bb:cc:00:06:%02x"}`, n),
			prefix + "public-ipv6":     fmt.Sprintf("fd00:61::%d", n),
		}
	}
	e.createNode(t, node("dual-peer-1", "", flannel(1)))
	e.setPodCIDRs(t, "dual-peer-1", "10.244.35.0/24", "fd10:244:0:1c::/64")
	e.createNode(t, node("dual-peer-2", "", flannel(2)))
	e.setPodCIDRs(t, "dual-peer-2", "fd10:244:0:1d::/64", "10.244.36.0/24")
	set := watchLeases(t, ctx, m)
	for name, want := range map[string]string{
		"dual-peer-1": "10.244.35.0/24+fd10:244:0:1c::/64 fd00:61::1 aa:bb:cc:00:06:01",
		"dual-peer-2": "10.244.36.0/24+fd10:244:0:1d::/64 fd00:61::2 aa:bb:cc:00:06:02",
	} {
		eventually(t, 30*time.Second, name+" in Watch with both halves", func() bool {
			l, ok := set.get(name)
			if hs := l.Halves(); !ok || len(hs) != 2 {
				return false
			}
			mac, _, err := l.Halves()[1].VXLAN()
			return err == nil && fmt.Sprint(l, " ", addrOf(l.Attrs.PublicIPv6), " ", mac) == want
		})
	}
}

// testIPv6Only: an IPv6-only node publishes no IPv4 annotations and reads
// flannel's IPv6-only peers.
func (e *env) testIPv6Only(t *testing.T) {
	var logs logBuffer
	netConf := writeNetConfJSON(t, `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd10:245::/56","Backend":{"Type":"host-gw"}}`)
	e.createNode(t, node("v6only", "", map[string]string{prefix + "public-ip": "192.168.50.8"})) // stale
	e.setPodCIDRs(t, "v6only", "fd10:245:0:1::/64")
	e.createNode(t, node("v6only-peer", "", map[string]string{
		prefix + "kube-subnet-manager": "true", prefix + "backend-type": "host-gw",
		prefix + "backend-data": "null", prefix + "public-ip": "0.0.0.0", // as flanneld writes them
		prefix + "backend-v6-data": "null", prefix + "public-ipv6": "fd00:62::2",
	}))
	e.setPodCIDRs(t, "v6only-peer", "fd10:245:0:2::/64")
	m := e.managerWith(t, "v6only", netConf, &logs)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ip6 := netip.MustParseAddr("fd00:62::1")
	l, err := m.Acquire(ctx, lease.Attrs{PublicIPv6: &ip6, BackendType: "host-gw"}, lease.Lease{})
	if err != nil {
		t.Fatal(err)
	}
	if l.String() != "fd10:245:0:1::/64" || l.Attrs.PublicIP.IsValid() {
		t.Fatalf("lease %s with PublicIP %s, want fd10:245:0:1::/64 only", l, l.Attrs.PublicIP)
	}
	ann := e.getNode(t, "v6only").Annotations
	if _, stale := ann[prefix+"public-ip"]; stale || ann[prefix+"public-ipv6"] != "fd00:62::1" || ann[prefix+"backend-v6-data"] != "null" {
		t.Fatalf("annotations %v, want public-ipv6 and backend-v6-data null, no public-ip", ann)
	}
	set := watchLeases(t, ctx, m)
	eventually(t, 30*time.Second, "the IPv6-only peer in Watch", func() bool {
		l, ok := set.get("v6only-peer")
		return ok && l.String() == "fd10:245:0:2::/64" && addrOf(l.Attrs.PublicIPv6).String() == "fd00:62::2" && !l.Attrs.PublicIP.IsValid()
	})
}

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
}

func vxlanAttrs(ip, mac string) lease.Attrs {
	data, _ := json.Marshal(lease.VXLANData{VNI: 1, VtepMAC: mac})
	return lease.Attrs{PublicIP: netip.MustParseAddr(ip), BackendType: "vxlan", BackendData: data}
}

// manager starts a Manager for node name that stops when t ends.
func (e *env) manager(t *testing.T, name string, logs *logBuffer) *Manager {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	m, err := New(ctx, Config{Kubeconfig: e.kubeconfig, NodeName: name, NetConfPath: e.netConf, SetNodeNetworkUnavailable: true, Logger: logs.logger()})
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
	kctx, kcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var mu sync.Mutex
	var changes []lease.Lease
	go func() {
		defer close(done)
		m.Keep(kctx, l, func(l lease.Lease) { mu.Lock(); changes = append(changes, l); mu.Unlock() })
	}()
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
		mu.Lock()
		defer mu.Unlock()
		return len(changes) == 1 && changes[0].Attrs.PublicIP.String() == "203.0.113.9" && changes[0].Subnet == l.Subnet
	})
	eventually(t, 30*time.Second, "overwrite published", func() bool {
		return e.getNode(t, "keep").Annotations[prefix+"public-ip"] == "203.0.113.9"
	})
	select {
	case <-done:
		t.Fatal("Keep returned before its context ended")
	default:
	}
	kcancel()
	<-done
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
	var set leaseSet
	done := make(chan struct{})
	go func() { defer close(done); m.Watch(ctx, set.update) }()
	t.Cleanup(func() { cancel(); <-done })

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
	nb := e.getNode(t, "peer-b")
	nb.Spec.PodCIDR, nb.Spec.PodCIDRs = "10.244.12.0/24", []string{"10.244.12.0/24"}
	if _, err := e.admin.CoreV1().Nodes().Update(context.Background(), nb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
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
	n := e.getNode(t, "nocidr")
	n.Spec.PodCIDR, n.Spec.PodCIDRs = "10.244.4.0/24", []string{"10.244.4.0/24"}
	if _, err := e.admin.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
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

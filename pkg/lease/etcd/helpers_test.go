package etcd

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/pkg/lease"
	"github.com/weftnet/weft/test/etcdtest"
	"github.com/weftnet/weft/test/testns"
)

// netConf is a /16 with 254 leasable /24s (10.5.1.0 .. 10.5.254.0).
const netConf = `{"Network":"10.5.0.0/16","SubnetLen":24,"SubnetMin":"10.5.1.0","SubnetMax":"10.5.254.0","Backend":{"Type":"vxlan"}}`

// env is one test's etcd with a client for poking at it directly.
type env struct {
	t   *testing.T
	srv *etcdtest.Server
	cli *clientv3.Client
}

func newEnv(t *testing.T, conf string) *env {
	t.Helper()
	return newEnvIn(t, nil, conf)
}

// newEnvIn is newEnv with etcd in ns (see etcdtest.StartIn).
func newEnvIn(t *testing.T, ns *testns.NS, conf string) *env {
	t.Helper()
	srv := etcdtest.StartIn(t, ns)
	e := &env{t: t, srv: srv, cli: srv.Client()}
	if conf != "" {
		e.put(DefaultPrefix+"/config", conf)
	}
	return e
}

// manager returns a manager with test-sized retry intervals.
func (e *env) manager(mod func(*Config)) *Manager {
	e.t.Helper()
	cfg := Config{
		Endpoints:      e.srv.Endpoints(),
		MinBackoff:     50 * time.Millisecond,
		RetryInterval:  500 * time.Millisecond,
		RequestTimeout: 2 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	e.t.Cleanup(func() { m.Close() })
	return m
}

func (e *env) put(key, value string, opts ...clientv3.OpOption) {
	e.t.Helper()
	if _, err := e.cli.Put(context.Background(), key, value, opts...); err != nil {
		e.t.Fatalf("put %s: %v", key, err)
	}
}

func (e *env) get(key string) (string, int64, bool) {
	e.t.Helper()
	resp, err := e.cli.Get(context.Background(), key)
	if err != nil {
		e.t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return "", 0, false
	}
	return string(resp.Kvs[0].Value), resp.Kvs[0].Lease, true
}

func (e *env) del(key string) {
	e.t.Helper()
	if _, err := e.cli.Delete(context.Background(), key); err != nil {
		e.t.Fatalf("delete %s: %v", key, err)
	}
}

// subnetKey is the key of the subnets s names: "10.5.1.0/24",
// "10.5.1.0/24+fd10::/64" or "fd10::/64".
func subnetKey(s string) string {
	return DefaultPrefix + "/subnets/" + keyName(subnets(s))
}

// subnets is a lease with the subnets s names (see subnetKey); "" names
// none.
func subnets(s string) lease.Lease {
	var l lease.Lease
	if s == "" {
		return l
	}
	for p := range strings.SplitSeq(s, "+") {
		if pp := netip.MustParsePrefix(p); pp.Addr().Is4() {
			l.Subnet = pp
		} else {
			l.IPv6Subnet = pp
		}
	}
	return l
}

func vxlanAttrs(ip, mac string) lease.Attrs {
	data, _ := json.Marshal(lease.VXLANData{VNI: 1, VtepMAC: mac})
	return lease.Attrs{PublicIP: netip.MustParseAddr(ip), BackendType: "vxlan", BackendData: data}
}

func mustAcquire(t *testing.T, m *Manager, a lease.Attrs, hint lease.Lease) lease.Lease {
	t.Helper()
	l, err := m.Acquire(context.Background(), a, hint)
	if err != nil {
		t.Fatalf("Acquire(%s, hint %s): %v", a.PublicIP, hint, err)
	}
	return l
}

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// recorder runs Watch, applies each Update to the set it holds and keeps
// every Update and the set's size after it.
type recorder struct {
	mu      sync.Mutex
	set     map[string]lease.Lease // by etcd key
	updates []lease.Update
	sizes   []int
}

func newRecorder() *recorder { return &recorder{set: map[string]lease.Lease{}} }

func watch(t *testing.T, m *Manager) *recorder {
	r := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Watch(ctx, r.apply)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// apply applies u to the set.
func (r *recorder) apply(u lease.Update) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if u.Full {
		clear(r.set)
	}
	for _, c := range u.Changes {
		if c.Removed {
			delete(r.set, c.Key)
		} else {
			r.set[c.Key] = c.Lease
		}
	}
	r.updates = append(r.updates, u)
	r.sizes = append(r.sizes, len(r.set))
}

// summary renders a set as sorted "subnets=publicIPs" strings (as
// lease.Lease.String and nodeID write them).
func summary(set map[string]lease.Lease) []string {
	ls := slices.Collect(maps.Values(set))
	lease.Sort(ls)
	var out []string
	for _, l := range ls {
		out = append(out, fmt.Sprintf("%s=%s", l, nodeID(l.Attrs)))
	}
	return out
}

// waitSet waits until the set is want, in any order.
func (r *recorder) waitSet(t *testing.T, want ...string) {
	t.Helper()
	r.waitSetWithin(t, 10*time.Second, want...)
}

// waitSetWithin is waitSet with a timeout.
func (r *recorder) waitSetWithin(t *testing.T, timeout time.Duration, want ...string) {
	t.Helper()
	eventually(t, timeout, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.updates) == 0 {
			return fmt.Errorf("nothing delivered, want %v", want)
		}
		if got := summary(r.set); !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
			return fmt.Errorf("set %v, want %v", got, want)
		}
		return nil
	})
}

// all returns the updates delivered so far.
func (r *recorder) all() []lease.Update {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.updates)
}

// describe renders an update as "full" or "changes", then its changes
// sorted by key: "+name=publicIP" or "-name", name the key without
// <prefix>/subnets/.
func describe(u lease.Update) string {
	out := "changes"
	if u.Full {
		out = "full"
	}
	changes := slices.SortedFunc(slices.Values(u.Changes), func(a, b lease.Change) int { return strings.Compare(a.Key, b.Key) })
	for _, c := range changes {
		name := strings.TrimPrefix(c.Key, DefaultPrefix+"/subnets/")
		if c.Removed {
			out += " -" + name
		} else {
			out += fmt.Sprintf(" +%s=%s", name, nodeID(c.Lease.Attrs))
		}
	}
	return out
}

// describeAll describes each of updates.
func describeAll(updates []lease.Update) []string {
	var out []string
	for _, u := range updates {
		out = append(out, describe(u))
	}
	return out
}

package etcd

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
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

func subnetKey(s string) string {
	return DefaultPrefix + "/subnets/" + keyName(netip.MustParsePrefix(s))
}

func vxlanAttrs(ip, mac string) lease.Attrs {
	data, _ := json.Marshal(lease.VXLANData{VNI: 1, VtepMAC: mac})
	return lease.Attrs{PublicIP: netip.MustParseAddr(ip), BackendType: "vxlan", BackendData: data}
}

func mustAcquire(t *testing.T, m *Manager, a lease.Attrs, hint netip.Prefix) lease.Lease {
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

// recorder runs Watch and keeps every delivered set.
type recorder struct {
	mu   sync.Mutex
	sets [][]lease.Lease
}

func watch(t *testing.T, m *Manager) *recorder {
	r := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Watch(ctx, func(set []lease.Lease) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.sets = append(r.sets, set)
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// summary renders a set as "subnet=publicIP" strings.
func summary(set []lease.Lease) []string {
	var out []string
	for _, l := range set {
		out = append(out, fmt.Sprintf("%s=%s", l.Subnet, l.Attrs.PublicIP))
	}
	return out
}

// waitSet waits until the latest delivered set is want.
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
		if len(r.sets) == 0 {
			return fmt.Errorf("no set delivered, want %v", want)
		}
		if got := summary(r.sets[len(r.sets)-1]); !slices.Equal(got, want) {
			return fmt.Errorf("latest set %v, want %v", got, want)
		}
		return nil
	})
}

func (r *recorder) all() [][]lease.Lease {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sets)
}

package etcd

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/pkg/lease"
)

// keeping runs Keep on l and records every changed lease.
type keeping struct {
	mu      sync.Mutex
	changes []lease.Lease
}

func keep(t *testing.T, m *Manager, l lease.Lease) *keeping {
	k := &keeping{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Keep(ctx, l, func(l lease.Lease) {
			k.mu.Lock()
			defer k.mu.Unlock()
			k.changes = append(k.changes, l)
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Keep did not return after its context ended")
		}
	})
	return k
}

func (k *keeping) last() (lease.Lease, int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.changes) == 0 {
		return lease.Lease{}, 0
	}
	return k.changes[len(k.changes)-1], len(k.changes)
}

func TestKeepRenews(t *testing.T) {
	t.Parallel()
	e := newEnv(t, netConf)
	m := e.manager(func(c *Config) { c.TTL, c.RenewMargin = 4*time.Second, 3*time.Second })
	l := mustAcquire(t, m, vxlanAttrs("192.168.64.1", "02:00:00:00:00:01"), lease.Lease{})
	k := keep(t, m, l)

	// Past the original expiry, with a few renewals in between.
	eventually(t, 20*time.Second, func() error {
		got, n := k.last()
		if n < 3 || time.Now().Before(l.Expiration.Add(time.Second)) {
			return fmt.Errorf("%d renewals so far", n)
		}
		if got.Subnet != l.Subnet || !got.Expiration.After(l.Expiration) {
			return fmt.Errorf("renewed lease %s expiring %v, want %s after %v", got.Subnet, got.Expiration, l.Subnet, l.Expiration)
		}
		return nil
	})
	_, id, ok := e.get(subnetKey(l.Subnet.String()))
	if !ok {
		t.Fatal("lease key expired despite Keep")
	}
	ttl, err := e.cli.TimeToLive(context.Background(), clientv3.LeaseID(id))
	if err != nil || ttl.TTL <= 0 {
		t.Fatalf("etcd lease TTL %d (%v), want it alive", ttl.TTL, err)
	}
}

func TestKeepReacquiresDeletedLease(t *testing.T) {
	t.Parallel()
	e := newEnv(t, netConf)
	m := e.manager(nil)
	l := mustAcquire(t, m, vxlanAttrs("192.168.64.1", "02:00:00:00:00:01"), lease.Lease{})
	key := subnetKey(l.Subnet.String())
	k := keep(t, m, l)

	e.del(key)
	eventually(t, 10*time.Second, func() error {
		got, n := k.last()
		if n == 0 {
			return fmt.Errorf("no change reported")
		}
		if got.Subnet != l.Subnet {
			return fmt.Errorf("reacquired %s, want the same subnet %s", got.Subnet, l.Subnet)
		}
		if _, id, ok := e.get(key); !ok || id == 0 {
			return fmt.Errorf("key %s not back with an etcd lease", key)
		}
		return nil
	})
}

func TestKeepMovesWhenSubnetTakenOver(t *testing.T) {
	t.Parallel()
	e := newEnv(t, netConf)
	m := e.manager(nil)
	l := mustAcquire(t, m, vxlanAttrs("192.168.64.1", "02:00:00:00:00:01"), lease.Lease{})
	k := keep(t, m, l)

	// Another node now owns the key (e.g. ours expired and it took it).
	other := `{"PublicIP":"192.168.64.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:02"}}`
	e.put(subnetKey(l.Subnet.String()), other)
	eventually(t, 10*time.Second, func() error {
		got, n := k.last()
		if n == 0 || got.Subnet == l.Subnet {
			return fmt.Errorf("still on %s after %d changes", l.Subnet, n)
		}
		value, _, ok := e.get(subnetKey(got.Subnet.String()))
		if a, err := parseAttrs([]byte(value), subnets("")); !ok || err != nil || a.PublicIP != l.Attrs.PublicIP {
			return fmt.Errorf("new subnet %s holds %q", got.Subnet, value)
		}
		return nil
	})
	if value, _, _ := e.get(subnetKey(l.Subnet.String())); value != other {
		t.Fatalf("the other node's lease was overwritten: %s", value)
	}
}

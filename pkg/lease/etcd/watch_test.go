package etcd

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/pkg/lease"
)

func TestWatchAddsDeletesAndSkipsGarbage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, netConf)
	m := e.manager(nil)
	rec := watch(t, m)
	rec.waitSet(t) // the empty initial listing is delivered too

	a := mustAcquire(t, m, vxlanAttrs("192.168.64.1", "02:00:00:00:00:01"), subnets("10.5.1.0/24"))
	mustAcquire(t, m, vxlanAttrs("192.168.64.2", "02:00:00:00:00:02"), subnets("10.5.2.0/24"))
	rec.waitSet(t, "10.5.1.0/24=192.168.64.1", "10.5.2.0/24=192.168.64.2")

	for key, value := range map[string]string{
		DefaultPrefix + "/subnets/bad-key":        `{"PublicIP":"192.168.64.7"}`,
		DefaultPrefix + "/subnets/10.5.7.5-24":    `{"PublicIP":"192.168.64.7"}`,
		DefaultPrefix + "/subnets/10.5.8.0-24":    `{"PublicIP":`,
		DefaultPrefix + "/subnets/10.5.9.0-24":    `{"PublicIP":"not-an-ip","BackendType":"vxlan"}`,
		DefaultPrefix + "/subnets/10.5.10.0-24":   `{"BackendType":"vxlan"}`,
		DefaultPrefix + "/subnets/10.5.11.0-24/x": `{"PublicIP":"192.168.64.7"}`,
	} {
		e.put(key, value)
	}
	// A dual-stack key without a PublicIPv6 is unusable.
	e.put(DefaultPrefix+"/subnets/10.5.4.0-24&fd00:0:0:4::-64", `{"PublicIP":"192.168.64.7","PublicIPv6":null,"BackendType":"host-gw"}`)
	// A lease with a dual-stack key name has both halves.
	e.put(DefaultPrefix+"/subnets/10.5.3.0-24&fd00:0:0:3::-64", `{"PublicIP":"192.168.64.3","PublicIPv6":"fd00::3","BackendType":"host-gw"}`)
	const dual = "10.5.3.0/24+fd00:0:0:3::/64=192.168.64.3/fd00::3"
	rec.waitSet(t, "10.5.1.0/24=192.168.64.1", "10.5.2.0/24=192.168.64.2", dual)

	e.del(subnetKey(a.Subnet.String()))
	rec.waitSet(t, "10.5.2.0/24=192.168.64.2", dual)

	// A garbage value replacing a valid one removes the lease.
	e.put(subnetKey("10.5.2.0/24"), `garbage`)
	rec.waitSet(t, dual)

	for i, u := range rec.all() {
		for _, c := range u.Changes {
			if !c.Removed && (c.Lease.Attrs.PublicIP == netip.MustParseAddr("192.168.64.7") || !c.Lease.Attrs.PublicIP.IsValid()) {
				t.Errorf("update %d delivers unparsable lease %+v", i, c)
			}
		}
	}
}

// TestWatchDeliversOnlyChanges checks that after the full set each event
// delivers only the key it touched, and renewals and garbage nothing.
func TestWatchDeliversOnlyChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, netConf)
	e.put(subnetKey("10.5.1.0/24"), leaseJSON("192.168.64.1"))
	e.put(subnetKey("10.5.2.0/24"), leaseJSON("192.168.64.2"))
	m := e.manager(nil)
	rec := watch(t, m)
	rec.waitSet(t, "10.5.1.0/24=192.168.64.1", "10.5.2.0/24=192.168.64.2")

	e.put(subnetKey("10.5.3.0/24"), leaseJSON("192.168.64.3"))
	rec.waitSet(t, "10.5.1.0/24=192.168.64.1", "10.5.2.0/24=192.168.64.2", "10.5.3.0/24=192.168.64.3")

	// A renewal the way flannel does it (the same value under a new etcd
	// lease) changes nothing; then a delete.
	grant, err := e.cli.Grant(context.Background(), 60)
	if err != nil {
		t.Fatal(err)
	}
	e.put(subnetKey("10.5.1.0/24"), leaseJSON("192.168.64.1"), clientv3.WithLease(grant.ID))
	e.del(subnetKey("10.5.2.0/24"))
	rec.waitSet(t, "10.5.1.0/24=192.168.64.1", "10.5.3.0/24=192.168.64.3")

	e.put(subnetKey("10.5.3.0/24"), leaseJSON("192.168.64.33"))
	rec.waitSet(t, "10.5.1.0/24=192.168.64.1", "10.5.3.0/24=192.168.64.33")

	// Garbage under a key never delivered, and its deletion, are nothing;
	// garbage replacing a delivered lease removes it.
	e.put(subnetKey("10.5.4.0/24"), `garbage`)
	e.del(subnetKey("10.5.4.0/24"))
	e.put(subnetKey("10.5.3.0/24"), `{"PublicIP":`)
	rec.waitSet(t, "10.5.1.0/24=192.168.64.1")

	want := []string{
		"full +10.5.1.0-24=192.168.64.1 +10.5.2.0-24=192.168.64.2",
		"changes +10.5.3.0-24=192.168.64.3",
		"changes -10.5.2.0-24",
		"changes +10.5.3.0-24=192.168.64.33",
		"changes -10.5.3.0-24",
	}
	if got := describeAll(rec.all()); !slices.Equal(got, want) {
		t.Fatalf("updates\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestWatchRelistsAfterCompaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t, netConf)
	m := e.manager(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// A watcher that listed, then fell behind a compaction, as after a long
	// disconnect.
	rec := newRecorder()
	w := newWatcher(m, rec.apply)
	for _, ip := range []string{"1", "2", "4"} {
		e.put(subnetKey("10.5."+ip+".0/24"), leaseJSON("192.168.64."+ip))
	}
	rev, err := w.list(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Meanwhile 1 goes, 3 comes, 2 is rewritten as it was, 4 changes and 5
	// is garbage.
	e.del(subnetKey("10.5.1.0/24"))
	e.put(subnetKey("10.5.3.0/24"), leaseJSON("192.168.64.3"))
	e.put(subnetKey("10.5.2.0/24"), leaseJSON("192.168.64.2"))
	e.put(subnetKey("10.5.4.0/24"), leaseJSON("192.168.64.44"))
	e.put(subnetKey("10.5.5.0/24"), `garbage`)
	e.srv.Compact(ctx)

	w.follow(ctx, rev) // must end on ErrCompacted instead of blocking
	if ctx.Err() != nil {
		t.Fatal("follow did not return after a compaction")
	}
	// The re-list delivers the difference; one that finds nothing new
	// delivers nothing.
	for range 2 {
		if _, err := w.list(ctx); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"full +10.5.1.0-24=192.168.64.1 +10.5.2.0-24=192.168.64.2 +10.5.4.0-24=192.168.64.4",
		"changes -10.5.1.0-24 +10.5.3.0-24=192.168.64.3 +10.5.4.0-24=192.168.64.44",
	}
	if got := describeAll(rec.all()); !slices.Equal(got, want) {
		t.Fatalf("updates\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// And through the public API: compact, then change, still the right set.
	rec = watch(t, m)
	rec.waitSet(t, "10.5.2.0/24=192.168.64.2", "10.5.3.0/24=192.168.64.3", "10.5.4.0/24=192.168.64.44")
	e.srv.Compact(ctx)
	mustAcquire(t, m, vxlanAttrs("192.168.64.6", "02:00:00:00:00:06"), subnets("10.5.6.0/24"))
	rec.waitSet(t, "10.5.2.0/24=192.168.64.2", "10.5.3.0/24=192.168.64.3", "10.5.4.0/24=192.168.64.44", "10.5.6.0/24=192.168.64.6")
}

func TestWatchAndKeepSurviveOutage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, netConf)
	m := e.manager(func(c *Config) { c.TTL, c.RenewMargin = 4*time.Second, 3*time.Second })
	a := mustAcquire(t, m, vxlanAttrs("192.168.64.1", "02:00:00:00:00:01"), subnets("10.5.1.0/24"))
	rec := watch(t, m)
	k := keep(t, m, a)
	rec.waitSet(t, "10.5.1.0/24=192.168.64.1")

	e.srv.Stop()
	// Let Watch and Keep run into the outage (a renewal falls due within 1 s)
	// while a request of our own fails.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := e.cli.Get(ctx, "x")
	cancel()
	if err == nil {
		t.Fatal("etcd still answers after Stop")
	}
	e.srv.Start()

	// A lease written right after the restart is delivered; the last set was
	// never replaced by an empty one.
	e.put(subnetKey("10.5.2.0/24"), `{"PublicIP":"192.168.64.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:02"}}`)
	rec.waitSet(t, "10.5.1.0/24=192.168.64.1", "10.5.2.0/24=192.168.64.2")
	rec.mu.Lock()
	for i, n := range rec.sizes {
		if n == 0 {
			t.Errorf("the set was empty after update %d", i)
		}
	}
	rec.mu.Unlock()
	// Keep renews again and the own lease outlives its TTL.
	_, before := k.last()
	eventually(t, 20*time.Second, func() error {
		if _, n := k.last(); n < before+2 {
			return fmt.Errorf("%d renewals after the restart", n-before)
		}
		return nil
	})
	if _, _, ok := e.get(subnetKey("10.5.1.0/24")); !ok {
		t.Fatal("own lease lost after the outage")
	}
}

// churn returns a step that feeds a watcher holding n delivered leases one
// watch event changing one of them, and counts the changes delivered. It
// needs no etcd: the events are made up.
func churn(n int) (step func(), delivered *int) {
	w := newWatcher(&Manager{cfg: Config{Prefix: DefaultPrefix}}, func(lease.Update) {})
	event := func(i, version int) []*clientv3.Event {
		subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
		kv := &mvccpb.KeyValue{Key: []byte(subnetKey(subnet.String())), Value: []byte(leaseJSON(fmt.Sprintf("192.168.%d.1", version)))}
		return []*clientv3.Event{{Type: mvccpb.PUT, Kv: kv}}
	}
	var b batch
	for i := range n {
		w.apply(&b, event(i, 0))
	}
	w.deliver(b)
	changes := 0
	w.update = func(u lease.Update) { changes += len(u.Changes) }
	events, k := [2][]*clientv3.Event{event(n/2, 1), event(n/2, 0)}, 0
	return func() {
		var b batch
		w.apply(&b, events[k%2])
		w.deliver(b)
		k++
	}, &changes
}

// TestWatchEventCostIndependentOfLeases checks that an event allocates as
// much with 10,000 leases as with 1,000 (rebuilding or copying the set
// would allocate ten times more).
func TestWatchEventCostIndependentOfLeases(t *testing.T) {
	const events = 200
	perEvent := func(n int) uint64 {
		step, delivered := churn(n)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range events {
			step()
		}
		runtime.ReadMemStats(&after)
		if *delivered != events {
			t.Fatalf("%d events delivered %d changes, want one each", events, *delivered)
		}
		return (after.TotalAlloc - before.TotalAlloc) / events
	}
	small, large := perEvent(1000), perEvent(10000)
	t.Logf("bytes allocated per event: %d with 1000 leases, %d with 10000", small, large)
	if large > small+small/2 {
		t.Errorf("an event allocates %d bytes with 10000 leases, %d with 1000: its cost grows with the lease count", large, small)
	}
}

// BenchmarkWatchEvent measures one lease change at 1,000 and at 10,000
// leases; the two should cost the same.
func BenchmarkWatchEvent(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("leases=%d", n), func(b *testing.B) {
			step, _ := churn(n)
			b.ReportAllocs()
			for b.Loop() {
				step()
			}
		})
	}
}

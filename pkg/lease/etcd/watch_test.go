package etcd

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/lease"
)

func TestWatchAddsDeletesAndSkipsGarbage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, netConf)
	m := e.manager(nil)
	rec := watch(t, m)
	rec.waitSet(t) // the empty initial listing is delivered too

	a := mustAcquire(t, m, vxlanAttrs("192.168.64.1", "02:00:00:00:00:01"), netip.MustParsePrefix("10.5.1.0/24"))
	mustAcquire(t, m, vxlanAttrs("192.168.64.2", "02:00:00:00:00:02"), netip.MustParsePrefix("10.5.2.0/24"))
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
	// A lease with a dual-stack key name counts by its IPv4 half.
	e.put(DefaultPrefix+"/subnets/10.5.3.0-24&fd00:0:0:3::-64", `{"PublicIP":"192.168.64.3","PublicIPv6":"fd00::3","BackendType":"host-gw"}`)
	rec.waitSet(t, "10.5.1.0/24=192.168.64.1", "10.5.2.0/24=192.168.64.2", "10.5.3.0/24=192.168.64.3")

	e.del(subnetKey(a.Subnet.String()))
	rec.waitSet(t, "10.5.2.0/24=192.168.64.2", "10.5.3.0/24=192.168.64.3")

	// A garbage value replacing a valid one removes the lease.
	e.put(subnetKey("10.5.2.0/24"), `garbage`)
	rec.waitSet(t, "10.5.3.0/24=192.168.64.3")

	for i, set := range rec.all() {
		for _, l := range set {
			if l.Attrs.PublicIP == netip.MustParseAddr("192.168.64.7") || !l.Attrs.PublicIP.IsValid() {
				t.Errorf("set %d holds unparsable lease %+v", i, l)
			}
		}
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
	var sets [][]lease.Lease
	w := &watcher{m: m, update: func(s []lease.Lease) { sets = append(sets, s) }}
	a := mustAcquire(t, m, vxlanAttrs("192.168.64.1", "02:00:00:00:00:01"), netip.MustParsePrefix("10.5.1.0/24"))
	rev, err := w.list(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.del(subnetKey(a.Subnet.String()))
	mustAcquire(t, m, vxlanAttrs("192.168.64.2", "02:00:00:00:00:02"), netip.MustParsePrefix("10.5.2.0/24"))
	e.srv.Compact(ctx)

	w.follow(ctx, rev) // must end on ErrCompacted instead of blocking
	if ctx.Err() != nil {
		t.Fatal("follow did not return after a compaction")
	}
	if _, err := w.list(ctx); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(summary(sets[len(sets)-1])); got != "[10.5.2.0/24=192.168.64.2]" || len(sets) != 2 {
		t.Fatalf("%d deliveries, last %s; want 2, the last [10.5.2.0/24=192.168.64.2]", len(sets), got)
	}

	// And through the public API: compact, then change, still the right set.
	rec := watch(t, m)
	rec.waitSet(t, "10.5.2.0/24=192.168.64.2")
	e.srv.Compact(ctx)
	mustAcquire(t, m, vxlanAttrs("192.168.64.3", "02:00:00:00:00:03"), netip.MustParsePrefix("10.5.3.0/24"))
	rec.waitSet(t, "10.5.2.0/24=192.168.64.2", "10.5.3.0/24=192.168.64.3")
}

func TestWatchAndKeepSurviveOutage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, netConf)
	m := e.manager(func(c *Config) { c.TTL, c.RenewMargin = 4*time.Second, 3*time.Second })
	a := mustAcquire(t, m, vxlanAttrs("192.168.64.1", "02:00:00:00:00:01"), netip.MustParsePrefix("10.5.1.0/24"))
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
	for i, set := range rec.all() {
		if len(set) == 0 {
			t.Errorf("delivery %d was an empty set", i)
		}
	}
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

package etcd

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestAcquireWritesFlannelLease(t *testing.T) {
	t.Parallel()
	e := newEnv(t, netConf)
	m := e.manager(nil)
	start := time.Now()
	l := mustAcquire(t, m, vxlanAttrs("192.168.64.3", "c6:d2:8e:11:22:33"), netip.MustParsePrefix("10.5.7.0/24"))

	if l.Subnet != netip.MustParsePrefix("10.5.7.0/24") {
		t.Fatalf("subnet = %s, want the free hint 10.5.7.0/24", l.Subnet)
	}
	if exp := l.Expiration.Sub(start); exp < 24*time.Hour-time.Minute || exp > 24*time.Hour+time.Minute {
		t.Errorf("expiration in %v, want about 24h", exp)
	}
	value, id, ok := e.get("/coreos.com/network/subnets/10.5.7.0-24")
	if !ok {
		t.Fatal("lease key /coreos.com/network/subnets/10.5.7.0-24 missing")
	}
	const want = `{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:8e:11:22:33"}}`
	if value != want {
		t.Errorf("lease value\n got %s\nwant %s", value, want)
	}
	ttl, err := e.cli.TimeToLive(context.Background(), clientv3.LeaseID(id))
	if err != nil {
		t.Fatal(err)
	}
	if ttl.GrantedTTL != 86400 || ttl.TTL < 86300 || ttl.TTL > 86400 {
		t.Errorf("etcd lease granted TTL %d, remaining %d; want 86400", ttl.GrantedTTL, ttl.TTL)
	}
}

func TestAcquireReusesLeaseOfPublicIP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, netConf)
	first := mustAcquire(t, e.manager(nil), vxlanAttrs("192.168.64.3", "c6:d2:8e:11:22:33"), netip.Prefix{})
	_, oldID, _ := e.get(subnetKey(first.Subnet.String()))

	// A restarted node with a new VTEP MAC and a stale hint keeps its subnet.
	again := mustAcquire(t, e.manager(nil), vxlanAttrs("192.168.64.3", "aa:bb:cc:dd:ee:ff"), netip.MustParsePrefix("10.5.200.0/24"))
	if again.Subnet != first.Subnet {
		t.Fatalf("reacquired %s, want the node's existing %s", again.Subnet, first.Subnet)
	}
	value, newID, _ := e.get(subnetKey(first.Subnet.String()))
	if !strings.Contains(value, `"VtepMAC":"aa:bb:cc:dd:ee:ff"`) {
		t.Errorf("value not updated: %s", value)
	}
	if newID == 0 || newID == oldID {
		t.Errorf("etcd lease %x -> %x, want a fresh lease", oldID, newID)
	}
	if ttl, err := e.cli.TimeToLive(context.Background(), clientv3.LeaseID(oldID)); err != nil || ttl.TTL != -1 {
		t.Errorf("old etcd lease: TTL %v, %v; want it revoked (-1)", ttl.TTL, err)
	}
	resp, err := e.cli.Get(context.Background(), DefaultPrefix+"/subnets/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 1 {
		t.Errorf("%d lease keys (%v), want 1", resp.Count, err)
	}
}

func TestAcquireHint(t *testing.T) {
	t.Parallel()
	e := newEnv(t, netConf)
	m := e.manager(nil)
	hint := netip.MustParsePrefix("10.5.42.0/24")
	if l := mustAcquire(t, m, vxlanAttrs("192.168.64.1", "02:00:00:00:00:01"), hint); l.Subnet != hint {
		t.Fatalf("free hint %s not honoured: got %s", hint, l.Subnet)
	}
	if l := mustAcquire(t, m, vxlanAttrs("192.168.64.2", "02:00:00:00:00:02"), hint); l.Subnet == hint {
		t.Fatalf("hint %s granted twice", hint)
	}
	for _, bad := range []string{"10.5.0.0/24", "10.5.255.0/24", "10.6.1.0/24", "10.5.43.0/25", "10.5.43.128/24"} {
		p, _ := netip.ParsePrefix(bad)
		l := mustAcquire(t, m, vxlanAttrs("192.168.65."+fmt.Sprint(len(bad)), "02:00:00:00:00:03"), p)
		if l.Subnet == p || !l.Subnet.Addr().Is4() || l.Subnet.Bits() != 24 {
			t.Errorf("unusable hint %s: got %s", bad, l.Subnet)
		}
		e.del(subnetKey(l.Subnet.String()))
	}
}

func TestAcquireConcurrentNeverDuplicates(t *testing.T) {
	t.Parallel()
	// /26 in /29s, 7 leasable: 10.5.0.8 .. 10.5.0.56.
	e := newEnv(t, `{"Network":"10.5.0.0/26","SubnetLen":29,"SubnetMin":"10.5.0.8","SubnetMax":"10.5.0.56","Backend":{"Type":"vxlan"}}`)
	const nodes = 20
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		got  = map[netip.Prefix]string{}
		full int
	)
	managers := make([]*Manager, nodes)
	for i := range managers {
		managers[i] = e.manager(nil)
	}
	for i, m := range managers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ip := fmt.Sprintf("192.168.64.%d", i+1)
			l, err := m.Acquire(context.Background(), vxlanAttrs(ip, "02:00:00:00:00:01"), netip.MustParsePrefix("10.5.0.16/29"))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, ErrNoFreeSubnet):
				full++
			case err != nil:
				t.Errorf("node %s: %v", ip, err)
			case got[l.Subnet] != "":
				t.Errorf("subnet %s granted to %s and %s", l.Subnet, got[l.Subnet], ip)
			default:
				got[l.Subnet] = ip
			}
		}()
	}
	wg.Wait()
	if len(got) != 7 || full != nodes-7 {
		t.Fatalf("%d nodes got a subnet and %d saw a full network, want 7 and %d", len(got), full, nodes-7)
	}
	for subnet, ip := range got {
		value, _, ok := e.get(subnetKey(subnet.String()))
		if a, err := parseAttrs([]byte(value)); !ok || err != nil || a.PublicIP.String() != ip {
			t.Errorf("key of %s holds %q, want the lease of %s", subnet, value, ip)
		}
	}
	_, err := managers[0].Acquire(context.Background(), vxlanAttrs("192.168.64.200", "02:00:00:00:00:01"), netip.Prefix{})
	if !errors.Is(err, ErrNoFreeSubnet) || !strings.Contains(err.Error(), "10.5.0.0/26") {
		t.Fatalf("full network: err = %v, want ErrNoFreeSubnet naming the network", err)
	}
	t.Logf("full network error: %v", err)
}

func TestAcquireSkipsPermanentReservation(t *testing.T) {
	t.Parallel()
	// Two leasable /26s: 10.5.0.64 and 10.5.0.128.
	e := newEnv(t, `{"Network":"10.5.0.0/24","SubnetLen":26,"SubnetMin":"10.5.0.64","SubnetMax":"10.5.0.128","Backend":{"Type":"vxlan"}}`)
	reserved := `{"PublicIP":"192.168.64.9","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:09"}}`
	e.put(subnetKey("10.5.0.64/26"), reserved) // no etcd lease: permanent
	m := e.manager(nil)
	rec := watch(t, m)

	l := mustAcquire(t, m, vxlanAttrs("192.168.64.1", "02:00:00:00:00:01"), netip.MustParsePrefix("10.5.0.64/26"))
	if l.Subnet != netip.MustParsePrefix("10.5.0.128/26") {
		t.Fatalf("got %s, want the unreserved 10.5.0.128/26", l.Subnet)
	}
	if _, err := m.Acquire(context.Background(), vxlanAttrs("192.168.64.2", "02:00:00:00:00:02"), netip.Prefix{}); !errors.Is(err, ErrNoFreeSubnet) {
		t.Fatalf("third node: err = %v, want ErrNoFreeSubnet", err)
	}
	rec.waitSet(t, "10.5.0.64/26=192.168.64.9", "10.5.0.128/26=192.168.64.1")

	// The reservation's owner gets it and it stays permanent.
	own := mustAcquire(t, m, vxlanAttrs("192.168.64.9", "02:00:00:00:00:99"), netip.Prefix{})
	if own.Subnet != netip.MustParsePrefix("10.5.0.64/26") || !own.Expiration.IsZero() {
		t.Fatalf("owner got %s expiring %v, want its permanent 10.5.0.64/26", own.Subnet, own.Expiration)
	}
	if value, id, _ := e.get(subnetKey("10.5.0.64/26")); id != 0 || !strings.Contains(value, "02:00:00:00:00:99") {
		t.Fatalf("reservation now %s with etcd lease %x, want updated and still permanent", value, id)
	}
}

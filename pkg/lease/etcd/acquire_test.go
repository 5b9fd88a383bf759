package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/pkg/lease"
)

func TestAcquireWritesFlannelLease(t *testing.T) {
	t.Parallel()
	e := newEnv(t, netConf)
	m := e.manager(nil)
	start := time.Now()
	l := mustAcquire(t, m, vxlanAttrs("192.168.64.3", "c6:d2:8e:11:22:33"), subnets("10.5.7.0/24"))

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
	first := mustAcquire(t, e.manager(nil), vxlanAttrs("192.168.64.3", "c6:d2:8e:11:22:33"), lease.Lease{})
	_, oldID, _ := e.get(subnetKey(first.Subnet.String()))

	// A restarted node with a new VTEP MAC and a stale hint keeps its subnet.
	again := mustAcquire(t, e.manager(nil), vxlanAttrs("192.168.64.3", "aa:bb:cc:dd:ee:ff"), subnets("10.5.200.0/24"))
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
	if l := mustAcquire(t, m, vxlanAttrs("192.168.64.1", "02:00:00:00:00:01"), lease.Lease{Subnet: hint}); l.Subnet != hint {
		t.Fatalf("free hint %s not honoured: got %s", hint, l.Subnet)
	}
	if l := mustAcquire(t, m, vxlanAttrs("192.168.64.2", "02:00:00:00:00:02"), lease.Lease{Subnet: hint}); l.Subnet == hint {
		t.Fatalf("hint %s granted twice", hint)
	}
	for _, bad := range []string{"10.5.0.0/24", "10.5.255.0/24", "10.6.1.0/24", "10.5.43.0/25", "10.5.43.128/24"} {
		p, _ := netip.ParsePrefix(bad)
		l := mustAcquire(t, m, vxlanAttrs("192.168.65."+fmt.Sprint(len(bad)), "02:00:00:00:00:03"), lease.Lease{Subnet: p})
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
	managers := make([]*Manager, nodes)
	for i := range managers {
		managers[i] = e.manager(nil)
	}
	leases, full := acquireAll(t, managers, func(i int) lease.Attrs {
		return vxlanAttrs(fmt.Sprintf("192.168.64.%d", i+1), "02:00:00:00:00:01")
	}, subnets("10.5.0.16/29"))
	got := holders(t, leases)
	if len(got) != 7 || full != nodes-7 {
		t.Fatalf("%d nodes got a subnet and %d saw a full network, want 7 and %d", len(got), full, nodes-7)
	}
	for subnet, ip := range got {
		value, _, ok := e.get(subnetKey(subnet.String()))
		if a, err := parseAttrs([]byte(value), subnets("")); !ok || err != nil || a.PublicIP.String() != ip {
			t.Errorf("key of %s holds %q, want the lease of %s", subnet, value, ip)
		}
	}
	_, err := managers[0].Acquire(context.Background(), vxlanAttrs("192.168.64.200", "02:00:00:00:00:01"), lease.Lease{})
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

	l := mustAcquire(t, m, vxlanAttrs("192.168.64.1", "02:00:00:00:00:01"), subnets("10.5.0.64/26"))
	if l.Subnet != netip.MustParsePrefix("10.5.0.128/26") {
		t.Fatalf("got %s, want the unreserved 10.5.0.128/26", l.Subnet)
	}
	if _, err := m.Acquire(context.Background(), vxlanAttrs("192.168.64.2", "02:00:00:00:00:02"), lease.Lease{}); !errors.Is(err, ErrNoFreeSubnet) {
		t.Fatalf("third node: err = %v, want ErrNoFreeSubnet", err)
	}
	rec.waitSet(t, "10.5.0.64/26=192.168.64.9", "10.5.0.128/26=192.168.64.1")

	// The reservation's owner gets it and it stays permanent.
	own := mustAcquire(t, m, vxlanAttrs("192.168.64.9", "02:00:00:00:00:99"), lease.Lease{})
	if own.Subnet != netip.MustParsePrefix("10.5.0.64/26") || !own.Expiration.IsZero() {
		t.Fatalf("owner got %s expiring %v, want its permanent 10.5.0.64/26", own.Subnet, own.Expiration)
	}
	if value, id, _ := e.get(subnetKey("10.5.0.64/26")); id != 0 || !strings.Contains(value, "02:00:00:00:00:99") {
		t.Fatalf("reservation now %s with etcd lease %x, want updated and still permanent", value, id)
	}
}

// dualConf is netConf with IPv6: 255 leasable /64s of fd10:244::/56.
const dualConf = `{"Network":"10.5.0.0/16","SubnetLen":24,"SubnetMin":"10.5.1.0","SubnetMax":"10.5.254.0",` +
	`"EnableIPv6":true,"IPv6Network":"fd10:244::/56","Backend":{"Type":"vxlan"}}`

// dualAttrs are the attrs of a dual-stack vxlan node; ip6 "" leaves the
// IPv4 half out (ip "" the IPv6 one).
func dualAttrs(ip, ip6, mac, mac6 string) lease.Attrs {
	var a lease.Attrs
	if ip != "" {
		a = vxlanAttrs(ip, mac)
	}
	a.BackendType = "vxlan"
	if ip6 != "" {
		v6 := netip.MustParseAddr(ip6)
		a.PublicIPv6 = &v6
		a.BackendV6Data, _ = json.Marshal(lease.VXLANData{VNI: 1, VtepMAC: mac6})
	}
	return a
}

// TestAcquireDualStack: the key and value are flannel's, hints of both
// families are honoured, and a restarted node keeps both subnets.
func TestAcquireDualStack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dualConf)
	m := e.manager(nil)
	rec := watch(t, m)
	a := dualAttrs("192.168.100.11", "fd00:100::11", "3a:6b:5b:22:85:f1", "3e:1a:a9:fe:f1:0a")
	l := mustAcquire(t, m, a, subnets("10.5.31.0/24+fd10:244:0:5b::/64"))
	if l.String() != "10.5.31.0/24+fd10:244:0:5b::/64" {
		t.Fatalf("lease %s, want the free hints 10.5.31.0/24+fd10:244:0:5b::/64", l)
	}
	value, _, ok := e.get(DefaultPrefix + "/subnets/10.5.31.0-24&fd10:244:0:5b::-64")
	const want = `{"PublicIP":"192.168.100.11","PublicIPv6":"fd00:100::11","BackendType":"vxlan",` +
		`"BackendData":{"VNI":1,"VtepMAC":"3a:6b:5b:22:85:f1"},"BackendV6Data":{"VNI":1,"VtepMAC":"3e:1a:a9:fe:f1:0a"}}`
	if !ok || value != want {
		t.Fatalf("lease value (present %v)\n got %s\nwant %s", ok, value, want)
	}
	rec.waitSet(t, "10.5.31.0/24+fd10:244:0:5b::/64=192.168.100.11/fd00:100::11")

	// Another node with only an IPv6 hint gets that and a random IPv4 subnet.
	b := mustAcquire(t, m, dualAttrs("192.168.100.12", "fd00:100::12", "02:00:00:00:00:02", "02:00:00:00:00:62"), subnets("fd10:244:0:7::/64"))
	if !b.Subnet.IsValid() || b.Subnet == l.Subnet || b.IPv6Subnet != netip.MustParsePrefix("fd10:244:0:7::/64") {
		t.Fatalf("second node got %s", b)
	}
	// A taken hint is not granted again.
	c := mustAcquire(t, m, dualAttrs("192.168.100.13", "fd00:100::13", "02:00:00:00:00:03", "02:00:00:00:00:63"), subnets("10.5.31.0/24+fd10:244:0:7::/64"))
	if c.Subnet == l.Subnet || c.IPv6Subnet == b.IPv6Subnet || !c.IPv6Subnet.IsValid() {
		t.Fatalf("third node got %s, which overlaps %s or %s", c, l, b)
	}

	// Restarted with a new IPv4 address, the node is found by its IPv6 one.
	a2 := dualAttrs("192.168.100.111", "fd00:100::11", "3a:6b:5b:22:85:f1", "3e:1a:a9:fe:f1:0a")
	if again := mustAcquire(t, e.manager(nil), a2, lease.Lease{}); again.String() != l.String() {
		t.Fatalf("reacquired %s, want %s", again, l)
	}
	rec.waitSet(t, "10.5.31.0/24+fd10:244:0:5b::/64=192.168.100.111/fd00:100::11", b.String()+"=192.168.100.12/fd00:100::12", c.String()+"=192.168.100.13/fd00:100::13")

	// Without a public IPv6 address the lease cannot be taken.
	if _, err := m.Acquire(context.Background(), vxlanAttrs("192.168.100.14", "02:00:00:00:00:04"), lease.Lease{}); err == nil || !strings.Contains(err.Error(), "--public-ipv6") {
		t.Fatalf("Acquire without IPv6: err = %v, want one naming --public-ipv6", err)
	}
}

// TestAcquireIPv6Only: the key has flannel's zero IPv4 half and the value
// PublicIP 0.0.0.0.
func TestAcquireIPv6Only(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd10:244::/56","Backend":{"Type":"host-gw"}}`)
	m := e.manager(nil)
	a := lease.Attrs{PublicIP: netip.MustParseAddr("192.168.100.21"), BackendType: "host-gw"} // IPv4 is off: dropped
	v6 := netip.MustParseAddr("fd00:100::21")
	a.PublicIPv6 = &v6
	l := mustAcquire(t, m, a, subnets("10.5.1.0/24+fd10:244:0:1b::/64"))
	if l.Subnet.IsValid() || l.IPv6Subnet != netip.MustParsePrefix("fd10:244:0:1b::/64") || l.Attrs.PublicIP.IsValid() {
		t.Fatalf("lease %s with PublicIP %s, want fd10:244:0:1b::/64 only", l, l.Attrs.PublicIP)
	}
	value, _, ok := e.get(DefaultPrefix + "/subnets/0.0.0.0-0&fd10:244:0:1b::-64")
	const want = `{"PublicIP":"0.0.0.0","PublicIPv6":"fd00:100::21","BackendType":"host-gw"}`
	if !ok || value != want {
		t.Fatalf("lease value (present %v)\n got %s\nwant %s", ok, value, want)
	}
	rec := watch(t, m)
	rec.waitSet(t, "fd10:244:0:1b::/64=fd00:100::21")
	if again := mustAcquire(t, m, a, lease.Lease{}); again.IPv6Subnet != l.IPv6Subnet {
		t.Fatalf("reacquired %s, want %s", again, l)
	}
}

// TestAcquireTurnsIPv6On: the node's IPv4-only lease from before IPv6 was
// turned on is replaced by a dual-stack one with the same IPv4 subnet.
func TestAcquireTurnsIPv6On(t *testing.T) {
	t.Parallel()
	e := newEnv(t, netConf)
	old := mustAcquire(t, e.manager(nil), vxlanAttrs("192.168.100.31", "02:00:00:00:00:31"), lease.Lease{})
	e.put(DefaultPrefix+"/config", dualConf)
	l := mustAcquire(t, e.manager(nil), dualAttrs("192.168.100.31", "fd00:100::31", "02:00:00:00:00:31", "02:00:00:00:00:61"), lease.Lease{})
	if l.Subnet != old.Subnet || !l.IPv6Subnet.IsValid() {
		t.Fatalf("lease %s, want %s with an IPv6 subnet", l, old.Subnet)
	}
	if _, _, ok := e.get(subnetKey(old.Subnet.String())); ok {
		t.Errorf("old IPv4-only key %s still there", subnetKey(old.Subnet.String()))
	}
	if _, _, ok := e.get(subnetKey(l.String())); !ok {
		t.Errorf("new key %s missing", subnetKey(l.String()))
	}
}

// TestAcquireDualStackConcurrentNeverDuplicates: with three IPv6 subnets
// and many IPv4 ones, concurrent nodes never share an IPv6 subnet, nor an
// IPv4 one even against a flannel lease written under a plain key.
func TestAcquireDualStackConcurrentNeverDuplicates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `{"Network":"10.5.0.0/26","SubnetLen":29,"SubnetMin":"10.5.0.8","SubnetMax":"10.5.0.56",`+
		`"EnableIPv6":true,"IPv6Network":"fd10:244::/62","Backend":{"Type":"vxlan"}}`)
	other := netip.MustParsePrefix("10.5.0.8/29")
	e.put(subnetKey(other.String()), leaseJSON("192.168.64.99")) // IPv4-only key of another node
	managers := make([]*Manager, 8)
	for i := range managers {
		managers[i] = e.manager(nil)
	}
	leases, full := acquireAll(t, managers, func(i int) lease.Attrs {
		return dualAttrs(fmt.Sprintf("192.168.64.%d", i+1), fmt.Sprintf("fd00:64::%d", i+1), "02:00:00:00:00:01", "02:00:00:00:00:02")
	}, subnets(other.String()+"+fd10:244:0:1::/64"))
	if got := holders(t, leases); len(leases) != 3 || full != 5 || got[other] != "" {
		t.Fatalf("%d nodes got a lease (%v) and %d saw a full network, want 3 and 5, none with %s", len(leases), got, full, other)
	}
	resp, err := e.cli.Get(context.Background(), DefaultPrefix+"/subnets/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 4 {
		t.Errorf("%d lease keys (%v), want 4", resp.Count, err)
	}
}

// acquireAll runs Acquire on each of managers at once (node i with
// attrs(i) and hint). It returns the leases granted and how many saw a full
// network; other errors fail the test.
func acquireAll(t *testing.T, managers []*Manager, attrs func(i int) lease.Attrs, hint lease.Lease) ([]lease.Lease, int) {
	t.Helper()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		leases []lease.Lease
		full   int
	)
	for i, m := range managers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := m.Acquire(context.Background(), attrs(i), hint)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, ErrNoFreeSubnet):
				full++
			case err != nil:
				t.Errorf("node %d: %v", i, err)
			default:
				leases = append(leases, l)
			}
		}()
	}
	wg.Wait()
	return leases, full
}

// holders maps each subnet of leases to the public IP of its half,
// failing the test for a subnet granted twice.
func holders(t *testing.T, leases []lease.Lease) map[netip.Prefix]string {
	t.Helper()
	got := map[netip.Prefix]string{}
	for _, l := range leases {
		for _, h := range l.Halves() {
			if prev := got[h.Subnet]; prev != "" {
				t.Errorf("subnet %s granted to %s and %s", h.Subnet, prev, h.PublicIP)
			}
			got[h.Subnet] = h.PublicIP.String()
		}
	}
	return got
}

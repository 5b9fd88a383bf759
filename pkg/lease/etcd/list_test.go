package etcd

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

func TestListReportsExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `{"Network":"10.6.0.0/16","Backend":{"Type":"vxlan"}}`)
	e.put(subnetKey("10.6.9.0/24"), `{"PublicIP":"192.168.64.9","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:09"}}`)
	e.put(subnetKey("10.6.8.0/24"), `not json`)
	m := e.manager(nil)
	l := mustAcquire(t, m, vxlanAttrs("192.168.64.1", "02:00:00:00:00:01"), subnets("10.6.1.0/24"))

	got, err := m.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Subnet != l.Subnet || got[1].Subnet != netip.MustParsePrefix("10.6.9.0/24") {
		t.Fatalf("List = %+v, want the acquired lease and the reservation, sorted, garbage left out", got)
	}
	if left := time.Until(got[0].Expiration); left < 23*time.Hour || left > 24*time.Hour+time.Second {
		t.Errorf("acquired lease expires in %v, want about 24h", left)
	}
	if !got[1].Expiration.IsZero() {
		t.Errorf("permanent reservation has expiry %v", got[1].Expiration)
	}
}

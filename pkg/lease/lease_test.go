package lease

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestSort(t *testing.T) {
	l := func(subnet, ip string) Lease {
		return Lease{Subnet: netip.MustParsePrefix(subnet), Attrs: Attrs{PublicIP: netip.MustParseAddr(ip)}}
	}
	ls := []Lease{
		l("10.244.10.0/24", "192.168.0.1"),
		l("10.244.2.0/24", "192.168.0.9"),
		l("10.244.2.0/25", "192.168.0.2"),
		l("10.244.2.0/24", "192.168.0.3"),
		l("10.244.1.0/24", "192.168.0.4"),
	}
	Sort(ls)
	want := "[10.244.1.0/24@192.168.0.4 10.244.2.0/24@192.168.0.3 10.244.2.0/24@192.168.0.9 10.244.2.0/25@192.168.0.2 10.244.10.0/24@192.168.0.1]"
	got := make([]string, len(ls))
	for i, x := range ls {
		got[i] = x.Subnet.String() + "@" + x.Attrs.PublicIP.String()
	}
	if fmt.Sprint(got) != want {
		t.Errorf("sorted %v, want %s", got, want)
	}
}

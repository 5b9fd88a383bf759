package etcd

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/lease"
	"github.com/weftnet/weft/pkg/netconf"
)

func TestParseKeyName(t *testing.T) {
	for name, want := range map[string]string{
		"10.244.3.0-24":                 "10.244.3.0/24",
		"10.244.3.0-24&fd00:0:0:3::-64": "10.244.3.0/24+fd00:0:0:3::/64",
		// Recorded from flanneld (FLANNEL-COMPAT "Dual stack").
		"10.244.31.0-24&fd10:244:0:5b::-64": "10.244.31.0/24+fd10:244:0:5b::/64",
		// IPv6 only: flannel's MakeSubnetKey with the zero IPv4 net.
		"0.0.0.0-0&fd10:244:0:1b::-64":   "fd10:244:0:1b::/64",
		"10.244.3.5-24":                  "",
		"10.244.3.0":                     "",
		"10.244.3.0-33":                  "",
		"fd00::-64":                      "",
		"0.0.0.0-0":                      "",
		"10.244.3.0-24&garbage":          "",
		"10.244.3.0-24&10.1.0.0-16":      "",
		"bad-key":                        "",
		"10.244.3.0-24&fd00:0:0:3::1-64": "",
		"10.244.3.0-24&fd00:0:0:3::-129": "",
	} {
		got, err := parseKeyName(name)
		if want == "" {
			if err == nil {
				t.Errorf("parseKeyName(%q) = %s, want an error", name, got)
			}
			continue
		}
		if w := subnets(want); err != nil || got.Subnet != w.Subnet || got.IPv6Subnet != w.IPv6Subnet {
			t.Errorf("parseKeyName(%q) = %s, %v, want %s", name, got, err, want)
			continue
		}
		if back := keyName(got); back != name {
			t.Errorf("keyName(%s) = %q, want %q", got, back, name)
		}
	}
}

func TestParseAttrs(t *testing.T) {
	a, err := parseAttrs([]byte(`{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:8e:11:22:33"}}`), subnets("10.5.1.0/24"))
	if err != nil || a.PublicIP != netip.MustParseAddr("192.168.64.3") || a.BackendType != "vxlan" {
		t.Fatalf("parseAttrs = %+v, %v", a, err)
	}
	for _, bad := range []string{`{`, `{"PublicIP":""}`, `{"PublicIP":"fd00::1"}`, `{"PublicIP":"300.1.1.1"}`, `{}`, `{"PublicIP":"0.0.0.0","PublicIPv6":"fd00::1"}`} {
		if _, err := parseAttrs([]byte(bad), subnets("10.5.1.0/24")); err == nil {
			t.Errorf("parseAttrs(%s): want an error", bad)
		}
	}
	for _, bad := range []string{`{"PublicIP":"192.168.64.3"}`, `{"PublicIP":"192.168.64.3","PublicIPv6":null}`, `{"PublicIP":"192.168.64.3","PublicIPv6":"10.0.0.1"}`} {
		if _, err := parseAttrs([]byte(bad), subnets("10.5.1.0/24+fd10::/64")); err == nil {
			t.Errorf("parseAttrs(%s) of a dual-stack key: want an error", bad)
		}
	}
}

// TestFlannelDualStackValue parses the value recorded from flanneld
// (FLANNEL-COMPAT "Dual stack") and writes it back byte for byte.
func TestFlannelDualStackValue(t *testing.T) {
	const recorded = `{"PublicIP":"192.168.100.11","PublicIPv6":"fd00:100::11","BackendType":"vxlan",` +
		`"BackendData":{"VNI":1,"VtepMAC":"3a:6b:5b:22:85:f1"},"BackendV6Data":{"VNI":1,"VtepMAC":"3e:1a:a9:fe:f1:0a"}}`
	sub := subnets("10.244.31.0/24+fd10:244:0:5b::/64")
	a, err := parseAttrs([]byte(recorded), sub)
	if err != nil {
		t.Fatal(err)
	}
	l := lease.Lease{Subnet: sub.Subnet, IPv6Subnet: sub.IPv6Subnet, Attrs: a}
	halves := l.Halves()
	if len(halves) != 2 || halves[1].PublicIP != netip.MustParseAddr("fd00:100::11") {
		t.Fatalf("halves %+v", halves)
	}
	mac, _, err := halves[1].VXLAN()
	if err != nil || mac.String() != "3e:1a:a9:fe:f1:0a" {
		t.Fatalf("IPv6 VtepMAC %s, %v", mac, err)
	}
	if mac, err := l.VtepMAC(); err != nil || mac.String() != "3a:6b:5b:22:85:f1" {
		t.Fatalf("IPv4 VtepMAC %s, %v", mac, err)
	}
	back, err := json.Marshal(a)
	if err != nil || string(back) != recorded {
		t.Errorf("value written back\n got %s\nwant %s", back, recorded)
	}

	// IPv6 only: flannel writes PublicIP 0.0.0.0 and no BackendData.
	const v6only = `{"PublicIP":"0.0.0.0","PublicIPv6":"fd00:100::12","BackendType":"host-gw"}`
	sub = subnets("fd10:244:0:1b::/64")
	if a, err = parseAttrs([]byte(v6only), sub); err != nil || a.PublicIP.IsValid() {
		t.Fatalf("IPv6-only value: %+v, %v", a, err)
	}
	if back, err := json.Marshal(a); err != nil || string(back) != v6only {
		t.Errorf("IPv6-only value written back\n got %s\nwant %s", back, v6only)
	}
}

func TestSubnetRange(t *testing.T) {
	r, err := newSubnetRange("", 32, netip.MustParsePrefix("10.5.0.0/26"), 29, netip.MustParseAddr("10.5.0.8"), netip.MustParseAddr("10.5.0.56"))
	if err != nil {
		t.Fatal(err)
	}
	if r.size() != 7 {
		t.Fatalf("size = %d, want 7", r.size())
	}
	for s, want := range map[string]bool{
		"10.5.0.0/29": false, "10.5.0.8/29": true, "10.5.0.56/29": true,
		"10.5.0.12/29": false, "10.5.0.8/28": false, "10.5.0.64/29": false,
		"::ffff:10.5.0.8/125": false,
	} {
		if got := r.contains(netip.MustParsePrefix(s)); got != want {
			t.Errorf("contains(%s) = %v, want %v", s, got, want)
		}
	}
	taken := map[netip.Prefix]bool{netip.MustParsePrefix("10.5.1.0/29"): true} // outside: does not count
	for i := range uint64(6) {
		taken[r.at(i)] = true
	}
	if p, ok := r.randomFree(taken); !ok || p != netip.MustParsePrefix("10.5.0.56/29") {
		t.Fatalf("randomFree = %s, %v, want the one free subnet 10.5.0.56/29", p, ok)
	}
	taken[r.at(6)] = true
	if p, ok := r.randomFree(taken); ok {
		t.Fatalf("randomFree = %s on a full range", p)
	}

	type args struct {
		n          string
		len        int
		first, max string
	}
	good := args{"10.5.0.0/26", 29, "10.5.0.8", "10.5.0.56"}
	for _, bad := range []func(*args){
		func(a *args) { a.len = 24 },
		func(a *args) { a.first = "10.5.0.9" },
		func(a *args) { a.max = "10.6.0.0" },
		func(a *args) { a.first, a.max = a.max, a.first },
		func(a *args) { a.n = "fd00::/64" },
	} {
		a := good
		bad(&a)
		if _, err := newSubnetRange("", 32, netip.MustParsePrefix(a.n), a.len, netip.MustParseAddr(a.first), netip.MustParseAddr(a.max)); err == nil {
			t.Errorf("newSubnetRange(%+v): want an error", a)
		}
	}
}

// TestSubnetRangeIPv6 checks the range of IPv6 subnets, also one too large
// to count.
func TestSubnetRangeIPv6(t *testing.T) {
	cfg, err := netconf.Parse([]byte(`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd10:244::/56"}`))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := newRanges(cfg)
	if err != nil || rs.v4 != nil || rs.v6 == nil {
		t.Fatalf("newRanges = %+v, %v, want IPv6 only", rs, err)
	}
	r := rs.v6
	if r.size() != 255 || r.at(0) != netip.MustParsePrefix("fd10:244:0:1::/64") || r.at(254) != netip.MustParsePrefix("fd10:244:0:ff::/64") {
		t.Fatalf("size %d, first %s, last %s", r.size(), r.at(0), r.at(254))
	}
	for s, want := range map[string]bool{
		"fd10:244::/64": false, "fd10:244:0:1::/64": true, "fd10:244:0:ff::/64": true,
		"fd10:244:0:100::/64": false, "fd10:244:0:1::/65": false, "10.5.0.0/24": false,
	} {
		if got := r.contains(netip.MustParsePrefix(s)); got != want {
			t.Errorf("contains(%s) = %v, want %v", s, got, want)
		}
	}
	for _, l := range []lease.Lease{subnets("fd10:244:0:7::/64")} {
		if !rs.fits(l) {
			t.Errorf("fits(%s) = false", l)
		}
	}
	for _, l := range []lease.Lease{subnets("10.5.1.0/24+fd10:244:0:7::/64"), subnets("10.5.1.0/24"), subnets("fd10:244:1::/64")} {
		if rs.fits(l) {
			t.Errorf("fits(%s) = true on an IPv6-only config", l)
		}
	}
	huge, err := newSubnetRange("IPv6", 128, netip.MustParsePrefix("fd00::/8"), 126, netip.MustParseAddr("fd00::4"), netip.MustParseAddr("fdff:ffff:ffff:ffff:ffff:ffff:ffff:fffc"))
	if err != nil {
		t.Fatal(err)
	}
	if huge.size() != maxRangeSize || huge.at(1) != netip.MustParsePrefix("fd00::8/126") {
		t.Fatalf("huge range: size %d, at(1) %s", huge.size(), huge.at(1))
	}
	if p, ok := huge.randomFree(nil); !ok || !huge.contains(p) {
		t.Fatalf("randomFree on a huge range = %s, %v", p, ok)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, c := range []Config{
		{},
		{Endpoints: []string{"http://127.0.0.1:1"}, TTL: time.Hour, RenewMargin: time.Hour},
		{Endpoints: []string{"http://127.0.0.1:1"}, TTL: time.Second},
	} {
		if m, err := New(c); err == nil {
			m.Close()
			t.Errorf("New(%+v): want an error", c)
		}
	}
}

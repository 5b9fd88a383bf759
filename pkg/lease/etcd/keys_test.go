package etcd

import (
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/netconf"
)

func TestParseKeyName(t *testing.T) {
	for name, want := range map[string]string{
		"10.244.3.0-24":                  "10.244.3.0/24",
		"10.244.3.0-24&fd00:0:0:3::-64":  "10.244.3.0/24",
		"10.244.3.5-24":                  "",
		"10.244.3.0":                     "",
		"10.244.3.0-33":                  "",
		"fd00::-64":                      "",
		"10.244.3.0-24&garbage":          "",
		"bad-key":                        "",
		"10.244.3.0-24&fd00:0:0:3::1-64": "",
	} {
		got, err := parseKeyName(name)
		if want == "" {
			if err == nil {
				t.Errorf("parseKeyName(%q) = %s, want an error", name, got)
			}
			continue
		}
		if err != nil || got != netip.MustParsePrefix(want) {
			t.Errorf("parseKeyName(%q) = %s, %v, want %s", name, got, err, want)
		}
		if back := keyName(got); want == "10.244.3.0/24" && back != "10.244.3.0-24" {
			t.Errorf("keyName(%s) = %q", got, back)
		}
	}
}

func TestParseAttrs(t *testing.T) {
	a, err := parseAttrs([]byte(`{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:8e:11:22:33"}}`))
	if err != nil || a.PublicIP != netip.MustParseAddr("192.168.64.3") || a.BackendType != "vxlan" {
		t.Fatalf("parseAttrs = %+v, %v", a, err)
	}
	for _, bad := range []string{`{`, `{"PublicIP":""}`, `{"PublicIP":"fd00::1"}`, `{"PublicIP":"300.1.1.1"}`, `{}`} {
		if _, err := parseAttrs([]byte(bad)); err == nil {
			t.Errorf("parseAttrs(%s): want an error", bad)
		}
	}
}

func TestSubnetRange(t *testing.T) {
	cfg := &netconf.Config{
		Network:   netip.MustParsePrefix("10.5.0.0/26"),
		SubnetLen: 29,
		SubnetMin: netip.MustParseAddr("10.5.0.8"),
		SubnetMax: netip.MustParseAddr("10.5.0.56"),
	}
	r, err := newSubnetRange(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.size() != 7 {
		t.Fatalf("size = %d, want 7", r.size())
	}
	for s, want := range map[string]bool{
		"10.5.0.0/29": false, "10.5.0.8/29": true, "10.5.0.56/29": true,
		"10.5.0.12/29": false, "10.5.0.8/28": false, "10.5.0.64/29": false,
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

	for _, bad := range []func(*netconf.Config){
		func(c *netconf.Config) { c.SubnetLen = 24 },
		func(c *netconf.Config) { c.SubnetMin = netip.MustParseAddr("10.5.0.9") },
		func(c *netconf.Config) { c.SubnetMax = netip.MustParseAddr("10.6.0.0") },
		func(c *netconf.Config) { c.SubnetMin, c.SubnetMax = c.SubnetMax, c.SubnetMin },
		func(c *netconf.Config) { c.Network = netip.Prefix{} },
	} {
		c := *cfg
		bad(&c)
		if _, err := newSubnetRange(&c); err == nil {
			t.Errorf("newSubnetRange(%+v): want an error", c)
		}
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

package iface

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/test/testns"
)

func TestOptionErrors(t *testing.T) {
	tests := []struct {
		o    Options
		want string
	}{
		{Options{Ifaces: []string{"eth0"}}, "no address family to select an interface for"},
		{Options{IPv4: true, Regexes: []string{"eth[0"}}, `--iface-regex "eth[0" is not a valid regular expression`},
		{Options{IPv4: true, CanReach: "example.com"}, `--iface-can-reach "example.com" is not an IP address`},
		{Options{IPv4: true, PublicIP: "1.2.3"}, `--public-ip "1.2.3" is not an IPv4 address`},
		{Options{IPv4: true, PublicIP: "fd00::1"}, `--public-ip "fd00::1" is not an IPv4 address`},
		{Options{IPv6: true, PublicIPv6: "10.0.0.1"}, `--public-ipv6 "10.0.0.1" is not an IPv6 address`},
		{Options{IPv6: true, PublicIPv6: "fe80::1%eth0"}, `--public-ipv6 "fe80::1%eth0" is not an IPv6 address`},
	}
	for _, tt := range tests {
		_, err := Select(tt.o)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Select(%+v) error = %v, want %q", tt.o, err, tt.want)
		}
	}
}

// node creates a namespace with these veth links (the peers, peer-a to
// peer-d, have no address; IPv6 addresses skip duplicate detection):
//
//	eth-a 10.1.0.2/24, fd00:1::2/64 (default routes via 10.1.0.1 and fd00:1::1)
//	eth-b 10.2.0.2/24 and 10.2.0.3/24, fd00:2::2/64 and fd00:2::3/64, MTU 1400
//	      (routes 192.0.2.0/24 via 10.2.0.1 and 2001:db8::/32 via fd00:2::1)
//	eth-c 10.3.0.2/24 only
//	bare  no address but its IPv6 link-local one
func node(t *testing.T) *testns.NS {
	ns := testns.New(t, testns.Prefix(), "node")
	for _, cmd := range [][]string{
		{"link", "add", "eth-a", "type", "veth", "peer", "name", "peer-a"},
		{"link", "add", "eth-b", "mtu", "1400", "type", "veth", "peer", "name", "peer-b"},
		{"link", "add", "bare", "type", "veth", "peer", "name", "peer-c"},
		{"link", "add", "eth-c", "type", "veth", "peer", "name", "peer-d"},
		{"link", "set", "peer-a", "up"},
		{"link", "set", "peer-b", "up"},
		{"link", "set", "peer-c", "up"},
		{"link", "set", "peer-d", "up"},
		{"addr", "add", "10.1.0.2/24", "dev", "eth-a"},
		{"addr", "add", "fd00:1::2/64", "dev", "eth-a", "nodad"},
		{"addr", "add", "10.2.0.2/24", "dev", "eth-b"},
		{"addr", "add", "10.2.0.3/24", "dev", "eth-b"},
		// The kernel lists IPv6 addresses newest first: fd00:2::2 first.
		{"addr", "add", "fd00:2::3/64", "dev", "eth-b", "nodad"},
		{"addr", "add", "fd00:2::2/64", "dev", "eth-b", "nodad"},
		{"addr", "add", "10.3.0.2/24", "dev", "eth-c"},
		{"link", "set", "eth-a", "up"},
		{"link", "set", "eth-b", "up"},
		{"link", "set", "eth-c", "up"},
		{"link", "set", "bare", "up"},
		{"route", "add", "default", "via", "10.1.0.1", "dev", "eth-a"},
		{"-6", "route", "add", "default", "via", "fd00:1::1", "dev", "eth-a"},
		{"route", "add", "192.0.2.0/24", "via", "10.2.0.1", "dev", "eth-b"},
		{"-6", "route", "add", "2001:db8::/32", "via", "fd00:2::1", "dev", "eth-b"},
	} {
		ns.MustRun(t, "ip", cmd...)
	}
	return ns
}

func selectIn(t *testing.T, ns *testns.NS, o Options) (Selected, error) {
	t.Helper()
	var sel Selected
	err := ns.Do(func() (err error) {
		sel, err = Select(o)
		return err
	})
	return sel, err
}

func TestSelect(t *testing.T) {
	ns := node(t)
	a, b := netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("10.2.0.2")
	b2 := netip.MustParseAddr("10.2.0.3")
	tests := []struct {
		name string
		o    Options
		want string // interface name
		ip   netip.Addr
	}{
		{"default route", Options{IPv4: true}, "eth-a", a},
		{"iface by name", Options{IPv4: true, Ifaces: []string{"eth-b"}}, "eth-b", b},
		{"iface by secondary address", Options{IPv4: true, Ifaces: []string{"10.2.0.3"}}, "eth-b", b2},
		{"first matching iface wins", Options{IPv4: true, Ifaces: []string{"nope", "bare", "10.9.9.9", "eth-b", "eth-a"}}, "eth-b", b},
		{"regex on name", Options{IPv4: true, Regexes: []string{"^eth-b$"}}, "eth-b", b},
		{"regex on address", Options{IPv4: true, Regexes: []string{`^10\.2\.0\.3$`}}, "eth-b", b2},
		{"regex addresses before names", Options{IPv4: true, Regexes: []string{`eth-a|^10\.2\.`}}, "eth-b", b},
		{"regexes in order", Options{IPv4: true, Regexes: []string{"^zzz", "^eth-b", "^eth-a"}}, "eth-b", b},
		{"regex skips interfaces without address", Options{IPv4: true, Regexes: []string{"^bare|^eth-a"}}, "eth-a", a},
		{"regexes after ifaces", Options{IPv4: true, Ifaces: []string{"nope"}, Regexes: []string{"^eth-b"}}, "eth-b", b},
		{"ifaces before regexes", Options{IPv4: true, Ifaces: []string{"eth-a"}, Regexes: []string{"^eth-b"}}, "eth-a", a},
		{"can reach via route", Options{IPv4: true, CanReach: "192.0.2.7"}, "eth-b", b},
		{"can reach on link", Options{IPv4: true, CanReach: "10.1.0.99"}, "eth-a", a},
		{"can reach via default route", Options{IPv4: true, CanReach: "198.51.100.1"}, "eth-a", a},
		{"ifaces beat can reach", Options{IPv4: true, Ifaces: []string{"eth-a"}, CanReach: "192.0.2.7"}, "eth-a", a},
		{"iface by IPv6 address", Options{IPv4: true, Ifaces: []string{"fd00:2::3"}}, "eth-b", b},
		{"can reach by the IPv6 route", Options{IPv4: true, CanReach: "2001:db8::1"}, "eth-b", b},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := selectIn(t, ns, tt.o)
			if err != nil {
				t.Fatalf("Select: %v", err)
			}
			if sel.Name != tt.want || sel.IP != tt.ip || sel.PublicIP != tt.ip || sel.Index == 0 {
				t.Errorf("Select = %+v, want %s with IP and PublicIP %s", sel, tt.want, tt.ip)
			}
			wantMTU := 1500
			if tt.want == "eth-b" {
				wantMTU = 1400
			}
			if sel.MTU != wantMTU {
				t.Errorf("MTU %d, want %d", sel.MTU, wantMTU)
			}
		})
	}
}

func TestSelectPublicIP(t *testing.T) {
	ns := node(t)
	sel, err := selectIn(t, ns, Options{IPv4: true, Ifaces: []string{"eth-b"}, PublicIP: "203.0.113.9", PublicIPv6: "2001:db8::9"})
	if err != nil {
		t.Fatal(err)
	}
	if sel.IP != netip.MustParseAddr("10.2.0.2") || sel.PublicIP != netip.MustParseAddr("203.0.113.9") || sel.IPv6.IsValid() || sel.PublicIPv6.IsValid() {
		t.Errorf("Select = %+v, want IP 10.2.0.2 and PublicIP 203.0.113.9, no IPv6", sel)
	}
	sel, err = selectIn(t, ns, Options{IPv4: true, IPv6: true, Ifaces: []string{"eth-b"}, PublicIPv6: "2001:db8::9"})
	if err != nil {
		t.Fatal(err)
	}
	if sel.PublicIP != netip.MustParseAddr("10.2.0.2") || sel.IPv6 != netip.MustParseAddr("fd00:2::2") || sel.PublicIPv6 != netip.MustParseAddr("2001:db8::9") {
		t.Errorf("Select = %+v, want PublicIP 10.2.0.2, IPv6 fd00:2::2 and PublicIPv6 2001:db8::9", sel)
	}
}

func TestSelectNoMatch(t *testing.T) {
	ns := node(t)
	_, err := selectIn(t, ns, Options{IPv4: true, Ifaces: []string{"nope", "10.9.9.9", "bare"}, Regexes: []string{"^zzz"}})
	if err == nil {
		t.Fatal("Select matched nothing but returned no error")
	}
	msg := err.Error()
	for _, want := range []string{
		"--iface nope (no such interface)",
		"--iface 10.9.9.9 (no interface has this address)",
		"--iface bare (it has no IPv4 address)",
		"--iface-regex ^zzz (no IPv4 address or interface name with an IPv4 address matches)",
		"eth-b 10.2.0.2 10.2.0.3", // what exists
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
}

func TestSelectNoDefaultRoute(t *testing.T) {
	ns := node(t)
	ns.MustRun(t, "ip", "route", "del", "default")
	_, err := selectIn(t, ns, Options{IPv4: true})
	if err == nil || !strings.Contains(err.Error(), "no IPv4 default route") {
		t.Errorf("Select without default route: error = %v", err)
	}
	_, err = selectIn(t, ns, Options{IPv4: true, CanReach: "198.51.100.1"})
	if err == nil || !strings.Contains(err.Error(), "--iface-can-reach 198.51.100.1: no route to it") {
		t.Errorf("Select with unreachable --iface-can-reach: error = %v", err)
	}
}

// TestSelectIPv6 selects for IPv6-only and dual-stack nodes.
func TestSelectIPv6(t *testing.T) {
	ns := node(t)
	v6, dual := Options{IPv6: true}, Options{IPv4: true, IPv6: true}
	with := func(o Options, f func(*Options)) Options { f(&o); return o }
	ifaces := func(s ...string) func(*Options) { return func(o *Options) { o.Ifaces = s } }
	regexes := func(s ...string) func(*Options) { return func(o *Options) { o.Regexes = s } }
	canReach := func(s string) func(*Options) { return func(o *Options) { o.CanReach = s } }
	tests := []struct {
		name     string
		o        Options
		want     string // "name ipv4 ipv6", "-" for none; an IPv6 prefix: any address in it
		wantErrs string // error substrings, "|"-separated
	}{
		{"IPv6 only, default route", v6, "eth-a - fd00:1::2", ""},
		{"dual stack, default route", dual, "eth-a 10.1.0.2 fd00:1::2", ""},
		{"dual stack, iface by name", with(dual, ifaces("eth-b")), "eth-b 10.2.0.2 fd00:2::2", ""},
		{"dual stack, iface by IPv6 address", with(dual, ifaces("fd00:2::3")), "eth-b 10.2.0.2 fd00:2::3", ""},
		{"dual stack, iface by IPv4 address", with(dual, ifaces("10.2.0.3")), "eth-b 10.2.0.3 fd00:2::2", ""},
		{"IPv6 only, iface by IPv4 address", with(v6, ifaces("10.2.0.3")), "eth-b - fd00:2::2", ""},
		{"dual stack, regex on an IPv6 address", with(dual, regexes(`^fd00:2::3$`)), "eth-b 10.2.0.2 fd00:2::3", ""},
		{"dual stack, regex on both addresses", with(dual, regexes(`^(10\.2\.0\.3|fd00:2::3)$`)), "eth-b 10.2.0.3 fd00:2::3", ""},
		{"dual stack, regex on name", with(dual, regexes(`^eth-b$`)), "eth-b 10.2.0.2 fd00:2::2", ""},
		{"dual stack, regex skips IPv4-only interfaces", with(dual, regexes(`^10\.3\.|^eth-[ca]`)), "eth-a 10.1.0.2 fd00:1::2", ""},
		{"IPv6 only, can reach by IPv6 route", with(v6, canReach("2001:db8::1")), "eth-b - fd00:2::/64", ""},
		{"dual stack, can reach by IPv6 route", with(dual, canReach("2001:db8::1")), "eth-b 10.2.0.2 fd00:2::/64", ""},
		{"dual stack, can reach by IPv4 route", with(dual, canReach("192.0.2.7")), "eth-b 10.2.0.2 fd00:2::2", ""},
		{"IPv6 only, IPv4-only interface", with(v6, ifaces("eth-c")), "", "--iface eth-c (it has no global IPv6 address)"},
		{"link-local never counts", with(dual, ifaces("bare")), "", "--iface bare (it has no IPv4 address)"},
		{"IPv6 link-local never counts", with(v6, ifaces("bare")), "", "--iface bare (it has no global IPv6 address)"},
		{"dual stack regex error", with(dual, regexes("^zzz")), "", "--iface-regex ^zzz (no IPv4 or IPv6 address or interface name with IPv4 and global IPv6 addresses matches)"},
		{"dual stack, can reach through an IPv4-only interface", with(dual, canReach("10.3.0.9")), "", "--iface-can-reach 10.3.0.9: the route goes through eth-c, but it has no global IPv6 address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := selectIn(t, ns, tt.o)
			if tt.wantErrs != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrs) {
					t.Fatalf("Select = %+v, %v; want an error with %q", sel, err, tt.wantErrs)
				}
				return
			}
			if err != nil {
				t.Fatalf("Select: %v", err)
			}
			want := strings.Fields(tt.want)
			ip := sel.IP.String()
			if !sel.IP.IsValid() {
				ip = "-"
			}
			ok := sel.Name == want[0] && ip == want[1] && sel.PublicIP == sel.IP && sel.PublicIPv6 == sel.IPv6
			if p, err := netip.ParsePrefix(want[2]); err == nil {
				ok = ok && p.Contains(sel.IPv6)
			} else {
				ok = ok && sel.IPv6.String() == want[2]
			}
			if !ok {
				t.Errorf("Select = %+v, want %s", sel, tt.want)
			}
		})
	}

	// Dual stack by the IPv4 default route through an interface without
	// IPv6: a clear error.
	ns.MustRun(t, "ip", "route", "replace", "default", "via", "10.3.0.1", "dev", "eth-c")
	if _, err := selectIn(t, ns, dual); err == nil || !strings.Contains(err.Error(), "the IPv4 default route's interface eth-c cannot be used: it has no global IPv6 address: set --iface") {
		t.Errorf("dual stack via eth-c: error = %v", err)
	}
	ns.MustRun(t, "ip", "-6", "route", "del", "default")
	if _, err := selectIn(t, ns, v6); err == nil || !strings.Contains(err.Error(), "no IPv6 default route") {
		t.Errorf("IPv6 only without default route: error = %v", err)
	}
}

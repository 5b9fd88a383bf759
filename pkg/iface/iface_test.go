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
		{Options{Ifaces: []string{"eth0", "fd00::1"}}, "--iface fd00::1: weft supports IPv4 only"},
		{Options{Regexes: []string{"eth[0"}}, `--iface-regex "eth[0" is not a valid regular expression`},
		{Options{CanReach: "example.com"}, `--iface-can-reach "example.com" is not an IPv4 address`},
		{Options{CanReach: "fd00::1"}, `--iface-can-reach "fd00::1" is not an IPv4 address`},
		{Options{PublicIP: "1.2.3"}, `--public-ip "1.2.3" is not an IPv4 address`},
	}
	for _, tt := range tests {
		_, err := Select(tt.o)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Select(%+v) error = %v, want %q", tt.o, err, tt.want)
		}
	}
}

// node creates a namespace with these veth links (the peers, peer-a to
// peer-c, have no address):
//
//	eth-a 10.1.0.2/24 (default route via 10.1.0.1)
//	eth-b 10.2.0.2/24 and 10.2.0.3/24, MTU 1400 (route 192.0.2.0/24 via 10.2.0.1)
//	bare  no address
func node(t *testing.T) *testns.NS {
	ns := testns.New(t, testns.Prefix(), "node")
	for _, cmd := range [][]string{
		{"link", "add", "eth-a", "type", "veth", "peer", "name", "peer-a"},
		{"link", "add", "eth-b", "mtu", "1400", "type", "veth", "peer", "name", "peer-b"},
		{"link", "add", "bare", "type", "veth", "peer", "name", "peer-c"},
		{"link", "set", "peer-a", "up"},
		{"link", "set", "peer-b", "up"},
		{"link", "set", "peer-c", "up"},
		{"addr", "add", "10.1.0.2/24", "dev", "eth-a"},
		{"addr", "add", "10.2.0.2/24", "dev", "eth-b"},
		{"addr", "add", "10.2.0.3/24", "dev", "eth-b"},
		{"link", "set", "eth-a", "up"},
		{"link", "set", "eth-b", "up"},
		{"link", "set", "bare", "up"},
		{"route", "add", "default", "via", "10.1.0.1", "dev", "eth-a"},
		{"route", "add", "192.0.2.0/24", "via", "10.2.0.1", "dev", "eth-b"},
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
		{"default route", Options{}, "eth-a", a},
		{"iface by name", Options{Ifaces: []string{"eth-b"}}, "eth-b", b},
		{"iface by secondary address", Options{Ifaces: []string{"10.2.0.3"}}, "eth-b", b2},
		{"first matching iface wins", Options{Ifaces: []string{"nope", "bare", "10.9.9.9", "eth-b", "eth-a"}}, "eth-b", b},
		{"regex on name", Options{Regexes: []string{"^eth-b$"}}, "eth-b", b},
		{"regex on address", Options{Regexes: []string{`^10\.2\.0\.3$`}}, "eth-b", b2},
		{"regex addresses before names", Options{Regexes: []string{`eth-a|^10\.2\.`}}, "eth-b", b},
		{"regexes in order", Options{Regexes: []string{"^zzz", "^eth-b", "^eth-a"}}, "eth-b", b},
		{"regex skips interfaces without address", Options{Regexes: []string{"^bare|^eth-a"}}, "eth-a", a},
		{"regexes after ifaces", Options{Ifaces: []string{"nope"}, Regexes: []string{"^eth-b"}}, "eth-b", b},
		{"ifaces before regexes", Options{Ifaces: []string{"eth-a"}, Regexes: []string{"^eth-b"}}, "eth-a", a},
		{"can reach via route", Options{CanReach: "192.0.2.7"}, "eth-b", b},
		{"can reach on link", Options{CanReach: "10.1.0.99"}, "eth-a", a},
		{"can reach via default route", Options{CanReach: "198.51.100.1"}, "eth-a", a},
		{"ifaces beat can reach", Options{Ifaces: []string{"eth-a"}, CanReach: "192.0.2.7"}, "eth-a", a},
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
	sel, err := selectIn(t, ns, Options{Ifaces: []string{"eth-b"}, PublicIP: "203.0.113.9"})
	if err != nil {
		t.Fatal(err)
	}
	if sel.IP != netip.MustParseAddr("10.2.0.2") || sel.PublicIP != netip.MustParseAddr("203.0.113.9") {
		t.Errorf("Select = %+v, want IP 10.2.0.2 and PublicIP 203.0.113.9", sel)
	}
}

func TestSelectNoMatch(t *testing.T) {
	ns := node(t)
	_, err := selectIn(t, ns, Options{Ifaces: []string{"nope", "10.9.9.9", "bare"}, Regexes: []string{"^zzz"}})
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
	_, err := selectIn(t, ns, Options{})
	if err == nil || !strings.Contains(err.Error(), "no IPv4 default route") {
		t.Errorf("Select without default route: error = %v", err)
	}
	_, err = selectIn(t, ns, Options{CanReach: "198.51.100.1"})
	if err == nil || !strings.Contains(err.Error(), "--iface-can-reach 198.51.100.1: no route to it") {
		t.Errorf("Select with unreachable --iface-can-reach: error = %v", err)
	}
}

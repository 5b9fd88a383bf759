package cluster

import (
	"fmt"
	"net/netip"
	"testing"
)

// TestStackNetConf checks the three stacks' net-conf.json and that StackOf
// reads each back.
func TestStackNetConf(t *testing.T) {
	want := map[Stack]string{
		IPv4Only:  `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`,
		DualStack: `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd10:244::/56","Backend":{"Type":"vxlan"}}`,
		IPv6Only:  `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd10:244::/56","Backend":{"Type":"vxlan"}}`,
	}
	for _, s := range Stacks {
		got := StackNetConf(s, "vxlan", "", false)
		if got != want[s] {
			t.Errorf("StackNetConf(%s) = %s, want %s", s, got, want[s])
		}
		if StackOf(got) != s {
			t.Errorf("StackOf(%s) = %s, want %s", got, StackOf(got), s)
		}
	}
	if NetConf("host-gw", "ebpf", false) != `{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw","Datapath":"ebpf"}}` {
		t.Errorf("NetConf changed: %s", NetConf("host-gw", "ebpf", false))
	}
}

// TestParseSubnetKey reads flannel's three key forms.
func TestParseSubnetKey(t *testing.T) {
	for key, want := range map[string]string{
		"10.244.31.0-24":                     "[10.244.31.0/24]",
		"10.244.31.0-24&fd10:244:0:5b::-64":  "[10.244.31.0/24 fd10:244:0:5b::/64]",
		"0.0.0.0-0&fd10:244:0:5b::-64":       "[fd10:244:0:5b::/64]",
		"fd10:244:0:5b::-64":                 "[fd10:244:0:5b::/64]",
		"10.244.31.0/24":                     "error",
		"0.0.0.0-0":                          "error",
		"10.244.31.0-24&fd10:244:0:5b::/64x": "error",
	} {
		got, err := parseSubnetKey(key)
		if s := fmt.Sprint(got); (err != nil) != (want == "error") || err == nil && s != want {
			t.Errorf("parseSubnetKey(%q) = %s, %v; want %s", key, s, err, want)
		}
	}
}

// TestPodCIDRs: IPv4 first on even nodes, IPv6 first on odd ones in dual
// stack, each inside its pod network.
func TestPodCIDRs(t *testing.T) {
	if got := fmt.Sprint(PodCIDRs(0, DualStack)); got != "[10.244.1.0/24 fd10:244:0:1::/64]" {
		t.Errorf("PodCIDRs(0, dual) = %s", got)
	}
	if got := fmt.Sprint(PodCIDRs(1, DualStack)); got != "[fd10:244:0:2::/64 10.244.2.0/24]" {
		t.Errorf("PodCIDRs(1, dual) = %s", got)
	}
	if got := fmt.Sprint(PodCIDRs(2, IPv6Only)); got != "[fd10:244:0:3::/64]" {
		t.Errorf("PodCIDRs(2, ipv6) = %s", got)
	}
	for _, f := range []Family{IPv4, IPv6} {
		if p := PodCIDR(5, f); !PodNetworkOf(f).Contains(p.Addr()) || FamilyOf(p.Addr()) != f {
			t.Errorf("PodCIDR(5, %s) = %s, outside %s", f, p, PodNetworkOf(f))
		}
	}
	if a := underlayIP(1, 3, IPv6); a != netip.MustParseAddr("fd00:100:1::3") {
		t.Errorf("underlayIP(1, 3, IPv6) = %s", a)
	}
}

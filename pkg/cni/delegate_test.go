package cni

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/weftnet/weft/pkg/subnetfile"
)

var envV4 = subnetfile.Env{
	Network: netip.MustParsePrefix("10.244.0.0/16"),
	Subnet:  netip.MustParsePrefix("10.244.1.0/24"),
	MTU:     1450,
	IPMasq:  true,
}

func TestDelegateConf(t *testing.T) {
	dual := envV4
	dual.IPv6Network = netip.MustParsePrefix("fd00:10:244::/56")
	dual.IPv6Subnet = netip.MustParsePrefix("fd00:10:244:1::/64")
	noMasq := envV4
	noMasq.IPMasq = false

	tests := []struct {
		name string
		conf string
		env  subnetfile.Env
		want string
	}{{
		name: "flannel README minimal",
		conf: `{"name":"mynet","type":"flannel"}`,
		env:  envV4,
		want: `{"name":"mynet","type":"bridge","mtu":1450,"ipMasq":false,"isGateway":true,
			"ipam":{"type":"host-local","ranges":[[{"subnet":"10.244.1.0/24"}]],"routes":[{"dst":"10.244.0.0/16","gw":"10.244.1.1"}]}}`,
	}, {
		name: "kube-flannel conflist entry",
		conf: `{"name":"cbr0","cniVersion":"0.3.1","type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}}`,
		env:  envV4,
		want: `{"cniVersion":"0.3.1","name":"cbr0","type":"bridge","hairpinMode":true,"isDefaultGateway":true,
			"mtu":1450,"ipMasq":false,"isGateway":true,
			"ipam":{"type":"host-local","ranges":[[{"subnet":"10.244.1.0/24"}]],"routes":[{"dst":"10.244.0.0/16","gw":"10.244.1.1"}]}}`,
	}, {
		name: "delegate keys win, name and cniVersion do not",
		conf: `{"name":"mynet","cniVersion":"1.0.0","type":"weft","delegate":{"name":"other","cniVersion":"0.3.0",
			"bridge":"mynet0","mtu":1400,"ipMasq":true,"isGateway":false}}`,
		env: envV4,
		want: `{"cniVersion":"1.0.0","name":"mynet","type":"bridge","bridge":"mynet0","mtu":1400,"ipMasq":true,"isGateway":false,
			"ipam":{"type":"host-local","ranges":[[{"subnet":"10.244.1.0/24"}]],"routes":[{"dst":"10.244.0.0/16","gw":"10.244.1.1"}]}}`,
	}, {
		name: "other delegate type gets no isGateway",
		conf: `{"name":"mynet","type":"flannel","delegate":{"type":"ipvlan","master":"eth0"}}`,
		env:  noMasq,
		want: `{"name":"mynet","type":"ipvlan","master":"eth0","mtu":1450,"ipMasq":true,
			"ipam":{"type":"host-local","ranges":[[{"subnet":"10.244.1.0/24"}]],"routes":[{"dst":"10.244.0.0/16","gw":"10.244.1.1"}]}}`,
	}, {
		name: "ipam base: keys kept, routes extended, subnet replaced",
		conf: `{"name":"mynet","type":"flannel","ipam":{"dataDir":"/tmp/x","subnet":"192.0.2.0/24",
			"routes":[{"dst":"10.96.0.0/12"},{"dst":"10.244.0.0/16"}]}}`,
		env: envV4,
		want: `{"name":"mynet","type":"bridge","mtu":1450,"ipMasq":false,"isGateway":true,
			"ipam":{"type":"host-local","dataDir":"/tmp/x","ranges":[[{"subnet":"10.244.1.0/24"}]],
			"routes":[{"dst":"10.96.0.0/12"},{"dst":"10.244.0.0/16"}]}}`,
	}, {
		name: "ipam type kept",
		conf: `{"name":"mynet","type":"flannel","ipam":{"type":"my-ipam"}}`,
		env:  envV4,
		want: `{"name":"mynet","type":"bridge","mtu":1450,"ipMasq":false,"isGateway":true,
			"ipam":{"type":"my-ipam","ranges":[[{"subnet":"10.244.1.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}]}}`,
	}, {
		name: "dual stack",
		conf: `{"name":"cbr0","type":"flannel"}`,
		env:  dual,
		want: `{"name":"cbr0","type":"bridge","mtu":1450,"ipMasq":false,"isGateway":true,
			"ipam":{"type":"host-local","ranges":[[{"subnet":"10.244.1.0/24"}],[{"subnet":"fd00:10:244:1::/64"}]],
			"routes":[{"dst":"10.244.0.0/16","gw":"10.244.1.1"},{"dst":"fd00:10:244::/56","gw":"fd00:10:244:1::1"}]}}`,
	}, {
		name: "IPv6 only",
		conf: `{"name":"cbr0","type":"flannel"}`,
		env:  subnetfile.Env{IPv6Network: dual.IPv6Network, IPv6Subnet: dual.IPv6Subnet, MTU: 1430, IPMasq: true},
		want: `{"name":"cbr0","type":"bridge","mtu":1430,"ipMasq":false,"isGateway":true,
			"ipam":{"type":"host-local","ranges":[[{"subnet":"fd00:10:244:1::/64"}]],
			"routes":[{"dst":"fd00:10:244::/56","gw":"fd00:10:244:1::1"}]}}`,
	}, {
		name: "runtimeConfig passed through",
		conf: `{"name":"cbr0","type":"flannel","runtimeConfig":{"mac":"02:00:00:00:00:01"}}`,
		env:  envV4,
		want: `{"name":"cbr0","type":"bridge","mtu":1450,"ipMasq":false,"isGateway":true,
			"runtimeConfig":{"mac":"02:00:00:00:00:01"},
			"ipam":{"type":"host-local","ranges":[[{"subnet":"10.244.1.0/24"}]],"routes":[{"dst":"10.244.0.0/16","gw":"10.244.1.1"}]}}`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseNetConf([]byte(tt.conf))
			if err != nil {
				t.Fatal(err)
			}
			before := jsonOf(t, n)
			d, err := DelegateConf(n, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := normalize(t, jsonOf(t, d)), normalize(t, tt.want); !reflect.DeepEqual(got, want) {
				t.Errorf("delegate config\n got %s\nwant %s", jsonOf(t, got), jsonOf(t, want))
			}
			if after := jsonOf(t, n); after != before {
				t.Errorf("DelegateConf changed its input:\n%s\n%s", before, after)
			}
		})
	}
}

func TestDelegateConfErrors(t *testing.T) {
	tests := []struct {
		name, conf, want string
		env              subnetfile.Env
	}{
		{"delegate type not a string", `{"name":"n","delegate":{"type":1}}`, `"delegate.type"`, envV4},
		{"routes not a list", `{"name":"n","ipam":{"routes":{"dst":"10.0.0.0/8"}}}`, `"ipam.routes"`, envV4},
		{"no subnet", `{"name":"n"}`, "FLANNEL_SUBNET", subnetfile.Env{MTU: 1450}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseNetConf([]byte(tt.conf))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DelegateConf(n, tt.env); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one mentioning %s", err, tt.want)
			}
		})
	}
}

func TestParseNetConf(t *testing.T) {
	n, err := ParseNetConf([]byte(`{"name":"cbr0","type":"flannel"}`))
	if err != nil {
		t.Fatal(err)
	}
	if n.DataDir != DefaultDataDir || n.SubnetFile != "" {
		t.Errorf("defaults: dataDir %q subnetFile %q", n.DataDir, n.SubnetFile)
	}
	if _, err := ParseNetConf([]byte(`{"type":"flannel"}`)); err == nil || !strings.Contains(err.Error(), `"name"`) {
		t.Errorf("missing name: error %v", err)
	}
	if _, err := ParseNetConf([]byte(`{`)); err == nil {
		t.Error("bad JSON accepted")
	}
}

func TestBridgeName(t *testing.T) {
	if got := bridgeName(map[string]any{}); got != "cni0" {
		t.Errorf("default bridge %q", got)
	}
	if got := bridgeName(map[string]any{"bridge": "br9"}); got != "br9" {
		t.Errorf("bridge %q", got)
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func normalize(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%v: %s", err, s)
	}
	return v
}

package netconf

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func vxlanDefaults() Backend {
	return Backend{Type: BackendVXLAN, VNI: 1, Port: 8472, Datapath: DatapathAuto}
}

// v4 is a Config with the given IPv4 fields, IPv4 enabled and default vxlan.
func v4(network string, subnetLen int, lo, hi string) Config {
	return Config{
		Network: netip.MustParsePrefix(network), SubnetLen: subnetLen,
		SubnetMin: netip.MustParseAddr(lo), SubnetMax: netip.MustParseAddr(hi),
		EnableIPv4: true, Backend: vxlanDefaults(),
	}
}

// setV6 enables IPv6 in c with the given IPv6 fields.
func setV6(c *Config, network string, subnetLen int, lo, hi string) {
	c.EnableIPv6 = true
	c.IPv6Network, c.IPv6SubnetLen = netip.MustParsePrefix(network), subnetLen
	c.IPv6SubnetMin, c.IPv6SubnetMax = netip.MustParseAddr(lo), netip.MustParseAddr(hi)
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		json string
		want func(c *Config)
		base Config
	}{
		{
			name: "flannel default manifest",
			json: `{"Network": "10.244.0.0/16", "EnableNFTables": false, "Backend": {"Type": "vxlan"}}`,
			base: v4("10.244.0.0/16", 24, "10.244.1.0", "10.244.255.0"),
		},
		{
			name: "no Backend defaults to vxlan",
			json: `{"Network": "10.244.0.0/16"}`,
			base: v4("10.244.0.0/16", 24, "10.244.1.0", "10.244.255.0"),
			want: func(c *Config) { c.DefaultedBackend = true },
		},
		{
			name: "Backend null counts as missing",
			json: `{"Network": "10.244.0.0/16", "Backend": null}`,
			base: v4("10.244.0.0/16", 24, "10.244.1.0", "10.244.255.0"),
			want: func(c *Config) { c.DefaultedBackend = true },
		},
		{
			name: "a /22 still gets /24 subnets",
			json: `{"Network": "10.0.0.0/22"}`,
			base: v4("10.0.0.0/22", 24, "10.0.1.0", "10.0.3.0"),
			want: func(c *Config) { c.DefaultedBackend = true },
		},
		{
			name: "narrower than /22 gets prefix+2",
			json: `{"Network": "10.0.0.0/23", "Backend": {"Type": "vxlan"}}`,
			base: v4("10.0.0.0/23", 25, "10.0.0.128", "10.0.1.128"),
		},
		{
			name: "smallest network /28 gets /30",
			json: `{"Network": "10.0.0.0/28", "Backend": {"Type": "vxlan"}}`,
			base: v4("10.0.0.0/28", 30, "10.0.0.4", "10.0.0.12"),
		},
		{
			name: "explicit SubnetLen and range",
			json: `{"Network": "10.0.0.0/8", "SubnetLen": 20, "SubnetMin": "10.10.0.0", "SubnetMax": "10.99.240.0", "Backend": {"Type": "vxlan"}}`,
			base: v4("10.0.0.0/8", 20, "10.10.0.0", "10.99.240.0"),
		},
		{
			name: "SubnetLen 30 is the limit",
			json: `{"Network": "10.0.0.0/16", "SubnetLen": 30, "Backend": {"Type": "vxlan"}}`,
			base: v4("10.0.0.0/16", 30, "10.0.0.4", "10.0.255.252"),
		},
		{
			name: "SubnetLen prefix+2 is the limit",
			json: `{"Network": "10.0.0.0/16", "SubnetLen": 18, "Backend": {"Type": "vxlan"}}`,
			base: v4("10.0.0.0/16", 18, "10.0.64.0", "10.0.192.0"),
		},
		{
			name: "unspecified SubnetMin and SubnetMax mean unset",
			json: `{"Network": "10.244.0.0/16", "SubnetMin": "0.0.0.0", "SubnetMax": "0.0.0.0", "Backend": {"Type": "vxlan"}}`,
			base: v4("10.244.0.0/16", 24, "10.244.1.0", "10.244.255.0"),
		},
		{
			name: "SubnetMin equal to SubnetMax",
			json: `{"Network": "10.244.0.0/16", "SubnetMin": "10.244.7.0", "SubnetMax": "10.244.7.0", "Backend": {"Type": "vxlan"}}`,
			base: v4("10.244.0.0/16", 24, "10.244.7.0", "10.244.7.0"),
		},
		{
			name: "host bits in Network are cleared like flannel",
			json: `{"Network": "10.244.9.0/16", "Backend": {"Type": "vxlan"}}`,
			base: v4("10.244.0.0/16", 24, "10.244.1.0", "10.244.255.0"),
		},
		{
			name: "keys match case-insensitively like encoding/json",
			json: `{"network": "10.244.0.0/16", "subnetlen": 25, "backend": {"type": "vxlan", "vni": 7}}`,
			base: v4("10.244.0.0/16", 25, "10.244.0.128", "10.244.255.128"),
			want: func(c *Config) { c.Backend.VNI = 7 },
		},
		{
			name: "all vxlan options",
			json: `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VNI": 4096, "Port": 4789, "GBP": true, "DirectRouting": true, "Learning": true, "MTU": 1400, "Datapath": "kernel"}}`,
			base: v4("10.244.0.0/16", 24, "10.244.1.0", "10.244.255.0"),
			want: func(c *Config) {
				c.Backend = Backend{Type: BackendVXLAN, VNI: 4096, Port: 4789, GBP: true, DirectRouting: true,
					Learning: true, MTU: 1400, Datapath: DatapathKernel}
			},
		},
		{
			name: "vxlan VNI 0 and Port 0",
			json: `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VNI": 0, "Port": 0}}`,
			base: v4("10.244.0.0/16", 24, "10.244.1.0", "10.244.255.0"),
			want: func(c *Config) { c.Backend.VNI = 0 },
		},
		{
			name: "host-gw with ebpf datapath",
			json: `{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw", "Datapath": "ebpf"}}`,
			base: v4("10.244.0.0/16", 24, "10.244.1.0", "10.244.255.0"),
			want: func(c *Config) { c.Backend = Backend{Type: BackendHostGW, Datapath: DatapathEBPF} },
		},
		{
			name: "udp defaults to flannel's port",
			json: `{"Network": "10.244.0.0/16", "Backend": {"Type": "udp"}}`,
			base: v4("10.244.0.0/16", 24, "10.244.1.0", "10.244.255.0"),
			want: func(c *Config) { c.Backend = Backend{Type: BackendUDP, Port: 8285, Datapath: DatapathAuto} },
		},
		{
			name: "udp port",
			json: `{"Network": "10.244.0.0/16", "Backend": {"Type": "udp", "Port": 9000, "VNI": 3}}`,
			base: v4("10.244.0.0/16", 24, "10.244.1.0", "10.244.255.0"),
			want: func(c *Config) {
				c.Backend = Backend{Type: BackendUDP, Port: 9000, Datapath: DatapathAuto}
				c.Ignored = []string{"Backend.VNI"}
			},
		},
		{
			name: "wireguard defaults",
			json: `{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard"}}`,
			base: v4("10.244.0.0/16", 24, "10.244.1.0", "10.244.255.0"),
			want: func(c *Config) {
				c.Backend = Backend{Type: BackendWireGuard, Port: 51820, ListenPortV6: 51821, WireGuardMode: "separate", Datapath: DatapathAuto}
			},
		},
		{
			name: "wireguard options",
			json: `{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard", "PSK": "WeftWeftWeftWeftWeftWeftWeftWeftWeftWeft4Ac=", "ListenPort": 5000, "ListenPortV6": 5001, "MTU": 1380, "PersistentKeepaliveInterval": 25, "Mode": "auto"}}`,
			base: v4("10.244.0.0/16", 24, "10.244.1.0", "10.244.255.0"),
			want: func(c *Config) {
				c.Backend = Backend{Type: BackendWireGuard, Port: 5000, ListenPortV6: 5001, MTU: 1380, PSK: "WeftWeftWeftWeftWeftWeftWeftWeftWeftWeft4Ac=",
					Keepalive: 25 * time.Second, WireGuardMode: "auto", Datapath: DatapathAuto}
			},
		},
		{
			name: "unknown keys and other backends' options are ignored and listed",
			json: `{"Network": "10.244.0.0/16", "Networks": ["10.0.0.0/8"], "Foo": 1, "Backend": {"Type": "host-gw", "VNI": 2, "Datapath": "auto"}}`,
			base: v4("10.244.0.0/16", 24, "10.244.1.0", "10.244.255.0"),
			want: func(c *Config) {
				c.Backend = Backend{Type: BackendHostGW, Datapath: DatapathAuto}
				c.Ignored = []string{"Foo", "Networks", "Backend.VNI"}
			},
		},
		{
			name: "IPv6 keys are read but not used while EnableIPv6 is false",
			json: `{"Network": "10.244.0.0/16", "EnableIPv6": false, "IPv6Network": "fd00::/56", "IPv6SubnetLen": 64, "EnableNFTables": true, "Backend": {"Type": "vxlan"}}`,
			base: v4("10.244.0.0/16", 24, "10.244.1.0", "10.244.255.0"),
			want: func(c *Config) { c.EnableNFTables = true },
		},
		{
			name: "flannel's dual-stack config (FLANNEL-COMPAT)",
			json: `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd10:244::/56","Backend":{"Type":"vxlan"}}`,
			base: v4("10.244.0.0/16", 24, "10.244.1.0", "10.244.255.0"),
			want: func(c *Config) {
				setV6(c, "fd10:244::/56", 64, "fd10:244:0:1::", "fd10:244:0:ff::")
			},
		},
		{
			name: "dual stack host-gw with explicit IPv6 range",
			json: `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd10:244::/48","IPv6SubnetLen":80,"IPv6SubnetMin":"fd10:244:0:5::","IPv6SubnetMax":"fd10:244:0:9::","Backend":{"Type":"host-gw"}}`,
			base: v4("10.244.0.0/16", 24, "10.244.1.0", "10.244.255.0"),
			want: func(c *Config) {
				setV6(c, "fd10:244::/48", 80, "fd10:244:0:5::", "fd10:244:0:9::")
				c.Backend = Backend{Type: BackendHostGW, Datapath: DatapathAuto}
			},
		},
		{
			name: "IPv6 only: Network may be absent",
			json: `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd10:244::/56","Backend":{"Type":"vxlan","DirectRouting":true}}`,
			want: func(c *Config) {
				setV6(c, "fd10:244::/56", 64, "fd10:244:0:1::", "fd10:244:0:ff::")
				c.Backend = vxlanDefaults()
				c.Backend.DirectRouting = true
			},
		},
		{
			name: "IPv6 only: IPv4 keys are read but not used",
			json: `{"EnableIPv4":false,"Network":"10.244.0.0/16","SubnetLen":99,"EnableIPv6":true,"IPv6Network":"fd10:244::/56"}`,
			want: func(c *Config) {
				setV6(c, "fd10:244::/56", 64, "fd10:244:0:1::", "fd10:244:0:ff::")
				c.Backend, c.DefaultedBackend = vxlanDefaults(), true
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.json))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := tt.base
			if tt.want != nil {
				tt.want(&want)
			}
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("Parse:\n got %+v\nwant %+v", *got, want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		json string
		want string // the whole error
	}{
		// JSON shape and types.
		{`{"Network": "10.244.0.0/16",}`, "net-conf.json: not valid JSON: invalid character '}' looking for beginning of object key string (line 1)"},
		{"{\n\"Network\": \"10.244.0.0/16\"\n\"Backend\": {}}", "net-conf.json: not valid JSON: invalid character '\"' after object key:value pair (line 3)"},
		{`[]`, `net-conf.json: must be a JSON object like {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`},
		{`null`, `net-conf.json: must be a JSON object, not null`},
		{`{"Network": 10}`, `net-conf.json: Network must be a string, not 10`},
		{`{"Network": "10.244.0.0"}`, `net-conf.json: Network must be an IPv4 CIDR like "10.244.0.0/16", not "10.244.0.0"`},
		{`{"Network": "fd00::/48"}`, `net-conf.json: Network must be an IPv4 CIDR like "10.244.0.0/16", not "fd00::/48"`},
		{`{"Network": "10.244.0.0/16", "SubnetLen": "24"}`, `net-conf.json: SubnetLen must be a whole number, not "24"`},
		{`{"Network": "10.244.0.0/16", "SubnetLen": 24.5}`, `net-conf.json: SubnetLen must be a whole number, not 24.5`},
		{`{"Network": "10.244.0.0/16", "SubnetMin": "10.244.1"}`, `net-conf.json: SubnetMin must be an IPv4 address like "10.244.1.0", not "10.244.1"`},
		{`{"Network": "10.244.0.0/16", "SubnetMax": "fd00::"}`, `net-conf.json: SubnetMax must be an IPv4 address like "10.244.1.0", not "fd00::"`},
		{`{"Network": "10.244.0.0/16", "EnableIPv4": "yes"}`, `net-conf.json: EnableIPv4 must be true or false, not "yes"`},
		{`{"Network": "10.244.0.0/16", "IPv6Network": "10.0.0.0/8"}`, `net-conf.json: IPv6Network must be an IPv6 CIDR like "fd00:10:244::/56", not "10.0.0.0/8"`},
		// IPv4 ranges.
		{`{}`, `net-conf.json: Network is missing: set it to the cluster's pod CIDR, e.g. "10.244.0.0/16"`},
		{`{"Network": ""}`, `net-conf.json: Network is missing: set it to the cluster's pod CIDR, e.g. "10.244.0.0/16"`},
		{`{"Network": "10.0.0.0/29"}`, `net-conf.json: Network 10.0.0.0/29 is too small: use a /28 or wider, it must hold at least four node subnets`},
		{`{"Network": "10.0.0.0/29", "SubnetLen": 30}`, `net-conf.json: Network 10.0.0.0/29 is too small: use a /28 or wider, it must hold at least four node subnets`},
		{`{"Network": "10.244.0.0/16", "SubnetLen": 31}`, `net-conf.json: SubnetLen 31 is too long: use 30 or less`},
		{`{"Network": "10.244.0.0/16", "SubnetLen": 17}`, `net-conf.json: SubnetLen 17 is too short for Network 10.244.0.0/16: use 18 or more, the Network must hold at least four node subnets`},
		{`{"Network": "10.244.0.0/16", "SubnetLen": -1}`, `net-conf.json: SubnetLen -1 is invalid: use a prefix length between 18 and 30`},
		{`{"Network": "10.244.0.0/16", "SubnetMin": "10.245.0.0"}`, `net-conf.json: SubnetMin 10.245.0.0 is outside Network 10.244.0.0/16: use an address inside it or remove SubnetMin`},
		{`{"Network": "10.244.0.0/16", "SubnetMax": "10.0.0.0"}`, `net-conf.json: SubnetMax 10.0.0.0 is outside Network 10.244.0.0/16: use an address inside it or remove SubnetMax`},
		{`{"Network": "10.244.0.0/16", "SubnetMin": "10.244.1.5"}`, `net-conf.json: SubnetMin 10.244.1.5 is not the start of a /24 subnet: use 10.244.1.0`},
		{`{"Network": "10.244.0.0/16", "SubnetLen": 26, "SubnetMax": "10.244.255.160"}`, `net-conf.json: SubnetMax 10.244.255.160 is not the start of a /26 subnet: use 10.244.255.128`},
		{`{"Network": "10.244.0.0/16", "SubnetMin": "10.244.9.0", "SubnetMax": "10.244.8.0"}`, `net-conf.json: SubnetMin 10.244.9.0 is above SubnetMax 10.244.8.0: swap them`},
		// Families.
		{`{"Network": "10.244.0.0/16", "EnableIPv6": true}`, `net-conf.json: IPv6Network is missing: set it to the cluster's pod CIDR, e.g. "fd00:10:244::/56"`},
		{`{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00::/125"}`, `net-conf.json: IPv6Network fd00::/125 is too small: use a /124 or wider, it must hold at least four node subnets`},
		{`{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00::/56", "IPv6SubnetLen": 127}`, `net-conf.json: IPv6SubnetLen 127 is too long: use 126 or less`},
		{`{"EnableIPv4": false}`, `net-conf.json: EnableIPv4 and EnableIPv6 are both false: enable at least one address family`},
		{`{"EnableIPv4": false, "EnableIPv6": false, "Network": "10.244.0.0/16"}`, `net-conf.json: EnableIPv4 and EnableIPv6 are both false: enable at least one address family`},
		{`{"EnableIPv4": false, "EnableIPv6": true}`, `net-conf.json: IPv6Network is missing: set it to the cluster's pod CIDR, e.g. "fd00:10:244::/56"`},
		{`{"EnableIPv6": true, "IPv6Network": "fd00::/56"}`, `net-conf.json: Network is missing: set it to the cluster's pod CIDR, e.g. "10.244.0.0/16"`},
		{`{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00::/56", "IPv6SubnetMin": "fd00:0:0:1::1"}`, `net-conf.json: IPv6SubnetMin fd00:0:0:1::1 is not the start of a /64 subnet: use fd00:0:0:1::`},
		{`{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00::/56", "IPv6SubnetMax": "fd01::"}`, `net-conf.json: IPv6SubnetMax fd01:: is outside IPv6Network fd00::/56: use an address inside it or remove IPv6SubnetMax`},
		{`{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00::/56", "Backend": {"Type": "udp"}}`, `net-conf.json: EnableIPv6 is true but Backend.Type is "udp": weft supports IPv6 with "vxlan" and "host-gw"`},
		{`{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00::/56", "Backend": {"Type": "wireguard"}}`, `net-conf.json: EnableIPv6 is true but Backend.Type is "wireguard": weft supports IPv6 with "vxlan" and "host-gw"`},
		{`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/56", "Backend": {"Type": "wireguard", "Mode": "ipv6"}}`, `net-conf.json: Backend.Mode "ipv6" carries pod traffic over IPv6, which weft's wireguard backend does not support: use "separate", "auto" or "ipv4"`},
		// Backend.
		{`{"Network": "10.244.0.0/16", "Backend": "vxlan"}`, `net-conf.json: Backend must be an object like {"Type": "vxlan"}`},
		{`{"Network": "10.244.0.0/16", "Backend": {}}`, `net-conf.json: Backend.Type is missing: set it to "vxlan", "host-gw", "udp" or "wireguard"`},
		{`{"Network": "10.244.0.0/16", "Backend": {"Type": 1}}`, `net-conf.json: Backend.Type must be a string, not 1`},
		{`{"Network": "10.244.0.0/16", "Backend": {"Type": "ipip"}}`, `net-conf.json: Backend.Type "ipip" is not supported by weft: use "vxlan", "host-gw", "udp" or "wireguard"`},
		{`{"Network": "10.244.0.0/16", "Backend": {"Type": "aws-vpc"}}`, `net-conf.json: Backend.Type "aws-vpc" is not supported by weft: use "vxlan", "host-gw", "udp" or "wireguard"`},
		{`{"Network": "10.244.0.0/16", "Backend": {"Type": "udp", "Port": 70000}}`, `net-conf.json: Backend.Port 70000 is out of range: use 1 to 65535, or 0 for 8285`},
		{`{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard", "PSK": "x"}}`, "net-conf.json: Backend.PSK is not a wireguard key: use 32 bytes in base64 (`wg genpsk`), or remove it"},
		{`{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard", "ListenPort": -1}}`, `net-conf.json: Backend.ListenPort -1 is out of range: use 1 to 65535, or 0 for 51820`},
		{`{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard", "PersistentKeepaliveInterval": -5}}`, `net-conf.json: Backend.PersistentKeepaliveInterval -5 is out of range: use 0 (off) to 65535 seconds`},
		{`{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard", "Mode": "ipv6"}}`, `net-conf.json: Backend.Mode "ipv6" carries pod traffic over IPv6, which weft's wireguard backend does not support: use "separate", "auto" or "ipv4"`},
		{`{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard", "Mode": "both"}}`, `net-conf.json: Backend.Mode "both" is unknown: use "separate", "auto" or "ipv4"`},
		{`{"Network": "10.244.0.0/16", "Backend": {"Type": "VXLAN"}}`, `net-conf.json: Backend.Type "VXLAN" is unknown: use "vxlan", "host-gw", "udp" or "wireguard"`},
		{`{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VNI": 16777216}}`, `net-conf.json: Backend.VNI 16777216 is out of range: use 0 to 16777215 (flannel's default is 1)`},
		{`{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VNI": "1"}}`, `net-conf.json: Backend.VNI must be a whole number, not "1"`},
		{`{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "Port": 65536}}`, `net-conf.json: Backend.Port 65536 is out of range: use 1 to 65535, or 0 for 8472`},
		{`{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "MTU": 60}}`, `net-conf.json: Backend.MTU 60 is out of range: use 68 to 65535, or remove it for the uplink MTU - 50`},
		{`{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "DirectRouting": "true"}}`, `net-conf.json: Backend.DirectRouting must be true or false, not "true"`},
		{`{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "Datapath": "xdp"}}`, `net-conf.json: Backend.Datapath "xdp" is unknown: use "auto", "ebpf" or "kernel"`},
		{`{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "GBP": true, "Datapath": "ebpf"}}`, `net-conf.json: Backend.GBP needs the kernel datapath: set Backend.Datapath to "kernel" or remove GBP`},
	}
	for _, tt := range tests {
		t.Run(tt.json, func(t *testing.T) {
			c, err := Parse([]byte(tt.json))
			if err == nil {
				t.Fatalf("Parse = %+v, want error %q", c, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Parse error\n got %q\nwant %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

// TestIPv6Defaults checks flannel's IPv6 rules (/64 default, prefix+2 beyond
// /62, /124 minimum).
func TestIPv6Defaults(t *testing.T) {
	tests := []struct {
		in   subnets
		want subnets
	}{
		{
			subnets{Network: netip.MustParsePrefix("fd00::/48")},
			subnets{Network: netip.MustParsePrefix("fd00::/48"), SubnetLen: 64,
				SubnetMin: netip.MustParseAddr("fd00:0:0:1::"), SubnetMax: netip.MustParseAddr("fd00:0:0:ffff::")},
		},
		{
			subnets{Network: netip.MustParsePrefix("fd00::/62")},
			subnets{Network: netip.MustParsePrefix("fd00::/62"), SubnetLen: 64,
				SubnetMin: netip.MustParseAddr("fd00:0:0:1::"), SubnetMax: netip.MustParseAddr("fd00:0:0:3::")},
		},
		{
			subnets{Network: netip.MustParsePrefix("fd00::/63")},
			subnets{Network: netip.MustParsePrefix("fd00::/63"), SubnetLen: 65,
				SubnetMin: netip.MustParseAddr("fd00:0:0:0:8000::"), SubnetMax: netip.MustParseAddr("fd00:0:0:1:8000::")},
		},
		{
			subnets{Network: netip.MustParsePrefix("fd00::/124")},
			subnets{Network: netip.MustParsePrefix("fd00::/124"), SubnetLen: 126,
				SubnetMin: netip.MustParseAddr("fd00::4"), SubnetMax: netip.MustParseAddr("fd00::c")},
		},
	}
	for _, tt := range tests {
		got, err := ipv6.validate(tt.in)
		if err != nil {
			t.Errorf("validate(%v): %v", tt.in.Network, err)
			continue
		}
		if got != tt.want {
			t.Errorf("validate(%v) = %+v, want %+v", tt.in.Network, got, tt.want)
		}
	}
}

func TestParseFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(good, []byte(`{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(`{"Network": "10.244.0.0/16", "SubnetLen": 31}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := ParseFile(good)
	if err != nil {
		t.Fatalf("ParseFile: %v", err)
	}
	if c.Backend.Type != BackendHostGW || c.SubnetLen != 24 {
		t.Errorf("ParseFile = %+v", c)
	}
	if _, err := ParseFile(bad); err == nil || err.Error() != bad+": SubnetLen 31 is too long: use 30 or less" {
		t.Errorf("ParseFile(bad) error = %v", err)
	}
	if _, err := ParseFile(filepath.Join(dir, "missing.json")); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ParseFile(missing) error = %v, want not-exist", err)
	}
}

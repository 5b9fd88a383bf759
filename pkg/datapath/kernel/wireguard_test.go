package kernel

import (
	"net/netip"
	"testing"

	"github.com/weftnet/weft/pkg/datapath"
)

func TestNormalizeWireGuard(t *testing.T) {
	wg := datapath.Node{NodeIP: ip("192.168.0.1"), Uplink: "eth0", Network: network, Backend: datapath.ModeWireGuard,
		WireGuard: datapath.WireGuard{KeyFile: "/run/flannel/wgkey", PSK: "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="}}
	dual := wg
	dual.NodeIPv6, dual.IPv6Network = ip("fd00::1"), pfx("fd10:244::/56")
	v6only := dual
	v6only.NodeIP, v6only.Network = netip.Addr{}, netip.Prefix{}
	for name, node := range map[string]datapath.Node{"IPv4": wg, "dual stack": dual, "IPv6 only": v6only} {
		n, err := normalize(node)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n.Port != DefaultWireGuardPort || n.WireGuard.PortV6 != DefaultWireGuardPortV6 {
			t.Errorf("%s: normalize filled ports %d and %d, want %d and %d", name, n.Port, n.WireGuard.PortV6, DefaultWireGuardPort, DefaultWireGuardPortV6)
		}
	}
	bad := map[string]func(*datapath.Node){
		"no key file":          func(n *datapath.Node) { n.WireGuard.KeyFile = "" },
		"PSK not a key":        func(n *datapath.Node) { n.WireGuard.PSK = "secret" },
		"port out of range":    func(n *datapath.Node) { n.Port = 70000 },
		"v6 port out of range": func(n *datapath.Node) { n.WireGuard.PortV6 = -1 },
		"one port for both":    func(n *datapath.Node) { n.Port, n.WireGuard.PortV6 = 5000, 5000 },
		"negative MTU":         func(n *datapath.Node) { n.MTU = -1 },
		"negative keepalive":   func(n *datapath.Node) { n.WireGuard.Keepalive = -1 },
	}
	for name, change := range bad {
		b := dual
		change(&b)
		if _, err := normalize(b); err == nil {
			t.Errorf("%s: normalize accepted %+v", name, b)
		}
	}
}

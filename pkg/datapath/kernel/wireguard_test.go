package kernel

import (
	"testing"

	"github.com/weftnet/weft/pkg/datapath"
)

func TestNormalizeWireGuard(t *testing.T) {
	wg := datapath.Node{NodeIP: ip("192.168.0.1"), Uplink: "eth0", Network: network, Backend: datapath.ModeWireGuard,
		WireGuard: datapath.WireGuard{KeyFile: "/run/flannel/wgkey", PSK: "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="}}
	n, err := normalize(wg)
	if err != nil {
		t.Fatal(err)
	}
	if n.Port != DefaultWireGuardPort {
		t.Errorf("normalize filled port %d, want %d", n.Port, DefaultWireGuardPort)
	}
	bad := map[string]func(*datapath.Node){
		"no key file":        func(n *datapath.Node) { n.WireGuard.KeyFile = "" },
		"PSK not a key":      func(n *datapath.Node) { n.WireGuard.PSK = "secret" },
		"port out of range":  func(n *datapath.Node) { n.Port = 70000 },
		"negative MTU":       func(n *datapath.Node) { n.MTU = -1 },
		"negative keepalive": func(n *datapath.Node) { n.WireGuard.Keepalive = -1 },
	}
	for name, change := range bad {
		b := wg
		change(&b)
		if _, err := normalize(b); err == nil {
			t.Errorf("%s: normalize accepted %+v", name, b)
		}
	}
}

package cni

import (
	"testing"

	"github.com/containernetworking/cni/pkg/types/create"

	"github.com/weftnet/weft/pkg/subnetfile"
)

// TestAfterAddWithoutPins: a subnet file without WEFT_BPF_DIR (the kernel
// datapath), or one still naming a pin directory the ebpf datapath no
// longer has (weftd switching to the kernel datapath), costs the pod at
// most the fast path, never its ADD. The host veth is "lo" so that the
// registration reaches the missing endpoints map.
func TestAfterAddWithoutPins(t *testing.T) {
	res, err := create.CreateFromBytes([]byte(`{"cniVersion":"1.0.0",
		"interfaces":[{"name":"cni0","mac":"aa:aa:aa:aa:aa:01"},{"name":"lo","mac":"aa:aa:aa:aa:aa:02"},
			{"name":"eth0","mac":"aa:aa:aa:aa:aa:03","sandbox":"/run/netns/pod"}],
		"ips":[{"address":"10.244.1.5/24","gateway":"10.244.1.1","interface":2}]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range []subnetfile.Env{{}, {BPFDir: t.TempDir()}} {
		if err := afterAdd(env, map[string]any{"bridge": "cni0"}, "eth0", res); err != nil {
			t.Errorf("ADD with WEFT_BPF_DIR=%q: %v", env.BPFDir, err)
		}
	}
}

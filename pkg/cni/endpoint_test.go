package cni

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/types/create"
)

// bridgeResult is what the bridge plugin returns: bridge, host veth, pod
// interface, in that order. Before 1.0.0 IPs carry a "version".
func bridgeResult(t *testing.T, cniVersion string) types.Result {
	t.Helper()
	v4, v6 := "", ""
	if strings.HasPrefix(cniVersion, "0.") {
		v4, v6 = `"version":"4",`, `"version":"6",`
	}
	res, err := create.CreateFromBytes(fmt.Appendf(nil, `{"cniVersion":%q,
		"interfaces":[{"name":"cni0","mac":"aa:aa:aa:aa:aa:01"},
			{"name":"veth1234","mac":"aa:aa:aa:aa:aa:02"},
			{"name":"eth0","mac":"aa:aa:aa:aa:aa:03","sandbox":"/run/netns/pod"}],
		"ips":[{%s"address":"10.244.1.5/24","gateway":"10.244.1.1","interface":2},
			{%s"address":"fd00::5/64","gateway":"fd00::1","interface":2}],
		"routes":[{"dst":"10.244.0.0/16","gw":"10.244.1.1"}]}`, cniVersion, v4, v6))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestEndpointFromResult(t *testing.T) {
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			ep, err := EndpointFromResult(bridgeResult(t, v), "eth0", "cni0")
			if err != nil {
				t.Fatal(err)
			}
			want := []netip.Addr{netip.MustParseAddr("10.244.1.5"), netip.MustParseAddr("fd00::5")}
			if !slices.Equal(ep.IPs, want) || ep.MAC.String() != "aa:aa:aa:aa:aa:03" || ep.HostIfName != "veth1234" {
				t.Errorf("got %+v", ep)
			}
		})
	}
}

func TestEndpointFromResultErrors(t *testing.T) {
	if _, err := EndpointFromResult(bridgeResult(t, "1.0.0"), "net1", "cni0"); err == nil ||
		!strings.Contains(err.Error(), "no pod interface net1") {
		t.Errorf("wrong ifName: %v", err)
	}
	noVeth, err := create.CreateFromBytes([]byte(`{"cniVersion":"1.0.0",
		"interfaces":[{"name":"cni0","mac":"aa:aa:aa:aa:aa:01"},{"name":"eth0","mac":"aa:aa:aa:aa:aa:03","sandbox":"/x"}],
		"ips":[{"address":"10.244.1.5/24","interface":1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := EndpointFromResult(noVeth, "eth0", "cni0"); err == nil || !strings.Contains(err.Error(), "no host veth") {
		t.Errorf("no veth: %v", err)
	}
	noIP, err := create.CreateFromBytes([]byte(`{"cniVersion":"1.0.0",
		"interfaces":[{"name":"veth1","mac":"aa:aa:aa:aa:aa:02"},{"name":"eth0","mac":"aa:aa:aa:aa:aa:03","sandbox":"/x"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := EndpointFromResult(noIP, "eth0", "cni0"); err == nil || !strings.Contains(err.Error(), "no address") {
		t.Errorf("no IP: %v", err)
	}
}

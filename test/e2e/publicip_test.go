package e2e

import (
	"net/netip"
	"testing"

	"github.com/weftnet/weft/test/cluster"
)

// TestPublicIP runs a node whose --public-ip is not its interface's address
// (a second address on its uplink): peers send to the public address, and
// its VXLAN leaves from the interface address, which its lease names as
// TunnelIP, so ebpf peers accept it. Pods talk both ways, the streams ride
// the fast path on both nodes, and no node drops anything as unknown_node.
func TestPublicIP(t *testing.T) {
	c := start(t, cluster.Options{NetConf: cluster.NetConf("vxlan", "ebpf", false), NoStart: true})
	n1 := c.Nodes[0]
	b := n1.IP.As4()
	b[3] += 100
	public := netip.AddrFrom4(b)
	for _, n := range c.Nodes {
		if n.IP == public {
			t.Fatalf("public address %s is node %s's", public, n.Name)
		}
	}
	if _, err := n1.Exec(t.Context(), "ip", "addr", "add", public.String()+"/32", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	// The other node reaches the public address over the underlay segment.
	if _, err := c.Nodes[1].Exec(t.Context(), "ip", "route", "add", public.String()+"/32", "via", n1.IP.String()); err != nil {
		t.Fatal(err)
	}
	n1.Args = append(n1.Args, "--public-ip", public.String())
	for _, n := range c.Nodes {
		if err := n.StartWeftd(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	pods := addPods(t, c, 1)
	requireDatapaths(t, c, "ebpf")
	checkMesh(t, c, pods)
	for _, n := range c.Nodes {
		expectCarried(t, n, "vxlan-ebpf")
		if v := metric(t, n, "weft_datapath_drops_total", `reason="unknown_node"`); v != 0 {
			t.Errorf("%s dropped %v packets as unknown_node: VXLAN from %s's interface address was not accepted", n.Name, v, n1.Name)
		}
	}
}

package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/weftnet/weft/test/cluster"
)

// backendCase is one backend configuration of net-conf.json.
type backendCase struct {
	name, backend string
	directRouting bool
	// segments puts nodes on underlay segments (DirectRouting needs a node
	// that is not an L2 neighbour).
	segments []int
}

var backendCases = []backendCase{
	{name: "vxlan", backend: "vxlan"},
	{name: "host-gw", backend: "host-gw"},
	{name: "vxlan-directrouting", backend: "vxlan", directRouting: true, segments: []int{0, 0, 1}},
	{name: "udp", backend: "udp"},
	{name: "wireguard", backend: "wireguard"},
}

// datapathCases are the datapath and backend pairs a feature is checked on
// where the whole matrix of TestBackends is not needed: both kernel
// backends and the ebpf datapath's vxlan.
var datapathCases = []struct{ datapath, backend string }{
	{"kernel", "vxlan"},
	{"ebpf", "vxlan"},
	{"kernel", "host-gw"},
}

// mode is how a node must carry traffic to a peer: DirectRouting is host-gw
// on the same segment and vxlan across the router.
func (bc backendCase) mode(a, b *cluster.Node) string {
	if bc.directRouting && a.Segment == b.Segment {
		return "host-gw"
	}
	return bc.backend
}

// TestBackends runs each backend on each datapath over three nodes: pods
// ping and carry TCP across every node pair, nodes reach remote pods.
func TestBackends(t *testing.T) {
	for _, dp := range []string{"kernel", "ebpf"} {
		for _, bc := range backendCases {
			t.Run(dp+"/"+bc.name, func(t *testing.T) {
				c := start(t, cluster.Options{Nodes: 3, Segments: bc.segments, NetConf: cluster.NetConf(bc.backend, dp, bc.directRouting)})
				pods := addPods(t, c, 1)
				requireDatapaths(t, c, dp)
				checkMesh(t, c, pods)
				for _, n := range c.Nodes {
					modes := map[string]bool{}
					for _, m := range c.Nodes {
						if m != n {
							modes[bc.mode(n, m)] = true
							if dp == "kernel" {
								checkKernelMode(t, n, m, bc.mode(n, m))
							}
						}
					}
					for mode := range modes {
						if label := carrierOf(dp, mode); label != "" {
							expectCarried(t, n, label)
						}
					}
				}
			})
		}
	}
}

// TestMixedDatapaths runs ebpf and kernel nodes in one vxlan cluster: the
// wire formats must match.
func TestMixedDatapaths(t *testing.T) {
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			c := start(t, cluster.Options{
				Nodes: 3, Segments: bc.segments,
				NetConf:   cluster.NetConf(bc.backend, "ebpf", bc.directRouting),
				Datapaths: []string{"", "kernel", ""},
			})
			pods := addPods(t, c, 1)
			requireDatapaths(t, c, "ebpf", "kernel", "ebpf")
			checkMesh(t, c, pods)
		})
	}
}

// TestEBPFAttach runs the ebpf datapath with each way of attaching its
// programs.
func TestEBPFAttach(t *testing.T) {
	for _, mode := range []string{"tcx", "tc"} {
		t.Run(mode, func(t *testing.T) {
			c := start(t, cluster.Options{
				NetConf:   cluster.NetConf("vxlan", "ebpf", false),
				WeftdArgs: []string{"--tc-attach", mode},
			})
			pods := addPods(t, c, 1)
			requireDatapaths(t, c, "ebpf")
			checkMesh(t, c, pods)
			for _, n := range c.Nodes {
				checkAttachMode(t, n, mode)
				expectCarried(t, n, "vxlan-ebpf")
			}
		})
	}
}

// carrierOf is the backend label of the weft_datapath_packets_total
// series that counts traffic of mode on datapath dp, "" when none does
// (kernel host-gw has no device of its own). The ebpf datapath leaves
// wireguard's encryption to the kernel path.
func carrierOf(dp, mode string) string {
	switch {
	case dp == "ebpf" && mode != "wireguard":
		return mode + "-ebpf"
	case mode == "host-gw":
		return ""
	}
	return mode + "-kernel"
}

// requireDatapaths requires that node i announces want[i] (the last one
// for the rest) in its subnet file.
func requireDatapaths(t *testing.T, c *cluster.Cluster, want ...string) {
	t.Helper()
	for i, n := range c.Nodes {
		w := want[min(i, len(want)-1)]
		got, err := n.Datapath()
		if err != nil || got != w {
			t.Fatalf("node %s runs datapath %q (%v), want %q", n.Name, got, err, w)
		}
	}
}

// checkKernelMode requires that node n routes m's subnet as mode does.
func checkKernelMode(t *testing.T, n, m *cluster.Node, mode string) {
	t.Helper()
	subnet, err := m.Subnet()
	if err != nil {
		t.Fatal(err)
	}
	h, err := n.NS.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := checkRouteMode(h, peer{subnet: subnet, publicIP: m.IP}, mode); err != nil {
		t.Error(fmt.Errorf("%s -> %s: %w", n.Name, m.Name, err))
	}
}

// checkAttachMode requires that the uplink's ingress program is attached as
// mode says. iproute2 lists cls_bpf filters (tc) but not tcx links, so tc
// must show a bpf filter on eth0 and tcx must not.
func checkAttachMode(t *testing.T, n *cluster.Node, mode string) {
	t.Helper()
	out, err := n.Exec(t.Context(), "tc", "filter", "show", "dev", "eth0", "ingress")
	hasFilter := err == nil && strings.Contains(out, "bpf")
	if hasFilter != (mode == "tc") {
		t.Errorf("%s: --tc-attach %s, but tc filter show dev eth0 ingress says (%v):\n%s", n.Name, mode, err, out)
	}
}

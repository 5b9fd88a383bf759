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
	// ipv6 marks a backend with IPv6 (vxlan, host-gw: flannel's; udp and
	// wireguard refuse EnableIPv6).
	ipv6 bool
}

var backendCases = []backendCase{
	{name: "vxlan", backend: "vxlan", ipv6: true},
	{name: "host-gw", backend: "host-gw", ipv6: true},
	{name: "vxlan-directrouting", backend: "vxlan", directRouting: true, segments: []int{0, 0, 1}, ipv6: true},
	{name: "udp", backend: "udp"},
	{name: "wireguard", backend: "wireguard"},
}

// stacks are the pod network stacks the case runs with: IPv4 only, and
// dual stack and IPv6 only where the backend has IPv6.
func (bc backendCase) stacks() []cluster.Stack {
	if bc.ipv6 {
		return cluster.Stacks
	}
	return []cluster.Stack{cluster.IPv4Only}
}

// stackName is name with the stack appended unless it is IPv4Only, so the
// IPv4 cases keep their names ("vxlan", "vxlan/dual", "vxlan/ipv6").
func stackName(name string, s cluster.Stack) string {
	if s == cluster.IPv4Only {
		return name
	}
	return name + "/" + s.String()
}

// netConf is the case's net-conf.json for stack on datapath dp.
func (bc backendCase) netConf(stack cluster.Stack, dp string) string {
	return cluster.StackNetConf(stack, bc.backend, dp, bc.directRouting)
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

// TestBackends runs each backend on each datapath over three nodes, with
// each stack the backend has (IPv4 only; dual stack and IPv6 only for
// vxlan, host-gw and DirectRouting): pods ping and carry TCP across every
// node pair on every address family, nodes reach remote pods, the kernel
// datapath routes every peer of every family as the mode says, and on the
// ebpf datapath every pod is recorded and registered on its node.
func TestBackends(t *testing.T) {
	for _, dp := range []string{"kernel", "ebpf"} {
		for _, bc := range backendCases {
			for _, stack := range bc.stacks() {
				t.Run(stackName(dp+"/"+bc.name, stack), func(t *testing.T) {
					c := start(t, cluster.Options{Nodes: 3, Segments: bc.segments, NetConf: bc.netConf(stack, dp)})
					pods := addPods(t, c, 1)
					requireDatapaths(t, c, dp)
					if dp == "ebpf" {
						for _, p := range pods {
							checkRegistered(t, p.Node, p)
						}
					}
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
							for _, f := range stack.Families() {
								if label := carrierOf(dp, mode, f); label != "" {
									expectCarried(t, n, label)
								}
							}
						}
					}
				})
			}
		}
	}
}

// TestMixedDatapaths runs ebpf and kernel nodes in one cluster, with each
// stack the backend has: the wire formats must match, for IPv6 too.
func TestMixedDatapaths(t *testing.T) {
	for _, bc := range backendCases {
		for _, stack := range bc.stacks() {
			t.Run(stackName(bc.name, stack), func(t *testing.T) {
				c := start(t, cluster.Options{
					Nodes: 3, Segments: bc.segments,
					NetConf:   bc.netConf(stack, "ebpf"),
					Datapaths: []string{"", "kernel", ""},
				})
				pods := addPods(t, c, 1)
				requireDatapaths(t, c, "ebpf", "kernel", "ebpf")
				checkMesh(t, c, pods)
			})
		}
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
// series that counts traffic of family f of mode on datapath dp, "" when
// none does (kernel host-gw has no device of its own). The ebpf datapath
// leaves wireguard's encryption to the kernel path and counts IPv6 apart;
// the kernel path's vxlan-kernel counts flannel.1 and flannel-v6.1
// together.
func carrierOf(dp, mode string, f cluster.Family) string {
	switch {
	case dp == "ebpf" && mode != "wireguard":
		return cluster.EBPFCarrier(mode, f)
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

// checkKernelMode requires that node n routes m's subnet of every family
// of the cluster as mode does.
func checkKernelMode(t *testing.T, n, m *cluster.Node, mode string) {
	t.Helper()
	subnets, err := m.Subnets()
	if err != nil {
		t.Fatal(err)
	}
	h, err := n.NS.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, subnet := range subnets {
		p := peer{subnet: subnet, publicIP: m.IPOf(cluster.FamilyOf(subnet.Addr()))}
		if err := checkRouteMode(h, p, mode); err != nil {
			t.Error(fmt.Errorf("%s -> %s: %w", n.Name, m.Name, err))
		}
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

package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/datapath/ebpf"
	"github.com/weftnet/weft/pkg/endpoint"
	"github.com/weftnet/weft/pkg/lease"
	"github.com/weftnet/weft/test/cluster"
)

// TestDatapathSwitch switches node n1 of a vxlan cluster from the ebpf
// datapath to the kernel one and back by restarting weftd with --datapath
// (WEFTD_DATAPATH), for each way of attaching programs. After every step
// pods ping and carry TCP both ways across all running nodes, and every
// node's kernel state is flannel's for its peers and nothing more. On
// kernel, n1 has no weft program, link, tc filter or pin left, says why in
// its log, publishes no WEFT_BPF_DIR, and the CNI plugin deletes and adds
// pods; n3, which joins then, reaches n1's pods and is reached by them.
// Back on ebpf, the ebpf datapath carries n1's traffic.
func TestDatapathSwitch(t *testing.T) {
	for _, mode := range []string{"tcx", "tc"} {
		t.Run(mode, func(t *testing.T) {
			c := start(t, cluster.Options{
				Nodes: 3, NetConf: cluster.NetConf("vxlan", "ebpf", false),
				WeftdArgs: []string{"--tc-attach", mode}, NoStart: true,
			})
			ctx := t.Context()
			n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
			running := []*cluster.Node{n1, n2}
			for _, n := range running {
				if err := n.StartWeftd(ctx); err != nil {
					t.Fatal(err)
				}
			}
			pods := []*cluster.Pod{servingPod(t, n1), servingPod(t, n2)}
			checkStep(t, c, running, pods, n1, "ebpf")
			if len(weftAttachments(t, n1)) == 0 {
				t.Fatal("on ebpf, ReadNamespaceAttachments finds no weft program on n1: the checks below would prove nothing")
			}

			switchDatapath(t, n1, "kernel")
			checkStep(t, c, running, pods, n1, "kernel")
			checkNoEBPF(t, n1)
			checkSwitchLogged(t, n1, mode)
			if err := pods[0].Delete(ctx); err != nil { // added on ebpf, deleted on kernel
				t.Fatalf("CNI DEL on kernel: %v", err)
			}
			pods[0] = servingPod(t, n1)
			if err := n3.StartWeftd(ctx); err != nil {
				t.Fatal(err)
			}
			running = append(running, n3)
			pods = append(pods, servingPod(t, n3))
			checkStep(t, c, running, pods, n1, "kernel")
			checkNoEBPF(t, n1)

			switchDatapath(t, n1, "ebpf")
			pods = append(pods, servingPod(t, n1))
			checkRegistered(t, n1, pods[len(pods)-1])
			checkStep(t, c, running, pods, n1, "ebpf")
			checkAttachMode(t, n1, mode)
			expectCarried(t, n1, "vxlan-ebpf")
		})
	}
}

// servingPod adds a pod to n that serves echo until the test ends.
func servingPod(t *testing.T, n *cluster.Node) *cluster.Pod {
	t.Helper()
	p, err := n.AddPod(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, []*cluster.Pod{p})
	return p
}

// switchDatapath restarts n's weftd with --datapath dp and waits until it
// is ready.
func switchDatapath(t *testing.T, n *cluster.Node, dp string) {
	t.Helper()
	n.Env = []string{"WEFTD_DATAPATH=" + dp}
	if err := n.RestartWeftd(t.Context(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := n.WaitReady(t.Context(), subnetTimeout); err != nil {
		t.Fatal(err)
	}
}

// checkStep requires that n announces datapath dp, that every running node
// converges to flannel's kernel state for its peers with no stray entries,
// and that pods and nodes reach each other.
func checkStep(t *testing.T, c *cluster.Cluster, running []*cluster.Node, pods []*cluster.Pod, n *cluster.Node, dp string) {
	t.Helper()
	if got, err := n.Datapath(); err != nil || got != dp {
		t.Fatalf("%s announces datapath %q (%v), want %q", n.Name, got, err, dp)
	}
	waitVXLANConverged(t, c, running...)
	leases, err := c.Etcd.Leases(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range running {
		if err := checkNoStrayState(m, leases); err != nil {
			t.Errorf("%s on %s: %v", m.Name, dp, err)
		}
	}
	checkTraffic(t, running, pods)
}

// checkNoStrayState requires that n's routes into the pod network, and
// flannel.1's neighbours and fdb entries, are only those for its own
// subnet and its peers (checkVXLANNode checked that those are right).
func checkNoStrayState(n *cluster.Node, leases map[netip.Prefix]lease.Attrs) error {
	network := netip.MustParsePrefix(cluster.PodNetwork)
	return withPeers(n, leases, func(h *netlink.Handle, own netip.Prefix, peers []peer) error {
		want := []netip.Prefix{own}
		for _, p := range peers {
			want = append(want, p.subnet)
		}
		routes, err := h.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			return fmt.Errorf("list routes: %w", err)
		}
		for _, r := range routes {
			if r.Dst == nil {
				continue
			}
			dst, ok := netip.AddrFromSlice(r.Dst.IP)
			bits, _ := r.Dst.Mask.Size()
			if ok && network.Contains(dst.Unmap()) && !slices.Contains(want, netip.PrefixFrom(dst.Unmap(), bits)) {
				return fmt.Errorf("stray route %s", r)
			}
		}
		dev, err := h.LinkByName(vxlanDev)
		if err != nil {
			return fmt.Errorf("%s: %w", vxlanDev, err)
		}
		for _, family := range []int{netlink.FAMILY_V4, unix.AF_BRIDGE} {
			entries, err := h.NeighList(dev.Attrs().Index, family)
			if err != nil {
				return fmt.Errorf("neighbours of %s: %w", vxlanDev, err)
			}
			if len(entries) != len(peers) {
				return fmt.Errorf("%d entries of family %d on %s, want one per peer (%d): %v",
					len(entries), family, vxlanDev, len(peers), entries)
			}
		}
		return nil
	})
}

// weftAttachments reads every weft program attached in n's namespace.
func weftAttachments(t *testing.T, n *cluster.Node) []ebpf.Attachment {
	t.Helper()
	var found []ebpf.Attachment
	err := n.NS.Do(func() error {
		var err error
		found, err = ebpf.ReadNamespaceAttachments()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// checkNoEBPF requires that nothing of the ebpf datapath is left on n: no
// weft program on any interface, none by the pins in --bpf-dir, no pin.
func checkNoEBPF(t *testing.T, n *cluster.Node) {
	t.Helper()
	if found := weftAttachments(t, n); len(found) != 0 {
		t.Errorf("%s on kernel: weft programs attached: %v", n.Name, found)
	}
	var pinned []ebpf.Attachment
	err := n.NS.Do(func() error {
		var err error
		pinned, err = ebpf.ReadAttachments(n.BPFDir)
		return err
	})
	if err != nil || len(pinned) != 0 {
		t.Errorf("%s on kernel: attachments by pins %v (%v), want none", n.Name, pinned, err)
	}
	entries, err := os.ReadDir(n.BPFDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		// maps.debug and progs.debug are the kernel's (bpf_preload).
		if !strings.HasSuffix(e.Name(), ".debug") {
			t.Errorf("%s on kernel: pin %s left in %s", n.Name, e.Name(), n.BPFDir)
		}
	}
}

// checkSwitchLogged requires that n's current weftd logged why it runs the
// kernel datapath and what of the ebpf datapath (attached with mode) it
// removed.
func checkSwitchLogged(t *testing.T, n *cluster.Node, mode string) {
	t.Helper()
	log, err := n.Log()
	if err != nil {
		t.Fatal(err)
	}
	current := log[strings.LastIndex(log, "### harness"):]
	for _, want := range []string{
		`msg="datapath kernel" reason="configured by --datapath"`,
		`msg="eBPF datapath removed"`, "weft_uplink_ingress on eth0 ingress (" + mode + ")", "weft_config",
	} {
		if !strings.Contains(current, want) {
			t.Errorf("%s's weftd log after the switch lacks %q:\n%s", n.Name, want, current)
		}
	}
}

// checkRegistered requires that each of p's addresses is in the endpoints
// map of n's ebpf datapath and that the CNI plugin recorded p's endpoint in
// n's --endpoint-dir (found in WEFT_ENDPOINT_DIR) with these addresses.
func checkRegistered(t *testing.T, n *cluster.Node, p *cluster.Pod) {
	t.Helper()
	eps, err := ebpf.ReadEndpoints(n.BPFDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ip := range p.Addrs() {
		if !slices.ContainsFunc(eps, func(ep ebpf.Endpoint) bool { return ep.IP == ip }) {
			t.Errorf("%s: %s not registered with %s's ebpf datapath: %v", describe(p), ip, n.Name, eps)
		}
	}
	records, err := endpoint.Store{Dir: n.EndpointDir}.List()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(records, func(r endpoint.Record) bool {
		return r.ContainerID != "" && r.IfName == "eth0" && slices.Equal(r.IPs, p.Addrs())
	}) {
		t.Errorf("%s: no endpoint record in %s: %+v", describe(p), n.EndpointDir, records)
	}
}

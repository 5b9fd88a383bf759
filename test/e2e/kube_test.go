package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/pkg/datapath/ebpf"
	"github.com/weftnet/weft/pkg/lease"
	"github.com/weftnet/weft/pkg/lease/kube"
	"github.com/weftnet/weft/test/cluster"
)

// TestKube runs the namespace cluster in kube mode: kube-apiserver in the
// infra namespace, one Node object per node, weftd with --kube-subnet-mgr as
// deploy/weft.yaml's ServiceAccount, talking to the API server over the
// underlay. Per datapath and backend, IPv4 only and dual stack (podCIDRs of
// both families, IPv6 first on every second node): every Node carries
// flannel's annotations and NetworkUnavailable=False, subnet.env matches the
// podCIDRs, pods ping and carry TCP across nodes on every family, and
// deleting a Node removes it from the other nodes.
func TestKube(t *testing.T) {
	for _, tc := range datapathCases {
		for _, stack := range []cluster.Stack{cluster.IPv4Only, cluster.DualStack} {
			t.Run(stackName(tc.datapath+"/"+tc.backend, stack), func(t *testing.T) {
				c := start(t, cluster.Options{Nodes: 3, Kube: true, NetConf: cluster.StackNetConf(stack, tc.backend, tc.datapath, false)})
				pods := addPods(t, c, 1)
				requireDatapaths(t, c, tc.datapath)
				waitKubeNodes(t, c, tc.backend)
				checkMesh(t, c, pods)
				checkNodeDelete(t, c, pods, tc.datapath)
			})
		}
	}
}

// waitKubeNodes waits until every node's Node object and kernel state are
// what flannel's would be: the annotations, NetworkUnavailable=False, the
// podCIDRs in subnet.env, and a route (vxlan: with neighbour and fdb entry)
// for every other Node's lease of every family.
func waitKubeNodes(t *testing.T, c *cluster.Cluster, backend string) {
	t.Helper()
	ctx := t.Context()
	err := cluster.Eventually(ctx, convergeTimeout, "Node objects and kernel state", func() error {
		objs, err := c.KubeNodes(ctx)
		if err != nil {
			return err
		}
		leases, err := c.KubeLeases(ctx)
		if err != nil {
			return err
		}
		if len(objs) != len(c.Nodes) || len(leases) != len(c.Nodes)*len(c.Stack().Families()) {
			return fmt.Errorf("%d Nodes publish %d lease entries, want %d Nodes with one per family", len(objs), len(leases), len(c.Nodes))
		}
		var errs []error
		for _, n := range c.Nodes {
			i := slices.IndexFunc(objs, func(o corev1.Node) bool { return o.Name == n.Name })
			if i < 0 {
				return fmt.Errorf("no Node %s", n.Name)
			}
			errs = append(errs, checkKubeNode(n, c.Stack(), objs[i], backend), checkPeerRoutes(n, leases, backend))
		}
		return errors.Join(errs...)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// kubeAnnotations are the Node annotations of each family's public
// address and backend data.
var kubeAnnotations = map[cluster.Family][2]string{cluster.IPv4: {"public-ip", "backend-data"}, cluster.IPv6: {"public-ipv6", "backend-v6-data"}}

// checkKubeNode checks what node n publishes on its Node object obj and
// what its subnet file says, for each family of stack.
func checkKubeNode(n *cluster.Node, stack cluster.Stack, obj corev1.Node, backend string) error {
	subnets, err := n.Subnets()
	if err != nil {
		return err
	}
	var got []string
	for _, s := range subnets {
		got = append(got, s.String())
	}
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(obj.Spec.PodCIDRs))) {
		return fmt.Errorf("%s: subnet file has %v, Node podCIDRs are %v", n.Name, got, obj.Spec.PodCIDRs)
	}
	env, err := n.SubnetEnv()
	if err != nil {
		return err
	}
	mtu := podMTU(backend, stack)
	network := ""
	if stack.Has(cluster.IPv4) {
		network = cluster.PodNetwork
	}
	if env["FLANNEL_NETWORK"] != network || env["FLANNEL_MTU"] != fmt.Sprint(mtu) || env["FLANNEL_IPMASQ"] != "true" {
		return fmt.Errorf("%s: subnet file %v, want FLANNEL_NETWORK=%s FLANNEL_MTU=%d FLANNEL_IPMASQ=true", n.Name, env, network, mtu)
	}

	ann := func(key string) string { return obj.Annotations[cluster.KubeAnnotationPrefix+key] }
	if ann("kube-subnet-manager") != "true" || ann("backend-type") != backend {
		return fmt.Errorf("Node %s annotations %v, want kube-subnet-manager true, backend-type %s", n.Name, obj.Annotations, backend)
	}
	for _, subnet := range subnets {
		f := cluster.FamilyOf(subnet.Addr())
		keys := kubeAnnotations[f]
		if ann(keys[0]) != n.IPOf(f).String() {
			return fmt.Errorf("Node %s annotation %s %q, want %s", n.Name, keys[0], ann(keys[0]), n.IPOf(f))
		}
		if err := checkBackendData(n, subnet, ann(keys[1]), backend); err != nil {
			return fmt.Errorf("Node %s annotation %s: %w", n.Name, keys[1], err)
		}
	}

	for _, cond := range obj.Status.Conditions {
		if cond.Type == corev1.NodeNetworkUnavailable {
			if cond.Status != corev1.ConditionFalse || cond.Reason != kube.ConditionReason {
				return fmt.Errorf("Node %s: NetworkUnavailable=%s (%s), want False (%s)", n.Name, cond.Status, cond.Reason, kube.ConditionReason)
			}
			return nil
		}
	}
	return fmt.Errorf("Node %s has no NetworkUnavailable condition", n.Name)
}

// checkBackendData checks the backend-data (or backend-v6-data, for an
// IPv6 subnet) annotation: flannel's vxlan BackendData with the MAC of
// node n's flannel.1 (flannel-v6.1), or null for host-gw.
func checkBackendData(n *cluster.Node, subnet netip.Prefix, data, backend string) error {
	if backend != "vxlan" {
		if data != "null" {
			return fmt.Errorf("%q, want null", data)
		}
		return nil
	}
	var d lease.VXLANData
	if err := json.Unmarshal([]byte(data), &d); err != nil {
		return fmt.Errorf("%q: %w", data, err)
	}
	h, err := n.NS.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	dev, err := vxlanDevice(h, subnet)
	if err != nil {
		return err
	}
	if d.VNI != vxlanVNI || d.VtepMAC != dev.HardwareAddr.String() {
		return fmt.Errorf("%q, want VNI %d and VtepMAC %s (%s)", data, vxlanVNI, dev.HardwareAddr, dev.Name)
	}
	return nil
}

// checkPeerRoutes checks node n's kernel state for every other lease:
// flannel.1's route, neighbour and fdb entry (vxlan) or the route via the
// peer's public IP on eth0 (host-gw).
func checkPeerRoutes(n *cluster.Node, leases map[netip.Prefix]lease.Attrs, backend string) error {
	if backend == "vxlan" {
		return checkVXLANNode(n, leases)
	}
	return withPeers(n, leases, func(h *netlink.Handle, _ netip.Prefix, peers []peer) error {
		for _, p := range peers {
			if err := checkRouteMode(h, p, backend); err != nil {
				return fmt.Errorf("%s: %w", n.Name, err)
			}
		}
		return nil
	})
}

// checkNodeDelete stops the last node's weftd and deletes its Node object,
// as when a node leaves the cluster: the other nodes must drop its route
// of every family (vxlan: and neighbour and fdb entry; ebpf: and its
// weft_peers entry), and their pods must still reach each other.
func checkNodeDelete(t *testing.T, c *cluster.Cluster, pods []*cluster.Pod, datapath string) {
	t.Helper()
	ctx := t.Context()
	leaver, stay := c.Nodes[len(c.Nodes)-1], c.Nodes[:len(c.Nodes)-1]
	leases, err := c.KubeLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	subnets, err := leaver.Subnets()
	if err != nil {
		t.Fatal(err)
	}
	var gone []peer
	for _, subnet := range subnets {
		a, ok := leases[subnet]
		if !ok {
			t.Fatalf("Node %s publishes no lease of %s: %v", leaver.Name, subnet, leases)
		}
		p, err := peerOf(subnet, a)
		if err != nil {
			t.Fatal(err)
		}
		gone = append(gone, p)
		if datapath == "ebpf" {
			for _, n := range stay {
				if err := checkBPFPeer(n, subnet, true); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := leaver.StopWeftd(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := c.Kube.Admin(t).CoreV1().Nodes().Delete(ctx, leaver.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete Node %s: %v", leaver.Name, err)
	}
	for _, n := range stay {
		err := cluster.Eventually(ctx, convergeTimeout, n.Name+" forgets Node "+leaver.Name, func() error {
			var errs []error
			for _, p := range gone {
				errs = append(errs, checkPeerGone(n, p))
				if datapath == "ebpf" {
					errs = append(errs, checkBPFPeer(n, p.subnet, false))
				}
			}
			return errors.Join(errs...)
		})
		if err != nil {
			t.Error(err)
		}
	}
	for _, from := range pods {
		for _, to := range pods {
			if from.Node != to.Node && from.Node != leaver && to.Node != leaver {
				for _, addr := range to.Addrs() {
					requirePing(t, from.NS, fmt.Sprintf("ping %s -> %s %s after Node %s left", describe(from), to.ID, addr, leaver.Name), addr)
				}
			}
		}
	}
}

// checkPeerGone requires that node n has no route to p's subnet and, for a
// vxlan peer, no neighbour or fdb entry for it either.
func checkPeerGone(n *cluster.Node, p peer) error {
	if p.vtepMAC != nil {
		return checkVXLANPeerGone(n, p)
	}
	h, err := n.NS.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	routes, err := h.RouteListFiltered(p.family().Netlink(), &netlink.Route{Dst: prefixNet(p.subnet)}, netlink.RT_FILTER_DST)
	if err != nil {
		return fmt.Errorf("routes to %s on %s: %w", p.subnet, n.Name, err)
	}
	if len(routes) != 0 {
		return fmt.Errorf("%s still routes %s: %v", n.Name, p.subnet, routes)
	}
	return nil
}

// checkBPFPeer requires that subnet is (want) or is not in node n's pinned
// peers map.
func checkBPFPeer(n *cluster.Node, subnet netip.Prefix, want bool) error {
	peers, err := ebpf.ReadPeers(n.BPFDir)
	if err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	found := make([]netip.Prefix, 0, len(peers))
	for _, p := range peers {
		found = append(found, p.Subnet)
	}
	if slices.Contains(found, subnet) != want {
		return fmt.Errorf("%s: peers map holds %v; want %s in it: %v", n.Name, found, subnet, want)
	}
	return nil
}

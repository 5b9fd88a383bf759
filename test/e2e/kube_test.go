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
// underlay. Per datapath and backend: every Node carries flannel's
// annotations and NetworkUnavailable=False, subnet.env matches the podCIDR,
// pods ping and carry TCP across nodes, and deleting a Node removes it from
// the other nodes.
func TestKube(t *testing.T) {
	for _, tc := range datapathCases {
		t.Run(tc.datapath+"/"+tc.backend, func(t *testing.T) {
			c := start(t, cluster.Options{Nodes: 3, Kube: true, NetConf: cluster.NetConf(tc.backend, tc.datapath, false)})
			pods := addPods(t, c, 1)
			requireDatapaths(t, c, tc.datapath)
			waitKubeNodes(t, c, tc.backend)
			checkMesh(t, c, pods)
			checkNodeDelete(t, c, pods, tc.datapath)
		})
	}
}

// waitKubeNodes waits until every node's Node object and kernel state are
// what flannel's would be: the annotations, NetworkUnavailable=False, the
// podCIDR in subnet.env, and a route (vxlan: with neighbour and fdb entry)
// for every other Node's lease.
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
		if len(objs) != len(c.Nodes) || len(leases) != len(c.Nodes) {
			return fmt.Errorf("%d Nodes publish %d leases, want %d of each", len(objs), len(leases), len(c.Nodes))
		}
		var errs []error
		for _, n := range c.Nodes {
			i := slices.IndexFunc(objs, func(o corev1.Node) bool { return o.Name == n.Name })
			if i < 0 {
				return fmt.Errorf("no Node %s", n.Name)
			}
			errs = append(errs, checkKubeNode(n, objs[i], backend), checkPeerRoutes(n, leases, backend))
		}
		return errors.Join(errs...)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkKubeNode checks what node n publishes on its Node object obj and
// what its subnet file says.
func checkKubeNode(n *cluster.Node, obj corev1.Node, backend string) error {
	subnet, err := n.Subnet()
	if err != nil {
		return err
	}
	if subnet.String() != obj.Spec.PodCIDR {
		return fmt.Errorf("%s: subnet file has %s, Node podCIDR is %s", n.Name, subnet, obj.Spec.PodCIDR)
	}
	env, err := n.SubnetEnv()
	if err != nil {
		return err
	}
	mtu := 1500
	if backend == "vxlan" {
		mtu = vxlanMTU
	}
	if env["FLANNEL_NETWORK"] != cluster.PodNetwork || env["FLANNEL_MTU"] != fmt.Sprint(mtu) || env["FLANNEL_IPMASQ"] != "true" {
		return fmt.Errorf("%s: subnet file %v, want FLANNEL_NETWORK=%s FLANNEL_MTU=%d FLANNEL_IPMASQ=true", n.Name, env, cluster.PodNetwork, mtu)
	}

	ann := func(key string) string { return obj.Annotations[cluster.KubeAnnotationPrefix+key] }
	if ann("kube-subnet-manager") != "true" || ann("backend-type") != backend || ann("public-ip") != n.IP.String() {
		return fmt.Errorf("Node %s annotations %v, want kube-subnet-manager true, backend-type %s, public-ip %s",
			n.Name, obj.Annotations, backend, n.IP)
	}
	if err := checkBackendData(n, subnet, ann("backend-data"), backend); err != nil {
		return fmt.Errorf("Node %s annotation backend-data: %w", n.Name, err)
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

// checkBackendData checks the backend-data annotation: flannel's vxlan
// BackendData with node n's flannel.1 MAC, or null for host-gw.
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
		return fmt.Errorf("%q, want VNI %d and VtepMAC %s (%s)", data, vxlanVNI, dev.HardwareAddr, vxlanDev)
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
// (vxlan: and neighbour and fdb entry; ebpf: and its weft_peers entry), and
// their pods must still reach each other.
func checkNodeDelete(t *testing.T, c *cluster.Cluster, pods []*cluster.Pod, datapath string) {
	t.Helper()
	ctx := t.Context()
	leaver, stay := c.Nodes[len(c.Nodes)-1], c.Nodes[:len(c.Nodes)-1]
	leases, err := c.KubeLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	subnet, err := leaver.Subnet()
	if err != nil {
		t.Fatal(err)
	}
	a, ok := leases[subnet]
	if !ok {
		t.Fatalf("Node %s publishes no lease of %s: %v", leaver.Name, subnet, leases)
	}
	p, err := peerOf(subnet, a)
	if err != nil {
		t.Fatal(err)
	}
	if datapath == "ebpf" {
		for _, n := range stay {
			if err := checkBPFPeer(n, subnet, true); err != nil {
				t.Fatal(err)
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
			if err := checkPeerGone(n, p); err != nil {
				return err
			}
			if datapath == "ebpf" {
				return checkBPFPeer(n, subnet, false)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}
	for _, from := range pods {
		for _, to := range pods {
			if from.Node != to.Node && from.Node != leaver && to.Node != leaver {
				requirePing(t, from.NS, fmt.Sprintf("ping %s -> %s after Node %s left", describe(from), describe(to), leaver.Name), to.IP)
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
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: prefixNet(p.subnet)}, netlink.RT_FILTER_DST)
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

package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/weftnet/weft/pkg/lease"
	"github.com/weftnet/weft/test/kubetest"
)

// KubeAnnotationPrefix starts the Node annotations weftd publishes
// (flannel's, weftd's default --kube-annotation-prefix plus "/").
const KubeAnnotationPrefix = "flannel.alpha.coreos.com/"

// kubeTimeout bounds one request of the harness to the API server.
const kubeTimeout = 30 * time.Second

// kube is what kube mode keeps besides Cluster.Kube.
type kube struct {
	admin      kubernetes.Interface // cluster-admin, for the harness itself
	kubeconfig string               // weftd's: deploy/weft.yaml's ServiceAccount
}

// startKube runs etcd and kube-apiserver in the infra namespace on segment
// 0's router address, applies deploy/weft.yaml and mints weftd's kubeconfig
// for the manifest's ServiceAccount, so weftd has exactly its RBAC.
// kubetest stops both servers when the test ends, and ends the test if they
// do not start (Start's cleanup then closes the cluster).
func (c *Cluster) startKube() error {
	if c.t == nil {
		return errors.New("kube mode runs kube-apiserver from test/kubetest, which needs a test: build the cluster with cluster.Start")
	}
	c.Kube = kubetest.Start(c.t, kubetest.Options{BindAddress: routerIP(0).String(), NetNS: c.Infra.Name})
	// kubetest's namespace dialer ends its OS thread after each dial; were
	// that the thread that started a weftd, Pdeathsig would kill weftd.
	c.Kube.Dial = c.Infra.DialContext
	cfg := c.Kube.AdminConfig()
	cfg.QPS = -1 // no client-side rate limit: CreateSyntheticNodes creates thousands of Nodes
	admin, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kube admin client: %w", err)
	}
	c.kube = kube{admin: admin, kubeconfig: c.Kube.WeftKubeconfig(c.t)}
	c.log.Info("infra up", "ns", c.Infra.Name, "apiserver", c.Kube.URL)
	return nil
}

// PodCIDR is node i's (0-based) pod subnet of family f in kube mode, as
// kube-controller-manager would assign it: 10.244.<i+1>.0/24 or
// fd10:244:0:<i+1>::/64.
func PodCIDR(i int, f Family) netip.Prefix {
	if f == IPv6 {
		return netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0x10, 0x02, 0x44, 7: byte(i + 1)}), 64)
	}
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i + 1), 0}), 24)
}

// PodCIDRs are the spec.podCIDRs of node i in kube mode: PodCIDR of each
// of stack's families. In dual stack the IPv6 one comes first on every
// second node (i odd), as Kubernetes allows: weftd must read them in
// either order (flannel #1629 panicked on IPv6 first).
func PodCIDRs(i int, stack Stack) []netip.Prefix {
	var out []netip.Prefix
	for _, f := range stack.Families() {
		out = append(out, PodCIDR(i, f))
	}
	if stack == DualStack && i%2 == 1 {
		slices.Reverse(out)
	}
	return out
}

// registerNode registers node i as a kubelet would, with its PodCIDRs, and
// writes its net-conf.json (the ConfigMap mount in a real cluster).
func (c *Cluster) registerNode(ctx context.Context, n *Node, i int) error {
	if err := os.WriteFile(n.netConfPath(), []byte(c.opts.NetConf), 0o644); err != nil {
		return fmt.Errorf("node %s: write net-conf.json: %w", n.Name, err)
	}
	var cidrs []string
	for _, p := range PodCIDRs(i, c.Stack()) {
		cidrs = append(cidrs, p.String())
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name},
		Spec:       corev1.NodeSpec{PodCIDR: cidrs[0], PodCIDRs: cidrs},
	}
	return c.withNodes(ctx, func(ctx context.Context, nodes typedcorev1.NodeInterface) error {
		if _, err := nodes.Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("register Node %s: %w", n.Name, err)
		}
		return nil
	})
}

// withNodes calls f with the harness's cluster-admin client of Node
// objects and ctx bounded by kubeTimeout (kube mode only).
func (c *Cluster) withNodes(ctx context.Context, f func(context.Context, typedcorev1.NodeInterface) error) error {
	if c.Kube == nil {
		return errors.New("not a kube-mode cluster")
	}
	ctx, cancel := context.WithTimeout(ctx, kubeTimeout)
	defer cancel()
	return f(ctx, c.kube.admin.CoreV1().Nodes())
}

// netConfPath is weftd's --net-config-path in kube mode.
func (n *Node) netConfPath() string { return filepath.Join(n.Dir, "net-conf.json") }

// leaseArgs are weftd's flags for the cluster's lease source.
func (n *Node) leaseArgs() []string {
	if n.c.Kube == nil {
		return []string{"--etcd-endpoints", n.c.Etcd.Endpoint}
	}
	return []string{"--kube-subnet-mgr", "--kubeconfig-file", n.c.kube.kubeconfig, "--net-config-path", n.netConfPath()}
}

// leaseEnv is weftd's environment for the cluster's lease source: in kube
// mode NODE_NAME, as the DaemonSet sets it from spec.nodeName.
func (n *Node) leaseEnv() []string {
	if n.c.Kube == nil {
		return nil
	}
	return []string{"NODE_NAME=" + n.Name}
}

// KubeNodes lists the Node objects (kube mode only).
func (c *Cluster) KubeNodes(ctx context.Context) ([]corev1.Node, error) {
	var items []corev1.Node
	err := c.withNodes(ctx, func(ctx context.Context, nodes typedcorev1.NodeInterface) error {
		list, err := nodes.List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("list Nodes: %w", err)
		}
		items = list.Items
		return nil
	})
	return items, err
}

// KubeLeases reads the leases the Node objects publish (podCIDRs and
// flannel's annotations), keyed by subnet, one entry per family as
// Etcd.Leases does in etcd mode (public-ipv6 and backend-v6-data for the
// IPv6 podCIDR). Nodes without a backend-type annotation publish none.
func (c *Cluster) KubeLeases(ctx context.Context) (map[netip.Prefix]lease.Attrs, error) {
	nodes, err := c.KubeNodes(ctx)
	if err != nil {
		return nil, err
	}
	out := map[netip.Prefix]lease.Attrs{}
	for _, n := range nodes {
		ann := func(key string) string { return n.Annotations[KubeAnnotationPrefix+key] }
		if ann("backend-type") == "" {
			continue
		}
		cidrs := n.Spec.PodCIDRs
		if len(cidrs) == 0 {
			cidrs = []string{n.Spec.PodCIDR}
		}
		subnets := make([]netip.Prefix, len(cidrs))
		for i, s := range cidrs {
			if subnets[i], err = netip.ParsePrefix(s); err != nil {
				return nil, fmt.Errorf("Node %s: podCIDRs: %w", n.Name, err)
			}
		}
		parts := map[Family]familyPart{}
		for f, keys := range map[Family][2]string{IPv4: {"public-ip", "backend-data"}, IPv6: {"public-ipv6", "backend-v6-data"}} {
			ip, data := ann(keys[0]), json.RawMessage(ann(keys[1]))
			if ip == "" {
				continue
			}
			addr, err := netip.ParseAddr(ip)
			if err != nil {
				return nil, fmt.Errorf("Node %s: %s: %w", n.Name, keys[0], err)
			}
			if !json.Valid(data) {
				return nil, fmt.Errorf("Node %s: %s %q is not JSON", n.Name, keys[1], data)
			}
			parts[f] = familyPart{addr, data}
		}
		if err := addFamilyLeases(out, "Node "+n.Name, subnets, ann("backend-type"), parts); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// diagnoseKube describes the Node objects: podCIDR, weft's annotations and
// conditions.
func (c *Cluster) diagnoseKube(ctx context.Context, b *strings.Builder) {
	nodes, err := c.KubeNodes(ctx)
	fmt.Fprintf(b, "--- Nodes at %s (err %v)\n", c.Kube.URL, err)
	for _, n := range nodes {
		fmt.Fprintf(b, "%s podCIDRs %v\n", n.Name, n.Spec.PodCIDRs)
		keys := make([]string, 0, len(n.Annotations))
		for k := range n.Annotations {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(b, "  %s: %s\n", k, n.Annotations[k])
		}
		for _, cond := range n.Status.Conditions {
			fmt.Fprintf(b, "  condition %s=%s (%s)\n", cond.Type, cond.Status, cond.Reason)
		}
	}
}

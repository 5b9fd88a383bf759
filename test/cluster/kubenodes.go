package cluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/weftnet/weft/pkg/lease"
)

// Synthetic nodes take /28 podCIDRs of PodNetwork from 10.244.16.0 on,
// clear of the /24s PodCIDR gives the cluster's first 15 nodes, and public
// IPs from 10.251.0.1 on, outside the underlay (10.250.0.0/16). Nothing is
// ever sent to them: they exist only for the lease source.
var (
	syntheticFirst  = netip.MustParsePrefix("10.244.16.0/28")
	syntheticIPBase = netip.MustParseAddr("10.251.0.0")
)

// MaxSyntheticNodes is how many synthetic nodes fit in PodNetwork: the /28s
// of 10.244.16.0 to 10.244.255.255.
const MaxSyntheticNodes = 240 * 16

// SyntheticNode is a Node object with no weftd behind it: a podCIDR and
// flannel's vxlan annotations, as a remote node's weftd (or flanneld) would
// publish them.
type SyntheticNode struct {
	Name     string
	Subnet   netip.Prefix
	PublicIP netip.Addr
	VtepMAC  net.HardwareAddr
}

// SyntheticNodes returns n synthetic nodes starting at index first (>= 0):
// distinct names, /28 podCIDRs, public IPs and locally administered VTEP
// MACs.
func SyntheticNodes(first, n int) ([]SyntheticNode, error) {
	if first < 0 || n < 0 || first+n > MaxSyntheticNodes {
		return nil, fmt.Errorf("synthetic nodes %d to %d: PodNetwork holds %d", first, first+n-1, MaxSyntheticNodes)
	}
	out := make([]SyntheticNode, n)
	for k := range out {
		i := first + k
		out[k] = SyntheticNode{
			Name:     fmt.Sprintf("synthetic-%05d", i),
			Subnet:   netip.PrefixFrom(addAddr(syntheticFirst.Addr(), uint32(i)<<(32-syntheticFirst.Bits())), syntheticFirst.Bits()),
			PublicIP: addAddr(syntheticIPBase, uint32(i+1)),
			VtepMAC:  net.HardwareAddr{0x02, 0x5e, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)},
		}
	}
	return out, nil
}

// addAddr returns the IPv4 address a plus d.
func addAddr(a netip.Addr, d uint32) netip.Addr {
	b := a.As4()
	binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])+d)
	return netip.AddrFrom4(b)
}

// annotations are flannel's annotations publishing s as a vxlan lease,
// under KubeAnnotationPrefix.
func (s SyntheticNode) annotations() map[string]string {
	data, err := json.Marshal(lease.VXLANData{VNI: 1, VtepMAC: s.VtepMAC.String()})
	if err != nil {
		panic(err) // an int and strings always marshal
	}
	return map[string]string{
		KubeAnnotationPrefix + "kube-subnet-manager": "true",
		KubeAnnotationPrefix + "backend-type":        "vxlan",
		KubeAnnotationPrefix + "backend-data":        string(data),
		KubeAnnotationPrefix + "public-ip":           s.PublicIP.String(),
	}
}

// CreateSyntheticNode creates s's Node object (kube mode only).
func (c *Cluster) CreateSyntheticNode(ctx context.Context, s SyntheticNode) error {
	cidr := s.Subnet.String()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Annotations: s.annotations()},
		Spec:       corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}},
	}
	return c.withNodes(ctx, func(ctx context.Context, nodes typedcorev1.NodeInterface) error {
		if _, err := nodes.Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create synthetic Node %s: %w", s.Name, err)
		}
		return nil
	})
}

// CreateSyntheticNodes creates the Node objects of nodes with up to workers
// requests in flight, and returns the first error after all have been
// tried.
func (c *Cluster) CreateSyntheticNodes(ctx context.Context, nodes []SyntheticNode, workers int) error {
	if workers < 1 {
		return fmt.Errorf("create synthetic Nodes: %d workers, want at least 1", workers)
	}
	work := make(chan SyntheticNode)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for s := range work {
				if err := c.CreateSyntheticNode(ctx, s); err != nil && errs[w] == nil {
					errs[w] = err
				}
			}
		})
	}
	for _, s := range nodes {
		work <- s
	}
	close(work)
	wg.Wait()
	return errors.Join(errs...)
}

// UpdateSyntheticNode rewrites the annotations of s's Node object to
// publish s (a new PublicIP or VtepMAC; the podCIDR cannot change).
func (c *Cluster) UpdateSyntheticNode(ctx context.Context, s SyntheticNode) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": s.annotations()}})
	if err != nil {
		return fmt.Errorf("synthetic Node %s: encode patch: %w", s.Name, err)
	}
	return c.withNodes(ctx, func(ctx context.Context, nodes typedcorev1.NodeInterface) error {
		if _, err := nodes.Patch(ctx, s.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("update synthetic Node %s: %w", s.Name, err)
		}
		return nil
	})
}

// DeleteKubeNode deletes Node name (kube mode only).
func (c *Cluster) DeleteKubeNode(ctx context.Context, name string) error {
	return c.withNodes(ctx, func(ctx context.Context, nodes typedcorev1.NodeInterface) error {
		if err := nodes.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			return fmt.Errorf("delete Node %s: %w", name, err)
		}
		return nil
	})
}

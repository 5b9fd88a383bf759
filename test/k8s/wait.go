package k8s

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/test/cluster"
)

const (
	// waitInterval is how often the cluster's conditions are re-checked
	// (each check lists objects from the API server).
	waitInterval = 500 * time.Millisecond
	// requestTimeout bounds one check's requests.
	requestTimeout = 15 * time.Second
	// registerTimeout bounds the nodes' registration and podCIDRs.
	registerTimeout = 2 * time.Minute
	// weftReadyTimeout bounds weft's start on every node.
	weftReadyTimeout = 3 * time.Minute
	// nodesReadyTimeout bounds the nodes turning Ready once weft is.
	nodesReadyTimeout = 2 * time.Minute
)

var (
	getOptions  = metav1.GetOptions{}
	listOptions = metav1.ListOptions{}
)

// WaitFor calls cond (with a context bounded per call) until it returns
// nil or timeout passes, failing early when a daemon of the cluster
// (control plane, containerd, kubelet, kube-proxy) has exited; the error
// names what was awaited.
func (c *Cluster) WaitFor(ctx context.Context, timeout time.Duration, what string, cond func(context.Context) error) error {
	return cluster.EventuallyEvery(ctx, timeout, waitInterval, what, func() error {
		if err := c.alive(); err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		return cond(cctx)
	})
}

// alive fails if any daemon of the cluster has exited.
func (c *Cluster) alive() error {
	for _, d := range c.allDaemons() {
		if err := d.alive(); err != nil {
			return err
		}
	}
	return nil
}

// allDaemons are the control plane's daemons and every node's.
func (c *Cluster) allDaemons() []*daemon {
	ds := slices.Clone(c.daemons)
	for _, n := range c.Nodes {
		if n != nil {
			ds = append(ds, n.daemons...)
		}
	}
	return ds
}

// waitNodesRegistered waits until every node has registered its Node and
// kube-controller-manager has given each a podCIDR.
func (c *Cluster) waitNodesRegistered(ctx context.Context) error {
	return c.WaitFor(ctx, registerTimeout, "every node registered with a podCIDR", func(ctx context.Context) error {
		return c.eachNode(ctx, func(n *corev1.Node) error {
			if n.Spec.PodCIDR == "" {
				return errors.New("no podCIDR yet")
			}
			return nil
		})
	})
}

// WaitNodesReady waits until every node is Ready.
func (c *Cluster) WaitNodesReady(ctx context.Context) error {
	return c.WaitFor(ctx, nodesReadyTimeout, "every node Ready", func(ctx context.Context) error {
		return c.eachNode(ctx, func(n *corev1.Node) error {
			return nodeCondition(n, corev1.NodeReady, corev1.ConditionTrue)
		})
	})
}

// WaitWeftReady waits until weft's pod on every node is Ready and every
// node's NetworkUnavailable condition is False (weftd clears it).
func (c *Cluster) WaitWeftReady(ctx context.Context) error {
	return c.WaitFor(ctx, weftReadyTimeout, "weft Ready on every node", func(ctx context.Context) error {
		if err := c.podsReadyOnEveryNode(ctx, WeftNamespace, "app=weft"); err != nil {
			return err
		}
		return c.eachNode(ctx, func(n *corev1.Node) error {
			return nodeCondition(n, corev1.NodeNetworkUnavailable, corev1.ConditionFalse)
		})
	})
}

// eachNode lists the Node objects and calls f with each of the cluster's
// nodes; it fails if one is missing or f fails for one.
func (c *Cluster) eachNode(ctx context.Context, f func(*corev1.Node) error) error {
	list, err := c.Client.CoreV1().Nodes().List(ctx, listOptions)
	if err != nil {
		return err
	}
	var errs []error
	for _, want := range c.Nodes {
		i := slices.IndexFunc(list.Items, func(n corev1.Node) bool { return n.Name == want.Name })
		if i < 0 {
			errs = append(errs, fmt.Errorf("Node %s not registered", want.Name))
			continue
		}
		if err := f(&list.Items[i]); err != nil {
			errs = append(errs, fmt.Errorf("Node %s: %w", want.Name, err))
		}
	}
	return errors.Join(errs...)
}

// nodeCondition fails unless n's condition typ has status want.
func nodeCondition(n *corev1.Node, typ corev1.NodeConditionType, want corev1.ConditionStatus) error {
	for _, cond := range n.Status.Conditions {
		if cond.Type == typ {
			if cond.Status != want {
				return fmt.Errorf("%s is %s (%s: %s)", typ, cond.Status, cond.Reason, cond.Message)
			}
			return nil
		}
	}
	return fmt.Errorf("no %s condition", typ)
}

// podsReadyOnEveryNode fails unless every node runs a Ready pod matching
// selector in namespace.
func (c *Cluster) podsReadyOnEveryNode(ctx context.Context, namespace, selector string) error {
	pods, err := c.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range c.Nodes {
		i := slices.IndexFunc(pods.Items, func(p corev1.Pod) bool { return p.Spec.NodeName == n.Name && PodReady(&p) })
		if i < 0 {
			errs = append(errs, fmt.Errorf("no Ready pod %s in %s on %s", selector, namespace, n.Name))
		}
	}
	return errors.Join(errs...)
}

// PodReady reports whether p's Ready condition is True.
func PodReady(p *corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// WaitPodsReady waits until count pods match selector in namespace and all
// are Ready, and returns them.
func (c *Cluster) WaitPodsReady(ctx context.Context, namespace, selector string, count int, timeout time.Duration) ([]corev1.Pod, error) {
	var pods []corev1.Pod
	err := c.WaitFor(ctx, timeout, fmt.Sprintf("%d Ready pods %s in %s", count, selector, namespace), func(ctx context.Context) error {
		list, err := c.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		var notReady []string
		for _, p := range list.Items {
			if !PodReady(&p) {
				notReady = append(notReady, fmt.Sprintf("%s (%s on %q)", p.Name, p.Status.Phase, p.Spec.NodeName))
			}
		}
		if len(list.Items) != count || len(notReady) > 0 {
			return fmt.Errorf("%d pods, not Ready: %s", len(list.Items), strings.Join(notReady, ", "))
		}
		pods = list.Items
		return nil
	})
	return pods, err
}

// Exec runs cmd in container (the pod's first if "") of pod in namespace
// (kubectl exec) and returns its standard output.
func (c *Cluster) Exec(ctx context.Context, namespace, pod, container string, cmd ...string) (string, error) {
	args := []string{"exec", "-n", namespace, pod}
	if container != "" {
		args = append(args, "-c", container)
	}
	return c.Kubectl(ctx, append(append(args, "--"), cmd...)...)
}

// Node returns node i (0-based).
func (c *Cluster) Node(i int) *Node { return c.Nodes[i] }

// WeftPod is the name of weft's pod on node (e.g. to exec weftctl in it).
func (c *Cluster) WeftPod(ctx context.Context, node string) (string, error) {
	pods, err := c.Client.CoreV1().Pods(WeftNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=weft", FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return "", fmt.Errorf("weft pod on %s: %w", node, err)
	}
	if len(pods.Items) != 1 {
		return "", fmt.Errorf("weft pods on %s: %d, want 1", node, len(pods.Items))
	}
	return pods.Items[0].Name, nil
}

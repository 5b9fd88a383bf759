package k8s

import (
	"context"
	_ "embed"
	"fmt"
	"strings"
	"time"
)

//go:embed testdata/kube-router.yaml
var kubeRouterRBAC string

const (
	// kubeRouterUser is the user of kube-router's client certificate, the
	// subject of testdata/kube-router.yaml's ClusterRoleBinding.
	kubeRouterUser = "weft-test:kube-router"
	// kubeRouterChain is the chain kube-router's firewall jumps to from
	// FORWARD; it exists once the controller has started.
	kubeRouterChain = "KUBE-ROUTER-FORWARD"
	// kubeRouterTimeout bounds kube-router's start on every node.
	kubeRouterTimeout = time.Minute
)

// StartKubeRouter runs kube-router's network policy controller (its
// firewall: iptables and ipset, as k3s runs it beside flannel) on every
// node, as a process in the node's namespaces like kube-proxy, with read
// access to what it watches (testdata/kube-router.yaml). It waits until
// every node's FORWARD chain jumps to kube-router's. The node's kill (or
// Close) stops it.
func (c *Cluster) StartKubeRouter(ctx context.Context) error {
	if c.opts.Components.KubeRouter == "" {
		return fmt.Errorf("no kube-router: Components.KubeRouter is empty")
	}
	if err := c.ApplyTemplate(ctx, "testdata/kube-router.yaml", kubeRouterRBAC, map[string]string{"User": kubeRouterUser}); err != nil {
		return err
	}
	for _, n := range c.Nodes {
		if err := n.startKubeRouter(); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return c.WaitFor(ctx, kubeRouterTimeout, "kube-router's firewall on every node", func(ctx context.Context) error {
		for _, n := range c.Nodes {
			rules, err := n.Exec(ctx, "iptables", "-S", "FORWARD")
			if err != nil {
				return err
			}
			if !strings.Contains(rules, "-j "+kubeRouterChain) {
				return fmt.Errorf("%s: FORWARD does not jump to %s yet", n.Name, kubeRouterChain)
			}
		}
		return nil
	})
}

// startKubeRouter starts kube-router's firewall on the node.
func (n *Node) startKubeRouter() error {
	kubeconfig, err := n.c.pki.Kubeconfig(n.Name+"-kube-router", APIServerURL(), kubeRouterUser)
	if err != nil {
		return err
	}
	_, err = n.startDaemon("kube-router", n.c.opts.Components.KubeRouter,
		"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
		"--kubeconfig="+kubeconfig, "--hostname-override="+n.Name,
		"--service-cluster-ip-range="+ServiceCIDR.String(), "--v=1")
	return err
}

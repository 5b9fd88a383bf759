package k8s

import (
	"context"
	_ "embed"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

//go:embed testdata/netpol-pods.yaml
var netpolPods string

//go:embed testdata/netpol.yaml
var netpolPolicies string

const (
	// policyNamespace holds the NetworkPolicy test's pods and policies.
	policyNamespace = "weft-e2e-policy"
	// policyTimeout bounds kube-router's enforcing of new policies.
	policyTimeout = time.Minute
	// policyChecks is how many times each client's verdict is checked once
	// the policies are enforced.
	policyChecks = 5
	// connectTimeout bounds one connection attempt from a client.
	connectTimeout = "2s"
)

// testNetworkPolicy: kube-router's firewall on every node; in a namespace a
// server on one node and two clients on two others. Without policies both
// connect; with a default-deny ingress policy and one that allows the
// server's port from pods labeled access=allowed, the labeled client still
// connects and the other is refused or times out, every time. The
// namespace goes at the end; kube-router keeps running. On the ebpf
// datapath this shows netfilter decides: new connections take the kernel
// path, where kube-router's rules see them.
func testNetworkPolicy(t *testing.T, w *workload) {
	c, ctx := w.c, t.Context()
	start := time.Now()
	if err := c.StartKubeRouter(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-router's firewall running on %d nodes in %v", len(c.Nodes), time.Since(start).Round(time.Millisecond))
	data := map[string]string{
		"Namespace": policyNamespace, "Image": c.opts.Components.Images.Agnhost.Ref,
		"ServerNode": c.Nodes[0].Name, "AllowedNode": c.Nodes[1].Name, "OtherNode": c.Nodes[2].Name,
	}
	if err := c.ApplyTemplate(ctx, "testdata/netpol-pods.yaml", netpolPods, data); err != nil {
		t.Fatal(err)
	}
	// Its pods have no controller: a drain would refuse them.
	t.Cleanup(func() {
		if _, err := c.Kubectl(context.Background(), "delete", "namespace", policyNamespace, "--timeout="+policyTimeout.String()); err != nil {
			t.Errorf("remove the policy test's namespace: %v", err)
		}
	})
	pods, err := c.WaitPodsReady(ctx, policyNamespace, "", 3, podsTimeout)
	if err != nil {
		t.Fatal(err)
	}
	var server netip.AddrPort
	for _, p := range pods {
		if p.Name == "server" {
			ip, err := netip.ParseAddr(p.Status.PodIP)
			if err != nil {
				t.Fatalf("server's IP %q: %v", p.Status.PodIP, err)
			}
			server = netip.AddrPortFrom(ip, netexecPort)
		}
	}
	for _, client := range []string{"allowed", "other"} {
		err := cluster.Eventually(ctx, reachTimeout, client+" connects to "+server.String()+" without policies", func() error {
			return connect(ctx, c, client, server)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := c.ApplyTemplate(ctx, "testdata/netpol.yaml", netpolPolicies, map[string]string{"Namespace": policyNamespace}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	enforced := func(ctx context.Context) error {
		if err := connect(ctx, c, "allowed", server); err != nil {
			return err
		}
		err := connect(ctx, c, "other", server)
		if err == nil {
			return fmt.Errorf("other (not labeled) connected to %s", server)
		}
		if !denied(err) {
			return err
		}
		return nil
	}
	if err := c.WaitFor(ctx, policyTimeout, "the policies enforced", enforced); err != nil {
		t.Fatal(err)
	}
	t.Logf("policies enforced %v after they were applied: allowed connects to the server on %s, other is denied", time.Since(start).Round(time.Millisecond), server)
	for range policyChecks {
		if err := enforced(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// connect tries a TCP connection from the pod client of policyNamespace to
// dst (agnhost connect, through kubectl exec).
func connect(ctx context.Context, c *Cluster, client string, dst netip.AddrPort) error {
	_, err := c.Exec(ctx, policyNamespace, client, "", "/agnhost", "connect", "--timeout="+connectTimeout, dst.String())
	return err
}

// denied reports whether agnhost connect failed because the connection was
// refused or timed out (REFUSED, TIMEOUT), or the network said no (OTHER:
// e.g. host unreachable): not an error of kubectl or of the pod.
func denied(err error) bool {
	for _, verdict := range []string{"REFUSED", "TIMEOUT", "OTHER:"} {
		if strings.Contains(err.Error(), verdict) {
			return true
		}
	}
	return false
}

package k8s

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftnet/weft/test/testns"
)

// podsTimeout bounds test pods becoming Ready.
const podsTimeout = 2 * time.Minute

// components returns the cluster's programs and images (BuildComponents:
// cached, or built cold in about half an hour). The cluster tests run
// only under WEFT_E2E=1 or CI=true.
func components(t *testing.T) Components {
	t.Helper()
	if !testns.Strict() {
		t.Skip("a real Kubernetes cluster (builds Kubernetes from source when not cached): set WEFT_E2E=1 (as root) to run it")
	}
	testns.RequireRoot(t)
	comp, err := BuildComponents(t.Context())
	if err != nil {
		t.Fatalf("components: %v", err)
	}
	return comp
}

// TestClusterUp brings up three nodes with weft on the eBPF datapath,
// installed with kubectl apply -k: every node Ready with weft Ready and
// NetworkUnavailable False, CoreDNS Ready, weft's eBPF datapath and peers
// on every node, and agnhost pods on two nodes reaching each other both
// ways.
func TestClusterUp(t *testing.T) {
	comp := components(t)
	c := Start(t, Options{Components: comp, Datapath: "ebpf"}) // logs the time to come up
	ctx := t.Context()

	for _, wait := range []func(context.Context) error{c.WaitNodesReady, c.WaitWeftReady} {
		if err := wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.WaitPodsReady(ctx, "kube-system", "k8s-app=kube-dns", 2, podsTimeout); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		env, err := n.Exec(ctx, "cat", "/run/weft/subnet.env")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(env, "WEFT_BPF_DIR=") {
			t.Errorf("%s: subnet file without WEFT_BPF_DIR, not on the eBPF datapath:\n%s", n.Name, env)
		}
		pod, err := c.WeftPod(ctx, n.Name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, WeftNamespace, pod, "weftd", "/usr/local/bin/weftctl", "maps"); err != nil {
			t.Errorf("weftctl maps in %s on %s: %v", pod, n.Name, err)
		}
		peers, err := n.WeftMetric(ctx, "weft_peers", `backend="vxlan-ebpf"`)
		if err != nil {
			t.Fatal(err)
		}
		if want := float64(len(c.Nodes) - 1); peers != want {
			t.Errorf("%s: weft_peers{backend=vxlan-ebpf} = %v, want %v", n.Name, peers, want)
		}
	}

	a, b := c.Node(0), c.Node(1)
	if _, err := c.KubectlInput(ctx, netexecPods(comp.Images.Agnhost.Ref, a.Name, b.Name), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	pods, err := c.WaitPodsReady(ctx, "default", "app=netexec", 2, podsTimeout)
	if err != nil {
		t.Fatal(err)
	}
	byNode := map[string]corev1.Pod{}
	for _, p := range pods {
		byNode[p.Spec.NodeName] = p
	}
	for _, pair := range [][2]string{{a.Name, b.Name}, {b.Name, a.Name}} {
		from, to := byNode[pair[0]], byNode[pair[1]]
		if from.Name == "" || to.Name == "" {
			t.Fatalf("want a netexec pod on %s and on %s, have %v", pair[0], pair[1], byNode)
		}
		target := netip.AddrPortFrom(netip.MustParseAddr(to.Status.PodIP), netexecPort).String()
		if _, err := c.Exec(ctx, "default", from.Name, "", "/agnhost", "connect", target, "--timeout=5s"); err != nil {
			t.Errorf("pod %s on %s cannot connect to %s on %s (%s): %v", from.Name, pair[0], to.Name, pair[1], target, err)
		}
	}
	// A node reaches a pod on another node, over HTTP.
	got, err := c.Node(2).HTTPGet(ctx, fmt.Sprintf("http://%s/hostname", netip.AddrPortFrom(netip.MustParseAddr(byNode[b.Name].Status.PodIP), netexecPort)))
	if err != nil {
		t.Fatal(err)
	}
	if got != byNode[b.Name].Name {
		t.Errorf("GET /hostname of %s from node %s: %q", byNode[b.Name].Name, c.Node(2).Name, got)
	}
}

// netexecPort is agnhost netexec's HTTP port in the test pods.
const netexecPort = 8080

// netexecPods is a manifest of one agnhost netexec pod on each node named,
// ready when it serves HTTP.
func netexecPods(image string, nodes ...string) string {
	var b strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Pod
metadata:
  name: netexec-%[1]s
  labels:
    app: netexec
spec:
  nodeSelector:
    kubernetes.io/hostname: %[1]s
  containers:
    - name: agnhost
      image: %[2]s
      imagePullPolicy: Never
      args: [netexec, --http-port=%[3]d]
      readinessProbe:
        httpGet:
          path: /hostname
          port: %[3]d
        periodSeconds: 1
`, n, image, netexecPort)
	}
	return b.String()
}

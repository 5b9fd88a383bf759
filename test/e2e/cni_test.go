package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftnet/weft/test/cluster"
)

// handSubnetEnv is a subnet file as flanneld writes it, so the CNI chain
// runs without weftd.
const handSubnetEnv = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"

// TestCNIChain runs flannel's conflist unchanged, with weft-cni installed
// as "flannel", against a hand-written subnet file: pods get an address of
// the node's subnet, the MTU and the routes from it, reach each other and
// the node; DEL releases the address and the saved delegate config.
func TestCNIChain(t *testing.T) {
	c := start(t, cluster.Options{Nodes: 1, NoStart: true, Binaries: cluster.Binaries{CNI: binary(t, "weft-cni")}})
	ctx := t.Context()
	n := c.Nodes[0]
	if err := os.WriteFile(n.SubnetFile, []byte(handSubnetEnv), 0o644); err != nil {
		t.Fatal(err)
	}
	p1, err := n.AddPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := n.AddPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*cluster.Pod{p1, p2} {
		if !strings.HasPrefix(p.IP.String(), "10.244.5.") || p.IP.String() == "10.244.5.1" {
			t.Errorf("%s got %s, want a pod address in 10.244.5.0/24", p.ID, p.IP)
		}
		if out, err := p.NS.Exec(ctx, "ip", "-o", "link", "show", "eth0"); err != nil || !strings.Contains(out, "mtu 1450") {
			t.Errorf("%s eth0: want mtu 1450 (FLANNEL_MTU): %s %v", p.ID, out, err)
		}
		if out, err := p.NS.Exec(ctx, "ip", "route"); err != nil ||
			!strings.Contains(out, "default via 10.244.5.1") || !strings.Contains(out, "10.244.0.0/16 via 10.244.5.1") {
			t.Errorf("%s routes: want default and 10.244.0.0/16 via 10.244.5.1 (isDefaultGateway, FLANNEL_NETWORK):\n%s %v", p.ID, out, err)
		}
		if _, err := os.Stat(filepath.Join(n.Dir, "cni", c.Prefix+p.ID)); err != nil {
			t.Errorf("delegate config of %s not saved in dataDir: %v", p.ID, err)
		}
	}
	if out, err := n.Exec(ctx, "ip", "-o", "addr", "show", "cni0"); err != nil || !strings.Contains(out, "10.244.5.1/24") {
		t.Errorf("cni0 on %s: want 10.244.5.1/24: %s %v", n.Name, out, err)
	}
	requirePing(t, p1.NS, "pod to pod on one node", p2.IP)
	requirePing(t, n.NS, "node to its pod", p1.IP)

	if err := p2.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(n.Dir, "ipam", "cbr0", p2.IP.String())); !os.IsNotExist(err) {
		t.Errorf("address %s still allocated after DEL: %v", p2.IP, err)
	}
	if _, err := os.Stat(filepath.Join(n.Dir, "cni", c.Prefix+p2.ID)); !os.IsNotExist(err) {
		t.Errorf("delegate config of %s left after DEL: %v", p2.ID, err)
	}
}

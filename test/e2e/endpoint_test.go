package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/datapath/ebpf"
	"github.com/weftnet/weft/test/cluster"
)

// endpointResync is weftd's --resync-interval in the endpoint tests; an
// endpoint entry must be back within endpointRestore.
const (
	endpointResync  = time.Second
	endpointRestore = 5 * endpointResync
)

// endpointCluster starts the endpoint tests' cluster: two ebpf vxlan nodes
// that resync every endpointResync.
func endpointCluster(t *testing.T) *cluster.Cluster {
	t.Helper()
	return start(t, cluster.Options{NetConf: cluster.NetConf("vxlan", "ebpf", false),
		WeftdArgs: []string{"--resync-interval", endpointResync.String()}})
}

// TestEndpointRestored deletes a running pod's endpoint entry from the
// pinned maps by hand: weftd, which owns the endpoint table, puts it back
// (the same veth and MAC) within a few resyncs.
func TestEndpointRestored(t *testing.T) {
	c := endpointCluster(t)
	pods := addPods(t, c, 2)
	requireDatapaths(t, c, "ebpf")
	p := pods[1]
	want := removeEndpoint(t, p)
	requireEndpoint(t, p, want, endpointRestore)
}

// TestPodWhileWeftdDown creates a pod while weftd is stopped (weft-cni runs
// with the subnet file weftd left behind) and undoes weft-cni's own map
// entry, as when that fast first write fails (weft-cni only logs it). Once
// weftd is back the pod's endpoint entry is there, and its TCP traffic to
// a pod on the other node takes the fast path.
func TestPodWhileWeftdDown(t *testing.T) {
	c := endpointCluster(t)
	ctx := t.Context()
	n1, n2 := c.Nodes[0], c.Nodes[1]
	remote, err := n2.AddPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, []*cluster.Pod{remote})
	if err := n1.StopWeftd(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p, err := n1.AddPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := removeEndpoint(t, p)
	if err := n1.StartWeftd(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n1.WaitReady(ctx, subnetTimeout); err != nil {
		t.Fatal(err)
	}
	requireEndpoint(t, p, want, endpointRestore)
	if err := waitReach(ctx, p.NS, remote.IP); err != nil {
		t.Fatal(err)
	}
	var sent int64
	d := carriedBytes(t, c.Nodes, func() {
		sent, err = p.NS.EchoStream(ctx, netip.AddrPortFrom(remote.IP, echoPort), 2*time.Second, streamRate)
		if err != nil {
			t.Fatal(err)
		}
	})
	requireFastPath(t, d, n1, n2, "vxlan", cluster.IPv4, sent)
}

// removeEndpoint waits until pod p's IPv4 address is in its node's
// endpoint maps (weft_endpoints and weft_pods), deletes it from both by
// hand and returns the weft_endpoints entry it deleted.
func removeEndpoint(t *testing.T, p *cluster.Pod) ebpf.Endpoint {
	t.Helper()
	var ep ebpf.Endpoint
	err := cluster.Eventually(t.Context(), convergeTimeout, "endpoint of "+p.ID, func() error {
		var err error
		ep, err = endpointOf(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ebpf.UnregisterEndpoint(p.Node.BPFDir, p.IP); err != nil {
		t.Fatal(err)
	}
	if _, err := endpointOf(p); err == nil {
		t.Fatalf("%s's endpoint is still in %s's maps after its deletion", p.ID, p.Node.Name)
	}
	t.Logf("deleted %s's endpoint %s (host ifindex %d, MAC %s) from %s's maps", p.ID, ep.IP, ep.HostIfindex, ep.MAC, p.Node.Name)
	return ep
}

// requireEndpoint requires that pod p's endpoint entry is want again
// within timeout, in weft_endpoints and weft_pods.
func requireEndpoint(t *testing.T, p *cluster.Pod, want ebpf.Endpoint, timeout time.Duration) {
	t.Helper()
	err := cluster.Eventually(t.Context(), timeout, fmt.Sprintf("%s's endpoint back in %s's maps", p.ID, p.Node.Name), func() error {
		got, err := endpointOf(p)
		if err != nil {
			return err
		}
		if got.HostIfindex != want.HostIfindex || got.MAC.String() != want.MAC.String() {
			return fmt.Errorf("entry %+v, want %+v", got, want)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// endpointOf is pod p's IPv4 entry in its node's weft_endpoints; an error
// if it is missing there or in weft_pods (under the same veth and MAC).
func endpointOf(p *cluster.Pod) (ebpf.Endpoint, error) {
	bpfDir := p.Node.BPFDir
	eps, err := ebpf.ReadEndpoints(bpfDir)
	if err != nil {
		return ebpf.Endpoint{}, err
	}
	i := slices.IndexFunc(eps, func(e ebpf.Endpoint) bool { return e.IP == p.IP })
	if i < 0 {
		return ebpf.Endpoint{}, fmt.Errorf("%s not in weft_endpoints of %s: %v", p.IP, p.Node.Name, eps)
	}
	ep := eps[i]
	pods, err := ebpf.ReadPods(bpfDir)
	if err != nil {
		return ep, err
	}
	if !slices.ContainsFunc(pods, func(q ebpf.Pod) bool {
		return q.IP == p.IP && q.HostIfindex == ep.HostIfindex && q.MAC.String() == ep.MAC.String()
	}) {
		return ep, fmt.Errorf("%s (veth %d, MAC %s) not in weft_pods of %s: %v", p.IP, ep.HostIfindex, ep.MAC, p.Node.Name, pods)
	}
	return ep, nil
}

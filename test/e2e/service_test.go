package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/test/cluster"
)

// serviceIP and servicePort are a fake ClusterIP service; backendPort is
// where the pod behind it listens.
const (
	serviceIP   = "10.96.0.10"
	servicePort = 80
	backendPort = 8080
)

// TestServiceDNAT has a pod reach a pod on another node through a
// kube-proxy style DNAT rule in its own node: the reply must be translated
// back, so the datapath has to let conntrack see both directions. On the
// ebpf datapath the NATed flow stays on the kernel path on the client's
// node, both ways: the eBPF counters there do not move.
func TestServiceDNAT(t *testing.T) {
	for _, dp := range []string{"kernel", "ebpf"} {
		t.Run(dp, func(t *testing.T) {
			c := start(t, cluster.Options{NetConf: cluster.NetConf("vxlan", dp, false)})
			ctx := t.Context()
			pods := addPods(t, c, 1)
			requireDatapaths(t, c, dp)
			for _, p := range pods {
				s, err := p.NS.ServeEcho(backendPort)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
			}
			// Each way: the client's node DNATs the service to the other pod.
			for _, pair := range [][2]*cluster.Pod{{pods[0], pods[1]}, {pods[1], pods[0]}} {
				client, backend := pair[0], pair[1]
				if err := waitReach(ctx, client.NS, backend.IP); err != nil {
					t.Fatal(err)
				}
				if err := installService(ctx, client.Node, backend.IP); err != nil {
					t.Fatal(err)
				}
				svc := netip.AddrPortFrom(netip.MustParseAddr(serviceIP), servicePort)
				d := carriedBytes(t, []*cluster.Node{client.Node}, func() {
					if err := client.NS.EchoRoundTrip(ctx, svc, transferSize); err != nil {
						t.Errorf("%s -> service %s -> %s: %v", describe(client), svc, describe(backend), err)
					}
				})
				for _, dir := range []string{"tx", "rx"} {
					key := client.Node.Name + " vxlan-%s " + dir
					if slow := d[fmt.Sprintf(key, "kernel")]; slow < carriedShare*transferSize {
						t.Errorf("%s: vxlan-kernel %s grew by %.0f bytes for a %d-byte Service stream, want about as much", client.Node.Name, dir, slow, transferSize)
					}
					if fast := d[fmt.Sprintf(key, "ebpf")]; fast != 0 {
						t.Errorf("%s: vxlan-ebpf %s grew by %.0f bytes: a DNATed flow took the fast path on the client's node", client.Node.Name, dir, fast)
					}
				}
			}
		})
	}
}

// installService adds, in node n, the DNAT kube-proxy would install for
// serviceIP:servicePort with the single endpoint backend:backendPort.
func installService(ctx context.Context, n *cluster.Node, backend netip.Addr) error {
	for _, cmd := range [][]string{
		{"add", "table", "ip", "wt_svc"},
		{"add", "chain", "ip", "wt_svc", "prerouting", "{", "type", "nat", "hook", "prerouting", "priority", "dstnat", ";", "}"},
		{"add", "rule", "ip", "wt_svc", "prerouting", "ip", "daddr", serviceIP, "tcp", "dport", fmt.Sprint(servicePort),
			"dnat", "to", netip.AddrPortFrom(backend, backendPort).String()},
	} {
		if _, err := n.Exec(ctx, "nft", cmd...); err != nil {
			return err
		}
	}
	return nil
}

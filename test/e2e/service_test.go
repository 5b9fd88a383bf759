package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

// serviceIP (serviceIPv6 in IPv6) and servicePort are a fake ClusterIP
// service; backendPort is where the pod behind it listens.
const (
	serviceIP   = "10.96.0.10"
	serviceIPv6 = "fd00:96::10"
	servicePort = 80
	backendPort = 8080
)

// TestServiceDNAT has a pod reach a pod on another node through a
// kube-proxy style DNAT rule in its own node: the reply must be translated
// back, so the datapath has to let conntrack see both directions. On the
// ebpf datapath an IPv4 stream takes the fast path on both nodes once
// established, the client's node repeating conntrack's translation; an
// IPv6 Service's flows stay on the kernel path (docs/datapath.md) and must
// work there.
func TestServiceDNAT(t *testing.T) {
	families(t, func(t *testing.T, f cluster.Family) {
		for _, dp := range []string{"kernel", "ebpf"} {
			t.Run(dp, func(t *testing.T) { serviceDNAT(t, f, dp) })
		}
	})
}

// serviceDNAT is TestServiceDNAT for a Service of family f on datapath dp.
func serviceDNAT(t *testing.T, f cluster.Family, dp string) {
	stack, svcIP := cluster.IPv4Only, serviceIP
	if f == cluster.IPv6 {
		stack, svcIP = cluster.DualStack, serviceIPv6
	}
	c := start(t, cluster.Options{NetConf: cluster.StackNetConf(stack, "vxlan", dp, false)})
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
		if err := waitReach(ctx, client.NS, backend.IPOf(f)); err != nil {
			t.Fatal(err)
		}
		if err := installService(ctx, client.Node, backend.IPOf(f)); err != nil {
			t.Fatal(err)
		}
		svc := netip.AddrPortFrom(netip.MustParseAddr(svcIP), servicePort)
		var sent int64
		d := carriedBytes(t, c.Nodes, func() {
			var err error
			if sent, err = client.NS.EchoStream(ctx, svc, 2*time.Second, streamRate); err != nil {
				t.Errorf("%s -> service %s -> %s: %v", describe(client), svc, describe(backend), err)
			}
		})
		if dp == "ebpf" && f == cluster.IPv4 {
			requireFastPath(t, d, client.Node, backend.Node, "vxlan", f, sent)
		}
	}
}

// installService adds, in node n, the DNAT kube-proxy would install for
// the service of backend's family (serviceIP or serviceIPv6, servicePort)
// with the single endpoint backend:backendPort.
func installService(ctx context.Context, n *cluster.Node, backend netip.Addr) error {
	family, match, svc := "ip", "ip", serviceIP
	if backend.Is6() {
		family, match, svc = "ip6", "ip6", serviceIPv6
	}
	for _, cmd := range [][]string{
		{"add", "table", family, "wt_svc"},
		{"add", "chain", family, "wt_svc", "prerouting", "{", "type", "nat", "hook", "prerouting", "priority", "dstnat", ";", "}"},
		{"add", "rule", family, "wt_svc", "prerouting", match, "daddr", svc, "tcp", "dport", fmt.Sprint(servicePort),
			"dnat", "to", netip.AddrPortFrom(backend, backendPort).String()},
	} {
		if _, err := n.Exec(ctx, "nft", cmd...); err != nil {
			return err
		}
	}
	return nil
}

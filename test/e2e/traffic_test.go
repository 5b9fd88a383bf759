package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

const (
	// subnetTimeout bounds a node's wait for its lease and subnet file.
	subnetTimeout = 60 * time.Second
	// convergeTimeout bounds the wait until a peer's subnet is reachable.
	convergeTimeout = 60 * time.Second
	// echoPort is where every pod runs an echo server.
	echoPort = 5201
	// altPort is a second serving port of pods, for tests that need two.
	altPort = 5202
	// transferSize is what each TCP check sends (and gets back).
	transferSize = 4 << 20
	// streamRate paces the timed TCP streams (bytes per second each way):
	// enough to fill the counters, kind to a shared machine.
	streamRate = 10 << 20
)

// waitReach waits until from gets a ping reply from to.
func waitReach(ctx context.Context, from *cluster.Netns, to netip.Addr) error {
	return from.WaitReach(ctx, to, convergeTimeout)
}

// requirePing waits until from reaches to, then requires 5 pings without a
// loss.
func requirePing(t *testing.T, from *cluster.Netns, what string, to netip.Addr) {
	t.Helper()
	ctx := t.Context()
	if err := waitReach(ctx, from, to); err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	r, err := from.Ping(ctx, to, 5, 100*time.Millisecond)
	if err != nil || r.Lost() != 0 {
		t.Errorf("%s: lost %d of %d (%v):\n%s", what, r.Lost(), r.Sent, err, r.Output)
	}
}

// serveEcho runs an echo server on echoPort in every pod until t ends.
func serveEcho(t *testing.T, pods []*cluster.Pod) {
	t.Helper()
	for _, p := range pods {
		s, err := p.NS.ServeEcho(echoPort)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
	}
}

// checkMesh checks pod-to-pod traffic across every pair of nodes: pings in
// both directions and a TCP echo transfer (data both ways) from each pod
// to each pod on another node; and each node pinging the pods of the other
// nodes (host-originated traffic, as kubelet probes).
func checkMesh(t *testing.T, c *cluster.Cluster, pods []*cluster.Pod) {
	t.Helper()
	serveEcho(t, pods)
	checkTraffic(t, c.Nodes, pods)
}

// checkTraffic is checkMesh for pods that serve echo already, with the
// node pings from nodes only. Every address of the pods is checked: in
// dual stack IPv4 and IPv6 each.
func checkTraffic(t *testing.T, nodes []*cluster.Node, pods []*cluster.Pod) {
	t.Helper()
	for _, from := range pods {
		for _, to := range pods {
			if from.Node == to.Node {
				continue
			}
			for _, addr := range to.Addrs() {
				what := fmt.Sprintf("%s -> %s %s", describe(from), to.ID, addr)
				requirePing(t, from.NS, "ping "+what, addr)
				if err := from.NS.EchoRoundTrip(t.Context(), netip.AddrPortFrom(addr, echoPort), transferSize); err != nil {
					t.Errorf("TCP %s: %v", what, err)
				}
			}
		}
	}
	for _, n := range nodes {
		for _, to := range pods {
			if to.Node != n {
				for _, addr := range to.Addrs() {
					requirePing(t, n.NS, fmt.Sprintf("ping node %s -> %s %s", n.Name, to.ID, addr), addr)
				}
			}
		}
	}
}

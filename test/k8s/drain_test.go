package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// drainTimeout bounds kubectl drain (evictions, pods ending).
	drainTimeout = 3 * time.Minute
	// forgetTimeout bounds the removal of a deleted node's subnet from
	// every other node's routes and maps.
	forgetTimeout = time.Minute
)

// testDrainAndDelete: the last node is drained (kubectl drain
// --ignore-daemonsets --delete-emptydir-data), shut down and deleted
// (kubectl delete node). Until the delete, every other node routes the
// node's subnet (on ebpf also in weft_peers); within forgetTimeout after
// it, none does, and the remaining nodes stay Ready.
func testDrainAndDelete(t *testing.T, w *workload) {
	c, ctx, datapath := w.c, t.Context(), w.c.opts.Datapath
	victim := c.Nodes[len(c.Nodes)-1]
	others := slices.Clone(c.Nodes[:len(c.Nodes)-1])
	node, err := c.Client.CoreV1().Nodes().Get(ctx, victim.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	subnet, err := netip.ParsePrefix(node.Spec.PodCIDR)
	if err != nil {
		t.Fatalf("%s: podCIDR %q: %v", victim.Name, node.Spec.PodCIDR, err)
	}
	// knownBy fails unless every other node's routes (and maps) hold the
	// subnet (want) or none do (!want).
	knownBy := func(want bool) func(context.Context) error {
		return func(ctx context.Context) error {
			var errs []error
			for _, n := range others {
				where, err := subnetKnown(ctx, c, n, subnet, datapath)
				switch {
				case err != nil:
					errs = append(errs, err)
				case want && len(where) < len(subnetPlaces(datapath)):
					errs = append(errs, fmt.Errorf("%s: %s only in %v", n.Name, subnet, where))
				case !want && len(where) > 0:
					errs = append(errs, fmt.Errorf("%s: %s still in %v", n.Name, subnet, where))
				}
			}
			return errors.Join(errs...)
		}
	}
	start := time.Now()
	if _, err := c.Kubectl(ctx, "drain", victim.Name, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout="+drainTimeout.String()); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s drained in %v", victim.Name, time.Since(start).Round(time.Millisecond))
	if err := c.RemoveNode(victim); err != nil {
		t.Fatal(err)
	}
	// Drained and down, the node still has its Node and its subnet.
	if err := c.WaitFor(ctx, reachTimeout, fmt.Sprintf("%s's subnet %s in every other node's %v", victim.Name, subnet, subnetPlaces(datapath)), knownBy(true)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kubectl(ctx, "delete", "node", victim.Name); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := c.WaitFor(ctx, forgetTimeout, fmt.Sprintf("%s's subnet %s gone from every other node", victim.Name, subnet), knownBy(false)); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s's subnet %s left the routes and maps of %d nodes %v after the Node was deleted", victim.Name, subnet, len(others), time.Since(start).Round(time.Millisecond))
	if err := c.WaitNodesReady(ctx); err != nil {
		t.Fatal(err)
	}
}

// subnetPlaces are where a node keeps a peer's subnet: its routes, and
// on the ebpf datapath also the weft_peers map.
func subnetPlaces(datapath string) []string {
	if datapath == "ebpf" {
		return []string{"routes", "weft_peers"}
	}
	return []string{"routes"}
}

// subnetKnown returns where node n holds subnet (of subnetPlaces): a route
// (ip route in its network namespace) and, on ebpf, an entry of weft_peers
// (weftctl maps dump in its weft pod).
func subnetKnown(ctx context.Context, c *Cluster, n *Node, subnet netip.Prefix, datapath string) ([]string, error) {
	var where []string
	routes, err := n.NS.Exec(ctx, "ip", "-4", "route", "show", "exact", subnet.String())
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(routes) != "" {
		where = append(where, "routes")
	}
	if datapath != "ebpf" {
		return where, nil
	}
	pod, err := c.WeftPod(ctx, n.Name)
	if err != nil {
		return nil, err
	}
	out, err := c.Exec(ctx, WeftNamespace, pod, "weftd", Weftctl, "maps", "dump", "peers", "-o", "json")
	if err != nil {
		return nil, err
	}
	var dump struct {
		Entries []struct{ Subnet string }
	}
	if err := json.Unmarshal([]byte(out), &dump); err != nil {
		return nil, fmt.Errorf("%s: weftctl maps dump peers: %w: %s", n.Name, err, out)
	}
	if slices.ContainsFunc(dump.Entries, func(e struct{ Subnet string }) bool { return e.Subnet == subnet.String() }) {
		where = append(where, "weft_peers")
	}
	return where, nil
}

package k8s

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/test/cluster"
)

// serviceRequests is how many requests each pod sends to each Service
// address: enough that every backend answers some (kube-proxy picks one
// at random per connection) but for a chance of about 1e-5.
const serviceRequests = 15

// testServices: the workload's pods reach the netexec Service through
// kube-proxy by its ClusterIP and by the NodePort of every other node, and
// every backend answers requests from pods on other nodes.
func testServices(t *testing.T, w *workload) {
	spec := w.Service.Spec
	clusterIP := netip.MustParseAddr(spec.ClusterIP)
	t.Run("ClusterIP", func(t *testing.T) {
		w.requireSpread(t, func(podNet) []netip.AddrPort {
			return []netip.AddrPort{netip.AddrPortFrom(clusterIP, uint16(spec.Ports[0].Port))}
		})
	})
	t.Run("NodePort", func(t *testing.T) {
		if spec.Ports[0].NodePort == 0 {
			t.Fatalf("Service %s has no NodePort", w.Service.Name)
		}
		w.requireSpread(t, func(from podNet) []netip.AddrPort {
			var to []netip.AddrPort
			for _, n := range w.c.Nodes {
				if n != from.Node {
					to = append(to, netip.AddrPortFrom(n.IP, uint16(spec.Ports[0].NodePort)))
				}
			}
			return to
		})
	})
}

// requireSpread sends serviceRequests HTTP requests for /hostname from
// every workload pod to each of the addresses targets gives for it, the
// first within reachTimeout, and requires that each is answered by a
// workload pod and every pod answered one from another node.
func (w *workload) requireSpread(t *testing.T, targets func(from podNet) []netip.AddrPort) {
	ctx := t.Context()
	answeredRemote := map[string]int{}
	for _, from := range w.Pods {
		for _, to := range targets(from) {
			url := fmt.Sprintf("http://%s/hostname", to)
			get := func() (string, error) {
				got, err := from.httpGet(ctx, url)
				if err == nil {
					err = w.isPodName(got)
				}
				return got, err
			}
			err := cluster.Eventually(ctx, reachTimeout, "GET "+url+" from "+from.String(), func() error {
				_, err := get()
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			for i := range serviceRequests {
				got, err := get()
				if err != nil {
					t.Fatalf("GET %s from %s, request %d: %v", url, from, i+1, err)
				}
				if got != from.Pod.Name {
					answeredRemote[got]++
				}
			}
		}
	}
	t.Logf("answers to pods on other nodes, by backend: %v", answeredRemote)
	for _, p := range w.Pods {
		if answeredRemote[p.Pod.Name] == 0 {
			t.Errorf("%s answered no request from a pod on another node", p)
		}
	}
}

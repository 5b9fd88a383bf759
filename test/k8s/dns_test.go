package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"testing"

	"github.com/weftnet/weft/test/cluster"
)

// testDNS: from the workload's pod on every node, through the resolver
// the kubelet configured (CoreDNS at the kube-dns Service), the API
// server's Service name kubernetes.default resolves and connects (agnhost
// connect, which reports DNS errors apart), and the workload's Service
// resolves by its short name and its FQDN to an address whose port 80
// leads to a netexec pod: the ClusterIP.
func testDNS(t *testing.T, w *workload) {
	ctx := t.Context()
	names := []string{w.Service.Name, fmt.Sprintf("%s.%s.svc.cluster.local", w.Service.Name, w.Service.Namespace)}
	for _, p := range w.Pods {
		err := cluster.Eventually(ctx, reachTimeout, "kubernetes.default:443 from "+p.String(), func() error {
			_, err := w.c.Exec(ctx, workloadNamespace, p.Pod.Name, "", "/agnhost", "connect", "--timeout=5s", "kubernetes.default:443")
			return err
		})
		if err != nil {
			t.Error(err)
		}
		for _, name := range names {
			err := cluster.Eventually(ctx, reachTimeout, name+" from "+p.String(), func() error {
				got, err := w.dialFrom(ctx, p, name, int(w.Service.Spec.Ports[0].Port))
				if err != nil {
					return err
				}
				return w.isPodName(got)
			})
			if err != nil {
				t.Error(err)
			}
		}
	}
}

// dialFrom asks the netexec in pod p to GET /hostname from host:port
// (its /dial endpoint: the name is resolved in the pod, with the pod's
// resolv.conf) and returns the answer.
func (w *workload) dialFrom(ctx context.Context, p podNet, host string, port int) (string, error) {
	q := url.Values{"request": {"hostname"}, "protocol": {"http"}, "host": {host}, "port": {strconv.Itoa(port)}, "tries": {"1"}}
	body, err := p.httpGet(ctx, fmt.Sprintf("http://127.0.0.1:%d/dial?%s", netexecPort, q.Encode()))
	if err != nil {
		return "", err
	}
	var r struct{ Responses, Errors []string }
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		return "", fmt.Errorf("/dial of %s: %q: %w", p, body, err)
	}
	if len(r.Responses) != 1 {
		return "", fmt.Errorf("%s dialing %s:%d: responses %q, errors %q", p, host, port, r.Responses, r.Errors)
	}
	return r.Responses[0], nil
}

// isPodName fails unless name is the name of one of the workload's pods.
func (w *workload) isPodName(name string) error {
	if !slices.ContainsFunc(w.Pods, func(p podNet) bool { return p.Pod.Name == name }) {
		return fmt.Errorf("answered %q: not a netexec pod", name)
	}
	return nil
}

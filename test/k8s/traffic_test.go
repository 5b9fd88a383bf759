package k8s

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/test/cluster"
)

// TestWorkloads runs, on each datapath (kube-proxy in iptables mode) and
// on ebpf with kube-proxy in nftables mode, one cluster (3 nodes) with
// weft installed from deploy/ and the netexec
// workload on every node, and checks what pods see: probes and the fast
// path, pod-to-pod traffic both ways, an iperf3 stream, CoreDNS, Services
// and a recreated pod. The subtests share the cluster; the one that
// recreates a pod runs last.
func TestWorkloads(t *testing.T) {
	// Each datapath behind kube-proxy's iptables mode, and the eBPF
	// datapath behind its nftables mode too (Services, NodePorts and the
	// fast path's conntrack gate with kube-proxy's nftables NAT).
	variants := append(eachDatapath(), Options{Datapath: "ebpf", KubeProxyMode: "nftables"})
	onClusters(t, variants,
		workloadTest{"ProbesAndFastPath", testProbesAndFastPath},
		workloadTest{"PodToPod", testPodToPod},
		workloadTest{"Iperf3", testIperf3},
		workloadTest{"DNS", testDNS},
		workloadTest{"Services", testServices},
		workloadTest{"PodRecreated", testPodRecreated},
	)
}

// testPodToPod: every workload pod reaches every other one (each on
// another node) by ping and by TCP (HTTP to netexec's /hostname, which
// answers with the pod's name).
func testPodToPod(t *testing.T, w *workload) {
	for _, a := range w.Pods {
		for _, b := range w.Pods {
			if a.Node != b.Node {
				if err := reach(t.Context(), a, b); err != nil {
					t.Error(err)
				}
			}
		}
	}
}

// reach checks that pod a reaches pod b: the first ping within
// reachTimeout, then 5 pings without loss and an HTTP request to b's
// netexec that b answers.
func reach(ctx context.Context, a, b podNet) error {
	err := cluster.Eventually(ctx, reachTimeout, fmt.Sprintf("a ping from %s to %s", a, b), func() error {
		return a.ping(ctx, b.IP, 1)
	})
	if err != nil {
		return err
	}
	if err := a.ping(ctx, b.IP, 5); err != nil {
		return err
	}
	url := fmt.Sprintf("http://%s:%d/hostname", b.IP, netexecPort)
	got, err := a.httpGet(ctx, url)
	if err != nil {
		return err
	}
	if got != b.Pod.Name {
		return fmt.Errorf("GET %s from %s: answered %q, want %q", url, a, got, b.Pod.Name)
	}
	return nil
}

// iperfDuration is the length of the iperf3 run between two nodes.
const iperfDuration = 10 * time.Second

// testIperf3 runs iperf3 for 10 s from the pod on n1 to the pod on n2 and
// reports the rate.
func testIperf3(t *testing.T, w *workload) {
	r, err := iperf(t.Context(), w.Pods[0], w.Pods[1], iperfDuration)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("iperf3 %s -> %s for %v: %.0f MB, %.2f Gbit/s", w.Pods[0], w.Pods[1], iperfDuration, float64(r.Bytes)/1e6, r.Gbps)
}

// testPodRecreated deletes the workload's pod on n2; its Deployment
// recreates it there (one pod per node), and the new pod reaches the pods
// on the other nodes and they reach it.
func testPodRecreated(t *testing.T, w *workload) {
	old := w.Pods[1]
	if err := w.c.Client.CoreV1().Pods(workloadNamespace).Delete(t.Context(), old.Pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w.waitReady(t, old.Pod.UID)
	recreated := w.Pods[1]
	t.Logf("%s deleted, %s in its place", old, recreated)
	for _, other := range []podNet{w.Pods[0], w.Pods[2]} {
		for _, pair := range [][2]podNet{{recreated, other}, {other, recreated}} {
			if err := reach(t.Context(), pair[0], pair[1]); err != nil {
				t.Error(err)
			}
		}
	}
}

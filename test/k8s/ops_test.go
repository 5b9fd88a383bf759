package k8s

import (
	"testing"
)

// workloadTest is one subtest of a suite that runs on a cluster with the
// netexec workload (deployWorkload).
type workloadTest struct {
	name string
	run  func(t *testing.T, w *workload)
}

// eachDatapath are the cluster options of one cluster per datapath
// (kube-proxy in its default mode, iptables).
func eachDatapath() []Options {
	var out []Options
	for _, dp := range datapaths {
		out = append(out, Options{Datapath: dp})
	}
	return out
}

// onClusters runs tests, in order, on one cluster (3 nodes) per element of
// variants, with weft installed from deploy/ and the netexec workload on
// every node; the tests share the cluster. A variant's subtest is named
// after its datapath, and its kube-proxy mode when one is set.
func onClusters(t *testing.T, variants []Options, tests ...workloadTest) {
	comp := components(t)
	for _, v := range variants {
		name := v.Datapath
		if v.KubeProxyMode != "" {
			name += "-kube-proxy-" + v.KubeProxyMode
		}
		t.Run(name, func(t *testing.T) {
			v.Components = comp
			w := deployWorkload(t, Start(t, v))
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) { tc.run(t, w) })
			}
		})
	}
}

// TestOperations does, on each datapath, what operators do to a cluster
// running weft and a workload: a rolling restart of weft under traffic,
// NetworkPolicy enforced by kube-router's firewall, and a node drained and
// deleted (last: the cluster loses a node).
func TestOperations(t *testing.T) {
	onClusters(t, eachDatapath(),
		workloadTest{"RolloutRestart", testRolloutRestart},
		workloadTest{"NetworkPolicy", testNetworkPolicy},
		workloadTest{"DrainAndDelete", testDrainAndDelete},
	)
}

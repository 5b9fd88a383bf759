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

// onEachDatapath runs tests, in order, on one cluster per datapath (3
// nodes, kube-proxy in iptables mode) with weft installed from deploy/ and
// the netexec workload on every node. The tests share the cluster.
func onEachDatapath(t *testing.T, tests ...workloadTest) {
	comp := components(t)
	for _, dp := range datapaths {
		t.Run(dp, func(t *testing.T) {
			w := deployWorkload(t, Start(t, Options{Components: comp, Datapath: dp}))
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
	onEachDatapath(t,
		workloadTest{"RolloutRestart", testRolloutRestart},
		workloadTest{"NetworkPolicy", testNetworkPolicy},
		workloadTest{"DrainAndDelete", testDrainAndDelete},
	)
}

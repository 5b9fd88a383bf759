package ebpf

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/test/testns"
)

// addSecondPod puts another pod (10.244.<i>.11 behind vethpod2) on n's
// bridge and returns it as a node sharing n's namespace.
func (n *testNode) addSecondPod(t *testing.T, mtu string) *testNode {
	t.Helper()
	pod := *n
	pod.pod = testns.New(t, testns.Prefix(), "p2")
	pod.podIP, pod.veth = n.podIP.Next(), "vethpod2"
	n.ns.MustRun(t, "ip", "link", "add", pod.veth, "mtu", mtu, "type", "veth", "peer", "name", "eth0", "netns", pod.pod.Name)
	n.ns.MustRun(t, "ip", "link", "set", pod.veth, "master", "cni0", "up")
	pod.pod.MustRun(t, "ip", "link", "set", "eth0", "mtu", mtu, "up")
	pod.pod.MustRun(t, "ip", "addr", "add", pod.podIP.String()+"/24", "dev", "eth0")
	pod.pod.MustRun(t, "ip", "route", "add", "default", "via", n.subnet.Addr().Next().String())
	return &pod
}

// runCount is how often p ran since stats were enabled.
func runCount(t *testing.T, p *ebpf.Program) uint64 {
	t.Helper()
	s, err := p.Stats()
	must(t, err)
	return s.RunCount
}

// waitPin waits until the pin of dev's ingress link exists (want) or not.
func waitPin(t *testing.T, n *testNode, dev string, want bool) {
	t.Helper()
	path := filepath.Join(n.bpfDir, linkPinPrefix+dev+"_ingress")
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := os.Stat(path)
		if err == nil == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pin %s: exists %v, want %v", path, err == nil, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestVethFastPath: pod -> remote pod traffic is encapsulated at the pod's
// veth (the bridge's ingress program never runs for it), pods on one bridge
// still reach each other, a new pod's veth gets the program from the link
// watcher and a deleted pod's pin goes away.
func TestVethFastPath(t *testing.T) {
	nodes := runningNodes(t, datapath.ModeVXLAN, AttachTCX)
	n := nodes[0]
	dp := n.dp.(*Datapath)
	for _, a := range attachments(t, n) {
		if a.Interface == "vethpod" && (a.Hook != "ingress" || a.Program != weftProgWeftVethIngress) {
			t.Errorf("vethpod attachment %+v, want %s at ingress", a, weftProgWeftVethIngress)
		}
	}
	waitPin(t, n, "vethpod", true)

	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	must(t, err)
	defer stats.Close()
	bridgeRuns, vethRuns := runCount(t, dp.objs.WeftPodIngress), runCount(t, dp.objs.WeftVethIngress)
	tx := counter(t, n, BackendVXLAN, "tx")
	checkFastPath(t, nodes, BackendVXLAN)
	bridgeRuns = runCount(t, dp.objs.WeftPodIngress) - bridgeRuns
	vethRuns = runCount(t, dp.objs.WeftVethIngress) - vethRuns
	tx = counter(t, n, BackendVXLAN, "tx") - tx
	t.Logf("runs: veth %d, bridge ingress %d; encapsulated %d", vethRuns, bridgeRuns, tx)
	// The bridge sees only what the veth passes (ARP, pings, handshakes,
	// a flow's first packets until its entry is liberal): far fewer. A
	// frame or two the veth passed before the first read reach the bridge
	// after it, hence the slack.
	const slack = 4
	if vethRuns < tx || bridgeRuns > vethRuns-tx+slack || 4*bridgeRuns > tx {
		t.Errorf("veth program ran %d times, bridge ingress %d, for %d encapsulated packets: "+
			"want the veth to run for each and the bridge for a few others", vethRuns, bridgeRuns, tx)
	}

	// A second pod on the same bridge: attached on appearance, and bridged
	// traffic between the two pods is left alone.
	second := n.addSecondPod(t, "1450")
	waitPin(t, n, "vethpod2", true)
	tx = counter(t, n, BackendVXLAN, "tx")
	waitPing(t, n.pod, second.podIP)
	pingSeries(t, second.pod, n.podIP, 20, "0.05")
	tcpTransfer(t, n, second, 4<<20)
	if d := counter(t, n, BackendVXLAN, "tx") - tx; d != 0 {
		t.Errorf("%d packets between pods on one bridge were encapsulated", d)
	}
	pingSeries(t, second.pod, nodes[1].podIP, 20, "0.05")

	// Deleting the pod's veth removes its pin (watcher or next Sync).
	n.ns.MustRun(t, "ip", "link", "del", "vethpod2")
	waitPin(t, n, "vethpod2", false)
	must(t, dp.Sync(context.Background(), []datapath.Peer{{Subnet: nodes[1].subnet, NodeIP: nodes[1].node.NodeIP, VtepMAC: nodes[1].info.VtepMAC}}))
	if _, err := os.Stat(filepath.Join(n.bpfDir, linkPinPrefix+"vethpod_ingress")); err != nil {
		t.Errorf("live veth's pin: %v", err)
	}
	if _, err := os.Stat(filepath.Join(n.bpfDir, linkPinPrefix+"vethpod2_ingress")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("deleted veth's pin: %v, want none", err)
	}
}

package k8s

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// minProbes is how many times each probe of every workload pod must have
// run before the fast path is measured.
const minProbes = 3

// fastPathRun is the length of the iperf3 stream whose bytes the
// datapath's counters must show.
const fastPathRun = 3 * time.Second

// Shares of a stream's bytes that tell which path carried it: the path
// that carried it counted at least carriedShare (the counters see the
// pod's frames, headers included: a little more than the payload); the
// other at most strayShare (on the ebpf datapath the kernel path carries a
// flow's handshake and first packets).
const (
	carriedShare = 0.9
	strayShare   = 0.1
)

// carriers are the weft_datapath_bytes_total backends that carry
// cross-node pod traffic on vxlan, by datapath: on ebpf the programs (the
// kernel's vxlan device is the slow path), on kernel the device.
var carriers = map[string]string{"ebpf": "vxlan-ebpf", "kernel": "vxlan-kernel"}

// testProbesAndFastPath: the workload's pods, whose readiness and
// liveness probes (HTTP on the serving port) made them Ready, keep
// passing them (each ran minProbes times; no restart), and then a
// cross-node TCP stream between two of them is counted by the datapath's
// carrier (on ebpf: the fast path) on the sender (tx) and the receiver
// (rx), not by the other backend.
func testProbesAndFastPath(t *testing.T, w *workload) {
	ctx := t.Context()
	for _, p := range w.Pods {
		err := w.c.WaitFor(ctx, minProbes*probePeriod+reachTimeout, fmt.Sprintf("%d probes of each kind on %s", minProbes, p), func(ctx context.Context) error {
			return w.probedWithoutRestart(ctx, p)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	dp := w.c.opts.Datapath
	carrier := carriers[dp]
	var other string
	for d, b := range carriers {
		if d != dp {
			other = b
		}
	}
	sender, receiver := w.Pods[0], w.Pods[1]
	counters := []counter{
		{sender.Node, carrier, "tx"}, {receiver.Node, carrier, "rx"},
		{sender.Node, other, "tx"}, {receiver.Node, other, "rx"},
	}
	before, err := readCounters(ctx, counters)
	if err != nil {
		t.Fatal(err)
	}
	r, err := iperf(ctx, sender, receiver, fastPathRun)
	if err != nil {
		t.Fatal(err)
	}
	after, err := readCounters(ctx, counters)
	if err != nil {
		t.Fatal(err)
	}
	sent := float64(r.Bytes)
	for i, c := range counters {
		share := (after[i] - before[i]) / sent
		t.Logf("%s %s %s: %.1f%% of the %.0f MB stream", c.node.Name, c.backend, c.direction, 100*share, sent/1e6)
		if c.backend == carrier && share < carriedShare {
			t.Errorf("%s: %s %s counted %.1f%% of a %.0f-byte stream %s -> %s, want at least %.0f%%", c.node.Name, c.backend, c.direction, 100*share, sent, sender, receiver, 100*carriedShare)
		}
		if c.backend == other && share > strayShare {
			t.Errorf("%s: %s %s counted %.1f%% of a %.0f-byte stream %s -> %s, want at most %.0f%% off datapath %s's carrier %s", c.node.Name, c.backend, c.direction, 100*share, sent, sender, receiver, 100*strayShare, dp, carrier)
		}
	}
}

// probedWithoutRestart fails unless pod p's netexec has logged at least
// minProbes of each probe's requests (GET /readyz, GET /healthz) and its
// container never restarted.
func (w *workload) probedWithoutRestart(ctx context.Context, p podNet) error {
	pod, err := w.c.Client.CoreV1().Pods(workloadNamespace).Get(ctx, p.Pod.Name, getOptions)
	if err != nil {
		return err
	}
	for _, s := range pod.Status.ContainerStatuses {
		if s.RestartCount != 0 {
			return fmt.Errorf("container %s of %s restarted %d times", s.Name, p, s.RestartCount)
		}
	}
	logs, err := w.c.Kubectl(ctx, "logs", "-n", workloadNamespace, p.Pod.Name)
	if err != nil {
		return err
	}
	var errs []error
	for _, path := range []string{"/readyz", "/healthz"} {
		if n := strings.Count(logs, "GET "+path+"\n"); n < minProbes {
			errs = append(errs, fmt.Errorf("%s requested %d times", path, n))
		}
	}
	return errors.Join(errs...)
}

// counter is one weft_datapath_bytes_total series of a node.
type counter struct {
	node      *Node
	backend   string
	direction string
}

// readCounters reads each counter from its node's weftd.
func readCounters(ctx context.Context, cs []counter) ([]float64, error) {
	out := make([]float64, len(cs))
	for i, c := range cs {
		v, err := c.node.WeftMetric(ctx, "weft_datapath_bytes_total", `backend="`+c.backend+`"`, `direction="`+c.direction+`"`)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

package k8s

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weftnet/weft/pkg/subnetfile"
)

const (
	// subnetFile is deploy/weft.yaml's subnet file on every node (the
	// conflist's subnetFile; weftd's default).
	subnetFile = "/run/weft/subnet.env"
	// rolloutTimeout bounds a rolling restart of weft's DaemonSet.
	rolloutTimeout = 5 * time.Minute
	// livePingInterval is the live ping's interval: ping -i 0.01.
	livePingInterval = "0.01"
	// afterRollout is how many more replies the live ping must get after
	// the rollout before it stops: traffic still flows through the new
	// weftds.
	afterRollout = 200
)

// testRolloutRestart: `kubectl rollout restart` of weft's DaemonSet while a
// pod pings a pod on another node every 10 ms. Every node's weft pod is
// replaced, every node keeps its subnet (FLANNEL_SUBNET unchanged, still
// its podCIDR) and not one ping is lost.
func testRolloutRestart(t *testing.T, w *workload) {
	c, ctx := w.c, t.Context()
	subnets := nodeSubnets(t, c)
	oldPods := weftPods(t, c)
	from, to := w.Pods[0], w.Pods[1]
	if err := reach(ctx, from, to); err != nil {
		t.Fatal(err)
	}
	p, err := startLivePing(ctx, from, to.IP)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	if err := p.waitReplies(ctx, afterRollout); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.Kubectl(ctx, "rollout", "restart", "daemonset/weft", "-n", WeftNamespace); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kubectl(ctx, "rollout", "status", "daemonset/weft", "-n", WeftNamespace, "--timeout="+rolloutTimeout.String()); err != nil {
		t.Fatal(err)
	}
	t.Logf("weft rolled out on %d nodes in %v", len(c.Nodes), time.Since(start).Round(time.Millisecond))
	if err := c.WaitWeftReady(ctx); err != nil {
		t.Fatal(err)
	}
	for node, pod := range weftPods(t, c) {
		if pod == oldPods[node] {
			t.Errorf("weft pod %s on %s was not replaced", pod, node)
		}
	}
	if err := p.waitReplies(ctx, p.replies()+afterRollout); err != nil {
		t.Fatal(err)
	}
	res, err := p.stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ping %s -> %s every 10 ms during the rollout: %d sent, %d answered", from, to, res.sent, res.received)
	if len(res.lost) > 0 {
		t.Errorf("ping %s -> %s lost %d of %d probes during the rollout: icmp_seq %s", from, to, len(res.lost), res.sent, seqRanges(res.lost))
	}
	for node, subnet := range nodeSubnets(t, c) {
		if subnet != subnets[node] {
			t.Errorf("%s: FLANNEL_SUBNET %s before the rollout, %s after", node, subnets[node], subnet)
		}
	}
}

// nodeSubnets reads every node's subnet file (FLANNEL_SUBNET) and checks
// it holds the node's podCIDR.
func nodeSubnets(t *testing.T, c *Cluster) map[string]netip.Prefix {
	t.Helper()
	out := map[string]netip.Prefix{}
	for _, n := range c.Nodes {
		env, err := subnetfile.Read(n.rootPath(subnetFile))
		if err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		node, err := c.Client.CoreV1().Nodes().Get(t.Context(), n.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if env.Subnet.String() != node.Spec.PodCIDR {
			t.Errorf("%s: FLANNEL_SUBNET %s, podCIDR %s", n.Name, env.Subnet, node.Spec.PodCIDR)
		}
		out[n.Name] = env.Subnet
	}
	return out
}

// rootPath is path in the node's mount namespace as the machine reaches
// it: through the root of the node's PID-namespace init.
func (n *Node) rootPath(path string) string { return fmt.Sprintf("/proc/%d/root%s", n.initPID, path) }

// weftPods returns the UID of weft's pod on each node, by node name.
func weftPods(t *testing.T, c *Cluster) map[string]types.UID {
	t.Helper()
	list, err := c.Client.CoreV1().Pods(WeftNamespace).List(t.Context(), metav1.ListOptions{LabelSelector: "app=weft"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]types.UID{}
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			out[p.Spec.NodeName] = p.UID
		}
	}
	return out
}

// livePing is `ping -i 0.01` from a pod's network namespace, running until
// stopped, that records which probes were answered.
type livePing struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when ping's output has ended

	mu       sync.Mutex
	answered map[int]bool
	other    []string // every line but the replies: errors and the summary
}

// livePingResult is what a livePing saw.
type livePingResult struct {
	sent, received int
	// lost are the sequence numbers of probes without a reply, the last
	// probe excepted (its reply may have been on its way when ping
	// stopped).
	lost []int
}

var (
	pingReply = regexp.MustCompile(`icmp_seq=(\d+) ttl=`)
	pingSent  = regexp.MustCompile(`(\d+) packets transmitted`)
)

// startLivePing starts pinging to from the pod's network namespace every
// 10 ms.
func startLivePing(ctx context.Context, from podNet, to netip.Addr) (*livePing, error) {
	p := &livePing{done: make(chan struct{}), answered: map[int]bool{}}
	p.cmd = from.command(ctx, "ping", "-n", "-i", livePingInterval, "-W", "1", to.String())
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start ping in %s: %w", from, err)
	}
	go func() {
		defer close(p.done)
		s := bufio.NewScanner(out)
		for s.Scan() {
			p.mu.Lock()
			if m := pingReply.FindStringSubmatch(s.Text()); m != nil {
				seq, _ := strconv.Atoi(m[1])
				p.answered[seq] = true
			} else {
				p.other = append(p.other, s.Text())
			}
			p.mu.Unlock()
		}
	}()
	return p, nil
}

// replies is how many probes have been answered so far.
func (p *livePing) replies() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.answered)
}

// livePingTimeout bounds the wait for the live ping's replies.
const livePingTimeout = 30 * time.Second

// waitReplies waits until n probes have been answered.
func (p *livePing) waitReplies(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, livePingTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for p.replies() < n {
		select {
		case <-p.done:
			return fmt.Errorf("ping ended after %d replies: %s", p.replies(), p.otherLines())
		case <-ctx.Done():
			return fmt.Errorf("ping: %d replies, want %d: %w", p.replies(), n, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

func (p *livePing) otherLines() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.other, "\n")
}

// stop interrupts ping (SIGINT: it prints its summary) and returns what it
// saw. A second call returns an error.
func (p *livePing) stop() (livePingResult, error) {
	var r livePingResult
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		return r, fmt.Errorf("stop ping: %w", err)
	}
	select {
	case <-p.done:
	case <-time.After(livePingTimeout):
		return r, errors.New("ping did not stop on SIGINT")
	}
	p.cmd.Wait() // the exit status says whether replies were missing: the summary tells more
	p.mu.Lock()
	defer p.mu.Unlock()
	m := pingSent.FindStringSubmatch(strings.Join(p.other, "\n"))
	if m == nil {
		return r, fmt.Errorf("ping printed no summary: %s", strings.Join(p.other, "\n"))
	}
	r.sent, _ = strconv.Atoi(m[1])
	r.received = len(p.answered)
	for seq := 1; seq < r.sent; seq++ {
		if !p.answered[seq] {
			r.lost = append(r.lost, seq)
		}
	}
	return r, nil
}

// seqRanges writes sorted sequence numbers as ranges: "3-7, 12".
func seqRanges(seqs []int) string {
	var parts []string
	for i := 0; i < len(seqs); {
		j := i
		for j+1 < len(seqs) && seqs[j+1] == seqs[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.Itoa(seqs[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", seqs[i], seqs[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}

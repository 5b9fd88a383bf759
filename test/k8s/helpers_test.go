package k8s

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weftnet/weft/test/cluster"
)

// reachTimeout bounds the wait for a path through the cluster to work
// (a new pod's first packets, kube-proxy's rules for a new Service).
const reachTimeout = 30 * time.Second

// podNet is a pod's network namespace, entered from the machine: the
// host's programs (ping, curl, iperf3, ss) run in it, since the test
// images have no shell or tools.
type podNet struct {
	// Pod is the pod as listed when the podNet was made.
	Pod corev1.Pod
	// Node is the node the pod runs on.
	Node *Node
	// IP is the pod's IPv4 address.
	IP netip.Addr
	// Path is the pod's network namespace file, reached through the
	// node's mount namespace (/proc/<node init>/root/run/netns/cni-...).
	Path string
}

// netnsDir is the node's /run/netns (where containerd's CNI keeps the
// pods' network namespaces) as the machine reaches it: through the root
// of the node's PID-namespace init, which lives in the node's mount
// namespace.
func (n *Node) netnsDir() string { return fmt.Sprintf("/proc/%d/root/run/netns", n.initPID) }

// podNetOf finds pod's node and, in the node's /run/netns, the network
// namespace that holds the pod's IP.
func (c *Cluster) podNetOf(pod corev1.Pod) (podNet, error) {
	p := podNet{Pod: pod}
	i := slices.IndexFunc(c.Nodes, func(n *Node) bool { return n.Name == pod.Spec.NodeName })
	if i < 0 {
		return p, fmt.Errorf("pod %s runs on %q, not a node of the cluster", pod.Name, pod.Spec.NodeName)
	}
	p.Node = c.Nodes[i]
	ip, err := netip.ParseAddr(pod.Status.PodIP)
	if err != nil {
		return p, fmt.Errorf("pod %s: IP %q: %w", pod.Name, pod.Status.PodIP, err)
	}
	p.IP = ip
	dir := p.Node.netnsDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return p, fmt.Errorf("pod %s: %w", pod.Name, err)
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		has, err := netnsHasAddr(path, ip)
		if err != nil {
			return p, fmt.Errorf("pod %s: %w", pod.Name, err)
		}
		if has {
			p.Path = path
			return p, nil
		}
	}
	return p, fmt.Errorf("pod %s: no network namespace in %s of %s has %s", pod.Name, dir, p.Node.Name, ip)
}

// netnsHasAddr reports whether the network namespace at path has the
// IPv4 address ip.
func netnsHasAddr(path string, ip netip.Addr) (bool, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return false, fmt.Errorf("open netns %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return false, fmt.Errorf("netlink in %s: %w", path, err)
	}
	defer h.Close()
	addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return false, fmt.Errorf("addresses in %s: %w", path, err)
	}
	return slices.ContainsFunc(addrs, func(a netlink.Addr) bool {
		got, ok := netip.AddrFromSlice(a.IP.To4())
		return ok && got == ip
	}), nil
}

// String names the pod and its node, for messages.
func (p podNet) String() string { return fmt.Sprintf("%s (%s on %s)", p.Pod.Name, p.IP, p.Node.Name) }

// command returns a command that runs the host's program name in the
// pod's network namespace (and the machine's other namespaces).
func (p podNet) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + p.Path, "--", name}, args...)...)
}

// exec runs the host's program name in the pod's network namespace and
// returns its standard output.
func (p podNet) exec(ctx context.Context, name string, args ...string) (string, error) {
	return runCommand(p.command(ctx, name, args...), "", name+" in pod "+p.Pod.Name+":")
}

// ping sends count pings from the pod to `to` and fails unless every one
// was answered.
func (p podNet) ping(ctx context.Context, to netip.Addr, count int) error {
	out, err := p.exec(ctx, "ping", "-n", "-q", "-c", strconv.Itoa(count), "-i", "0.2", "-W", "2", to.String())
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	if !strings.Contains(out, " 0% packet loss") {
		return fmt.Errorf("ping %s from %s lost packets: %s", to, p, out)
	}
	return nil
}

// podHTTPTimeout bounds one request of httpGet (seconds): longer than netexec's own
// timeout for the requests of its /dial endpoint (5 s), so that /dial
// reports their errors.
const podHTTPTimeout = "10"

// httpGet fetches url from the pod's network namespace (curl) and returns
// the body; an HTTP error status is an error.
func (p podNet) httpGet(ctx context.Context, url string) (string, error) {
	return p.exec(ctx, "curl", "-sS", "--fail", "--max-time", podHTTPTimeout, url)
}

// workloadNamespace holds the test workload (testdata/netexec.yaml).
const workloadNamespace = "weft-e2e"

// workloadSelector selects the workload's pods.
const workloadSelector = "app=netexec"

// probePeriod is the workload's readiness and liveness probe period.
const probePeriod = time.Second

//go:embed testdata/netexec.yaml
var netexecManifest string

// workload is the test workload on a cluster: agnhost netexec, one pod per
// node, behind the NodePort Service netexec.
type workload struct {
	c *Cluster
	// Pods are the workload's pods, Pods[i] on c.Nodes[i].
	Pods []podNet
	// Service is the Service netexec (NodePort, with a ClusterIP).
	Service *corev1.Service
}

// deployWorkload applies testdata/netexec.yaml with one replica per node
// and waits until every pod is Ready.
func deployWorkload(t *testing.T, c *Cluster) *workload {
	t.Helper()
	err := c.ApplyTemplate(t.Context(), "testdata/netexec.yaml", netexecManifest, map[string]any{
		"Namespace": workloadNamespace, "Image": c.opts.Components.Images.Agnhost.Ref,
		"Port": netexecPort, "Replicas": len(c.Nodes), "ProbePeriod": int(probePeriod.Seconds()),
	})
	if err != nil {
		t.Fatal(err)
	}
	w := &workload{c: c}
	if w.Service, err = c.Client.CoreV1().Services(workloadNamespace).Get(t.Context(), "netexec", getOptions); err != nil {
		t.Fatal(err)
	}
	w.waitReady(t)
	return w
}

// waitReady waits until the workload has one Ready pod per node, none of
// them one of the pods gone (deleted), and sets Pods.
func (w *workload) waitReady(t *testing.T, gone ...types.UID) {
	t.Helper()
	start := time.Now()
	err := w.c.WaitFor(t.Context(), podsTimeout, "a Ready netexec pod on every node", func(ctx context.Context) error {
		list, err := w.c.Client.CoreV1().Pods(workloadNamespace).List(ctx, metav1.ListOptions{LabelSelector: workloadSelector})
		if err != nil {
			return err
		}
		pods := make([]podNet, len(w.c.Nodes))
		var errs []error
		for i, n := range w.c.Nodes {
			j := slices.IndexFunc(list.Items, func(p corev1.Pod) bool {
				return p.Spec.NodeName == n.Name && PodReady(&p) && p.DeletionTimestamp == nil && !slices.Contains(gone, p.UID)
			})
			if j < 0 {
				errs = append(errs, fmt.Errorf("no Ready pod on %s", n.Name))
				continue
			}
			if pods[i], err = w.c.podNetOf(list.Items[j]); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		w.Pods = pods
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("netexec Ready on every node in %v", time.Since(start).Round(time.Millisecond))
}

// iperfPort is iperf3's server port in the server's pod.
const iperfPort = "5201"

// iperfResult is what one iperf3 run measured.
type iperfResult struct {
	// Bytes is how many bytes of payload the server received.
	Bytes int64
	// Gbps is the server's receiving rate in Gbit/s.
	Gbps float64
}

// iperf runs an iperf3 server in server's pod and a client in client's
// pod, sending to the server for d (TCP), and returns what the server
// received.
func iperf(ctx context.Context, client, server podNet, d time.Duration) (iperfResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d+time.Minute)
	defer cancel()
	srv := server.command(ctx, "iperf3", "-s", "-1", "-p", iperfPort)
	var srvOut bytes.Buffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		return iperfResult{}, fmt.Errorf("start iperf3 server in %s: %w", server, err)
	}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Wait() }()
	defer func() {
		cancel() // kills the server if the client never came
		<-srvDone
	}()
	err := cluster.Eventually(ctx, 10*time.Second, "iperf3 server listening in "+server.String(), func() error {
		out, err := server.exec(ctx, "ss", "-Hltn", "sport = :"+iperfPort)
		if err == nil && strings.TrimSpace(out) == "" {
			err = errors.New("not listening yet")
		}
		return err
	})
	if err != nil {
		return iperfResult{}, fmt.Errorf("%w: %s", err, srvOut.String())
	}
	out, err := client.exec(ctx, "iperf3", "-J", "-c", server.IP.String(), "-p", iperfPort, "-t", strconv.Itoa(int(d.Seconds())))
	if err != nil {
		return iperfResult{}, fmt.Errorf("iperf3 %s -> %s: %w: %s", client, server, err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				Bytes         int64   `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return iperfResult{}, fmt.Errorf("iperf3 %s -> %s: output: %w", client, server, err)
	}
	if r.Error != "" || r.End.SumReceived.Bytes == 0 {
		return iperfResult{}, fmt.Errorf("iperf3 %s -> %s: nothing received (%s)", client, server, r.Error)
	}
	return iperfResult{Bytes: r.End.SumReceived.Bytes, Gbps: r.End.SumReceived.BitsPerSecond / 1e9}, nil
}

// Command demo-k8s brings up a real Kubernetes cluster in network
// namespaces (test/k8s: control plane, nodes running containerd, a kubelet
// and kube-proxy, CoreDNS) with weft installed from deploy/ as a user
// installs it, deploys agnhost netexec spread over the nodes behind a
// Service, and prints what a user looks at: the nodes, the pods and their
// IPs per node, requests through the Service from a pod on every node (and
// which pod answered), and each node's per-backend datapath counters. It
// tears everything down when done, also on Ctrl-C.
// `make demo-k8s` runs it as root after building the binaries.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/test/cluster"
	"github.com/weftnet/weft/test/k8s"
)

//go:embed echo.yaml
var echoManifest string

const (
	// namespace holds the demo's workload.
	namespace = "weft-demo"
	// service is the workload's Service (and Deployment), echo.yaml.
	service = "echo"
	// podPort is netexec's HTTP port in the workload's pods.
	podPort = 8080
	// podsTimeout bounds the workload's pods turning Ready.
	podsTimeout = 2 * time.Minute
)

func main() {
	nodes := flag.Int("nodes", 3, "number of nodes (at least 3)")
	datapath := flag.String("datapath", "ebpf", "weft's datapath (net-conf.json's Backend.Datapath): ebpf or kernel")
	requests := flag.Int("requests", 6, "requests through the Service from the pod on each node")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo-k8s: must run as root (it creates namespaces, cgroups and mounts, and runs kubelets): sudo make demo-k8s")
		os.Exit(1)
	}
	if *requests < 1 {
		fmt.Fprintln(os.Stderr, "demo-k8s: -requests must be at least 1")
		os.Exit(2)
	}
	cluster.CloseOnInterrupt()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	slog.SetDefault(log)
	ctx := context.Background()
	comp, err := k8s.BuildComponents(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo-k8s:", err)
		os.Exit(1)
	}
	opts := k8s.Options{Components: comp, Nodes: *nodes, Datapath: *datapath, Log: log}
	if err := run(ctx, opts, *requests); err != nil {
		fmt.Fprintln(os.Stderr, "demo-k8s:", err)
		os.Exit(1)
	}
}

// run brings the cluster up, shows it (with a diagnosis if that fails)
// and tears it down.
func run(ctx context.Context, opts k8s.Options, requests int) error {
	start := time.Now()
	c, err := k8s.New(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Printf("\nKubernetes %s cluster with weft (datapath %s) up in %v: %s\n",
		opts.Components.Version, opts.Datapath, time.Since(start).Round(time.Millisecond), c.TimingSummary())
	err = show(ctx, c, opts, requests)
	if err != nil {
		fmt.Fprintln(os.Stderr, c.Diagnose(ctx))
	}
	return errors.Join(err, c.Close())
}

// show prints the nodes, deploys the workload, and prints its pods,
// requests through its Service and weft's counters.
func show(ctx context.Context, c *k8s.Cluster, opts k8s.Options, requests int) error {
	if err := printNodes(ctx, c); err != nil {
		return err
	}
	data := map[string]any{"Namespace": namespace, "Image": opts.Components.Images.Agnhost.Ref, "Replicas": len(c.Nodes)}
	if err := c.ApplyTemplate(ctx, "echo.yaml", echoManifest, data); err != nil {
		return err
	}
	pods, err := c.WaitPodsReady(ctx, namespace, "app="+service, len(c.Nodes), podsTimeout)
	if err != nil {
		return err
	}
	slices.SortFunc(pods, func(a, b corev1.Pod) int { return strings.Compare(a.Spec.NodeName+a.Name, b.Spec.NodeName+b.Name) })
	if err := printPods(pods); err != nil {
		return err
	}
	if err := printRequests(ctx, c, pods, requests); err != nil {
		return err
	}
	return printCounters(ctx, c, opts.Datapath)
}

// printNodes shows each node as kubectl get nodes would, with its podCIDR.
func printNodes(ctx context.Context, c *k8s.Cluster) error {
	list, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "\nNODE\tSTATUS\tINTERNAL-IP\tPOD CIDR\tKUBELET\tRUNTIME")
	for _, n := range list.Items {
		status := "NotReady"
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				status = "Ready"
			}
		}
		var ip string
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ip = a.Address
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, status, ip, n.Spec.PodCIDR, n.Status.NodeInfo.KubeletVersion, n.Status.NodeInfo.ContainerRuntimeVersion)
	}
	return w.Flush()
}

// printPods shows the workload's pods with their nodes and IPs.
func printPods(pods []corev1.Pod) error {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "\nNODE\tPOD (%s/%s)\tIP\tREADY\n", namespace, service)
	for _, p := range pods {
		fmt.Fprintf(w, "%s\t%s\t%s\t%v\n", p.Spec.NodeName, p.Name, p.Status.PodIP, k8s.PodReady(&p))
	}
	return w.Flush()
}

// dialResult is netexec's /dial answer: what each request returned.
type dialResult struct {
	Responses []string `json:"responses"`
	Errors    []string `json:"errors"`
}

// printRequests makes every workload pod send requests requests to the
// Service by its DNS name (netexec's /dial, asked from the pod's node)
// and shows which pod answered each and whether the request crossed
// nodes; it fails if a request failed.
func printRequests(ctx context.Context, c *k8s.Cluster, pods []corev1.Pod, requests int) error {
	nodeOf := map[string]string{}
	for _, p := range pods {
		nodeOf[p.Name] = p.Spec.NodeName
	}
	host := service + "." + namespace + ".svc.cluster.local"
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "\nFROM POD\tFROM NODE\tTO\tANSWERED BY\tON NODE\tREQUESTS\n")
	var failed int
	for _, p := range pods {
		q := url.Values{"request": {"hostname"}, "protocol": {"http"}, "host": {host}, "port": {"80"}, "tries": {strconv.Itoa(requests)}}
		body, err := nodeNamed(c, p.Spec.NodeName).HTTPGet(ctx, fmt.Sprintf("http://%s:%d/dial?%s", p.Status.PodIP, podPort, q.Encode()))
		if err != nil {
			return err
		}
		var r dialResult
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			return fmt.Errorf("netexec /dial in %s: %w: %s", p.Name, err, body)
		}
		counts := map[string]int{}
		for _, answer := range r.Responses {
			counts[answer]++
		}
		for _, answer := range slices.Sorted(maps.Keys(counts)) {
			cross := "same node"
			if nodeOf[answer] != p.Spec.NodeName {
				cross = "cross-node"
			}
			fmt.Fprintf(w, "%s\t%s\t%s:80\t%s\t%s (%s)\t%d\n", p.Name, p.Spec.NodeName, service, answer, nodeOf[answer], cross, counts[answer])
		}
		for _, e := range r.Errors {
			fmt.Fprintf(w, "%s\t%s\t%s:80\tFAILED: %s\t\t\n", p.Name, p.Spec.NodeName, service, e)
			failed++
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d requests through Service %s failed", failed, service)
	}
	return nil
}

// nodeNamed returns the cluster's node called name.
func nodeNamed(c *k8s.Cluster, name string) *k8s.Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// counter is one row of weftctl counters -o json.
type counter struct {
	Backend   string `json:"backend"`
	Direction string `json:"direction"`
	Reason    string `json:"reason"`
	Packets   uint64 `json:"packets"`
	Bytes     uint64 `json:"bytes"`
}

// printCounters shows, per node, the packets and bytes each backend of
// weft's datapath carried and dropped (weftctl counters in the node's weft
// pod; the values of weft_datapath_packets_total and
// weft_datapath_drops_total): which path carried the requests.
func printCounters(ctx context.Context, c *k8s.Cluster, datapath string) error {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "\nNODE\tWEFT POD\tBACKEND\tDIRECTION / DROP REASON\tPACKETS\tBYTES")
	for _, n := range c.Nodes {
		pod, err := c.WeftPod(ctx, n.Name)
		if err != nil {
			return err
		}
		out, err := c.Exec(ctx, k8s.WeftNamespace, pod, "weftd", k8s.Weftctl, "counters", "-o", "json")
		if err != nil {
			return err
		}
		var r struct {
			Counters []counter `json:"counters"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			return fmt.Errorf("weftctl counters on %s: %w: %s", n.Name, err, out)
		}
		for _, ct := range r.Counters {
			if ct.Packets == 0 {
				continue
			}
			what := ct.Direction
			if ct.Reason != "" {
				what = "dropped: " + ct.Reason
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\n", n.Name, pod, ct.Backend, what, ct.Packets, ct.Bytes)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if datapath == "ebpf" {
		fmt.Println("(netfilter decides, eBPF forwards: new connections, probes and pings take the kernel path; established flows the eBPF fast path)")
	}
	return nil
}

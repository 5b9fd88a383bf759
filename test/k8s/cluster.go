package k8s

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weftnet/weft/test/cluster"
	"github.com/weftnet/weft/test/kubetest"
	"github.com/weftnet/weft/test/testns"
)

// Addresses. The underlay is one segment, 10.250.0.0/24 on bridge br0 in
// the infra namespace, which owns InfraIP; node i (0-based) is
// 10.250.0.<i+1> on its eth0, with a default route to InfraIP (which
// routes nowhere else). The pod and Service ranges are kubeadm's with
// --pod-network-cidr=10.244.0.0/16, deploy/weft.yaml's Network.
var (
	// InfraIP is the infra namespace's underlay address: the API server's.
	InfraIP = netip.MustParseAddr("10.250.0.254")
	// ClusterCIDR is kube-controller-manager's --cluster-cidr.
	ClusterCIDR = netip.MustParsePrefix("10.244.0.0/16")
	// ServiceCIDR is the API server's --service-cluster-ip-range.
	ServiceCIDR = netip.MustParsePrefix("10.96.0.0/16")
	// APIServiceIP is the ClusterIP of Service default/kubernetes.
	APIServiceIP = netip.MustParseAddr("10.96.0.1")
	// DNSServiceIP is the ClusterIP of Service kube-system/kube-dns, the
	// kubelets' clusterDNS.
	DNSServiceIP = netip.MustParseAddr("10.96.0.10")
)

const (
	underlayPrefixLen = 24
	underlayBridge    = "br0"
	// nodeCIDRMaskSize is the size of each node's podCIDR.
	nodeCIDRMaskSize = 24
	// minNodes is the smallest cluster: enough for traffic across nodes
	// both ways and a node to drain.
	minNodes = 3
)

// Datapaths and kube-proxy modes the harness runs.
var (
	datapaths      = []string{"ebpf", "kernel"}
	kubeProxyModes = []string{"iptables", "nftables"}
)

// Options describe a cluster.
type Options struct {
	// Components are the programs and images the cluster runs (see
	// BuildComponents).
	Components Components
	// Nodes is the number of nodes (default and minimum 3).
	Nodes int
	// Datapath is net-conf.json's Backend.Datapath: "ebpf" (default) or
	// "kernel".
	Datapath string
	// KubeProxyMode is kube-proxy's mode: "iptables" (default) or
	// "nftables".
	KubeProxyMode string
	// Deploy is the directory of weft's kustomization (default: deploy/ of
	// the repository above the working directory).
	Deploy string
	// Log receives the harness's progress; nil discards it.
	Log *slog.Logger
}

// Cluster is a running Kubernetes cluster in namespaces. Close (or the
// test's cleanup) removes all of it.
type Cluster struct {
	// Prefix starts every namespace name and cgroup (testns.Prefix).
	Prefix string
	// Dir holds the PKI, configurations, logs and every node's state.
	Dir string
	// Infra is the namespace of the underlay bridge and the control plane.
	Infra *cluster.Netns
	// Nodes are the nodes, n1 first.
	Nodes []*Node
	// AdminKubeconfig authenticates as a cluster admin (system:masters).
	// Its server is reachable only from the infra namespace: use Kubectl.
	AdminKubeconfig string
	// Client is a cluster-admin client that dials from the infra namespace.
	Client kubernetes.Interface
	// Timings are the durations of the phases of Start, in order.
	Timings []Timing

	opts    Options
	log     *slog.Logger
	pki     *kubetest.PKI
	daemons []*daemon // the control plane
	undo    cluster.Undo
}

// Timing is how long one phase of bringing the cluster up took.
type Timing struct {
	Phase    string
	Duration time.Duration
}

// New builds and starts a cluster with weft and CoreDNS and waits until
// every node is Ready; on error it removes what it had built.
func New(ctx context.Context, opts Options) (*Cluster, error) {
	c, err := newCluster(opts)
	if err != nil {
		return nil, err
	}
	if err := c.build(ctx); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

// newCluster checks opts, fills their defaults and returns an empty
// cluster that CloseOnInterrupt closes.
func newCluster(opts Options) (*Cluster, error) {
	if err := opts.complete(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the Kubernetes cluster needs root: run as root (e.g. sudo)")
	}
	c := &Cluster{Prefix: testns.Prefix(), opts: opts, log: opts.Log}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	cluster.Track(c, c.Prefix)
	return c, nil
}

// complete checks the options and fills in their defaults.
func (opts *Options) complete() error {
	if opts.Nodes == 0 {
		opts.Nodes = minNodes
	}
	if opts.Nodes < minNodes || opts.Nodes > 250 {
		return fmt.Errorf("Nodes = %d: want %d to 250", opts.Nodes, minNodes)
	}
	if err := oneOf("Datapath", &opts.Datapath, datapaths); err != nil {
		return err
	}
	if err := oneOf("KubeProxyMode", &opts.KubeProxyMode, kubeProxyModes); err != nil {
		return err
	}
	if err := opts.Components.check(); err != nil {
		return err
	}
	if opts.Deploy == "" {
		dir, err := kubetest.FindRepoRoot()
		if err != nil {
			return fmt.Errorf("find deploy/: %w", err)
		}
		opts.Deploy = filepath.Join(dir, "deploy")
	}
	return nil
}

// oneOf checks that *v is one of allowed, setting it to the first when
// empty.
func oneOf(name string, v *string, allowed []string) error {
	if *v == "" {
		*v = allowed[0]
		return nil
	}
	for _, a := range allowed {
		if *v == a {
			return nil
		}
	}
	return fmt.Errorf("%s %q: want one of %v", name, *v, allowed)
}

// phase runs f as the named phase of the build and records its duration.
func (c *Cluster) phase(name string, f func() error) error {
	start := time.Now()
	if err := f(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	d := time.Since(start)
	c.Timings = append(c.Timings, Timing{Phase: name, Duration: d})
	c.log.Info("phase done", "phase", name, "took", d.Round(time.Millisecond))
	return nil
}

func (c *Cluster) build(ctx context.Context) error {
	err := c.add(func() error {
		dir, err := os.MkdirTemp("", c.Prefix)
		c.Dir = dir
		return err
	}, func() error { return os.RemoveAll(c.Dir) })
	if err != nil {
		return fmt.Errorf("create cluster dir: %w", err)
	}
	phases := []struct {
		name string
		f    func(context.Context) error
	}{
		{"control plane", c.startControlPlane},
		{"nodes", c.startNodes},
		{"nodes registered", c.waitNodesRegistered},
		{"weft installed", c.installWeft},
		{"weft ready", c.WaitWeftReady},
		{"nodes ready", c.WaitNodesReady},
		{"CoreDNS ready", c.installCoreDNS},
	}
	for _, p := range phases {
		if err := c.phase(p.name, func() error { return p.f(ctx) }); err != nil {
			return err
		}
	}
	return nil
}

// startNodes builds and starts every node, all at once.
func (c *Cluster) startNodes(ctx context.Context) error {
	c.Nodes = make([]*Node, c.opts.Nodes)
	errs := make([]error, c.opts.Nodes)
	var wg sync.WaitGroup
	for i := range c.opts.Nodes {
		wg.Go(func() { c.Nodes[i], errs[i] = c.startNode(ctx, i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// add runs create and remembers undo for Close (see cluster.Undo.Add).
func (c *Cluster) add(create, undo func() error) error { return c.undo.Add(create, undo) }

// Close stops every node and the control plane and removes every
// namespace, cgroup and file of the cluster. It is safe to call more than
// once.
func (c *Cluster) Close() error {
	cluster.Untrack(c)
	return c.undo.Close()
}

// adminClient makes Client from AdminKubeconfig, dialing from the infra
// namespace.
func (c *Cluster) adminClient() error {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig)
	if err != nil {
		return fmt.Errorf("admin client config: %w", err)
	}
	cfg.Dial = c.Infra.DialContext
	cfg.QPS, cfg.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	c.Client = cs
	return nil
}

// Kubectl runs kubectl with the admin kubeconfig in the infra namespace and
// returns its standard output; the error carries its standard error.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	return c.KubectlInput(ctx, "", args...)
}

// KubectlInput is Kubectl with stdin as kubectl's standard input (e.g. a
// manifest for `apply -f -`).
func (c *Cluster) KubectlInput(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := c.Infra.Command(ctx, c.opts.Components.Kubectl, append([]string{"--kubeconfig", c.AdminKubeconfig}, args...)...)
	cmd.Env = c.env()
	return runCommand(cmd, stdin, "kubectl")
}

// daemon is one long-running process of the cluster, with its log.
type daemon struct {
	name string
	log  string
	p    *cluster.Process
}

// startDaemon starts cmd as the daemon name, logging to dir/name.log, and
// stops it (SIGTERM, then SIGKILL) at Close.
func (c *Cluster) startDaemon(name, dir string, cmd *exec.Cmd) (*daemon, error) {
	d := &daemon{name: name, log: filepath.Join(dir, name+".log")}
	cmd.Env = c.env()
	err := c.add(func() error {
		p, err := cluster.StartProcess(cmd, d.log)
		d.p = p
		return err
	}, func() error { return d.stop() })
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c.log.Info("started", "daemon", name, "pid", d.p.PID())
	return d, nil
}

// stop ends the daemon gracefully (SIGTERM, SIGKILL after a timeout).
func (d *daemon) stop() error {
	if d.p == nil {
		return nil
	}
	if err := d.p.Stop(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop %s: %w", d.name, err)
	}
	return nil
}

// alive fails if the daemon has exited, naming its log.
func (d *daemon) alive() error {
	if done, err := d.p.Exited(); done {
		return fmt.Errorf("%s exited (%v); log %s:\n%s", d.name, err, d.log, logTail(d.log, 20))
	}
	return nil
}

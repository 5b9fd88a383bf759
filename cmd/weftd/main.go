// Command weftd is weft's node daemon: it leases this node's pod subnet from
// etcd or Kubernetes, writes the subnet file for the CNI plugin, and keeps the
// datapath (eBPF or kernel) equal to the set of other nodes' leases.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/pkg/backoff"
	"github.com/weftnet/weft/pkg/daemon"
	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/datapath/ebpf"
	"github.com/weftnet/weft/pkg/datapath/kernel"
	"github.com/weftnet/weft/pkg/firewall"
	"github.com/weftnet/weft/pkg/health"
	"github.com/weftnet/weft/pkg/iface"
	"github.com/weftnet/weft/pkg/lease"
	"github.com/weftnet/weft/pkg/lease/etcd"
	"github.com/weftnet/weft/pkg/lease/kube"
	"github.com/weftnet/weft/pkg/metrics"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// gcPercent is weftd's garbage collector target (GOGC) unless the GOGC
// environment variable sets one. weftd's heap is mostly its peer tables,
// which change a little per lease event: collecting at 1.5x the live heap
// instead of Go's default 2x keeps its memory near flannel's at a small
// CPU cost (docs/control-plane.md).
const gcPercent = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	o, err := parseFlags(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		usage(newFlagSet(&options{}))
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "weftd:", err)
		os.Exit(2)
	}
	if o.version {
		fmt.Println("weftd", version)
		return
	}
	if err := setupLogging(o.logLevel); err != nil {
		fmt.Fprintln(os.Stderr, "weftd:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		slog.Error(err.Error())
		os.Exit(1)
	}
}

func setupLogging(level string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})))
	return nil
}

func run(ctx context.Context, o *options) error {
	f := &factory{o: o}
	if o.cleanup {
		return cleanup(ctx, f, o)
	}
	slog.Info("weftd starting", "version", version)
	m := metrics.New(version)
	leases, err := leaseManager(ctx, o, m)
	if err != nil {
		return err
	}
	d := daemon.New(daemon.Config{
		Iface: iface.Options{
			Ifaces: o.ifaces, Regexes: o.ifaceRegexes, CanReach: o.ifaceCanReach,
			PublicIP: o.publicIP, PublicIPv6: o.publicIPv6,
		},
		IPMasq:         o.ipMasq,
		ForwardRules:   o.iptablesForwardRules,
		NoFullyRandom:  o.ipMasqFullyRandomDisable,
		FirewallResync: time.Duration(o.iptablesResync) * time.Second,
		SubnetFile:     o.subnetFile,
		// flannel reads the wireguard key file's path from the environment.
		WireGuardKeyFile: cmp.Or(os.Getenv("WIREGUARD_KEY_FILE"), "/run/flannel/wgkey"),
		Datapath:         o.datapath,
		Datapaths:        f,
		ResyncInterval:   o.resyncInterval,
		Metrics:          m,
	}, leases)
	if o.healthzPort != 0 {
		addr := net.JoinHostPort(o.healthzIP, strconv.Itoa(o.healthzPort))
		srv, err := health.Listen(addr, d.Ready, m.Handler())
		if err != nil {
			return err
		}
		defer srv.Close()
		slog.Info("serving /healthz, /readyz and /metrics", "addr", srv.Addr())
	}
	err = d.Run(ctx)
	if ctx.Err() != nil {
		slog.Info("weftd stopping: datapath left in place for a hitless restart")
		return nil
	}
	return err
}

// leaseManager builds the lease source the flags ask for.
func leaseManager(ctx context.Context, o *options, m *metrics.Metrics) (lease.Manager, error) {
	if o.kubeSubnetMgr {
		return kube.New(ctx, kube.Config{
			Kubeconfig: o.kubeconfigFile, APIURL: o.kubeAPIURL, NodeName: os.Getenv("NODE_NAME"),
			AnnotationPrefix: o.kubeAnnotationPrefix, NetConfPath: o.netConfigPath,
			SetNodeNetworkUnavailable: o.setNodeNetworkUnavailable,
		})
	}
	cfg := etcd.Config{
		Endpoints: strings.Split(o.etcdEndpoints, ","), Prefix: o.etcdPrefix,
		KeyFile: o.etcdKeyfile, CertFile: o.etcdCertfile, CAFile: o.etcdCAFile,
		Username: o.etcdUsername, Password: o.etcdPassword,
		RenewMargin: time.Duration(o.renewMarginMinutes) * time.Minute,
		OnRenew: func(err error) {
			if err != nil {
				m.LeaseRenewFailed()
				return
			}
			m.LeaseRenewed()
		},
	}
	// With credentials the client logs in at once, so etcd being down at
	// start is a transient failure like any other.
	var mgr *etcd.Manager
	err := backoff.Retry(ctx, backoff.Options{What: "connect to etcd"}, func() (err error) {
		mgr, err = etcd.New(cfg)
		return err
	})
	return mgr, err
}

// factory builds the datapaths from the flags.
type factory struct{ o *options }

func (f *factory) Kernel() datapath.Datapath { return kernel.New() }

func (f *factory) EBPF() (datapath.Datapath, error) {
	if err := ebpf.Supported(); err != nil {
		return nil, err
	}
	dp, err := f.newEBPF()
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return dp, nil
}

func (f *factory) BPFDir() string { return f.o.bpfDir }

func (f *factory) EndpointDir() string { return f.o.endpointDir }

// RemoveEBPF removes the eBPF datapath's programs and pins without setting
// it up (so without loading programs), leaving the kernel state alone.
func (f *factory) RemoveEBPF(ctx context.Context) error {
	dp, err := f.newEBPF()
	if err != nil {
		return err
	}
	defer dp.Close()
	return dp.Cleanup(ctx)
}

func (f *factory) newEBPF() (*ebpf.Datapath, error) {
	return ebpf.New(ebpf.Options{BPFDir: f.o.bpfDir, EndpointDir: f.o.endpointDir, Bridge: f.o.bridge, Attach: f.o.tcAttach})
}

// cleanup removes every piece of weft state from this node.
func cleanup(ctx context.Context, f *factory, o *options) error {
	errs := []error{f.RemoveEBPF(ctx), f.Kernel().Cleanup(ctx), firewall.New().Remove(ctx)}
	if err := os.Remove(o.subnetFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove subnet file: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	slog.Info("weft state removed from this node")
	return nil
}

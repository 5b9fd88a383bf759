package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/weftnet/weft/pkg/endpoint"
)

// options are weftd's command line: flanneld's flags with flanneld's names
// and defaults, plus weft's own.
type options struct {
	etcdEndpoints, etcdPrefix                        string
	etcdKeyfile, etcdCertfile, etcdCAFile            string
	etcdUsername, etcdPassword                       string
	kubeSubnetMgr                                    bool
	kubeAPIURL, kubeconfigFile, kubeAnnotationPrefix string
	netConfigPath                                    string
	ifaces, ifaceRegexes                             listFlag
	ifaceCanReach, publicIP, publicIPv6              string
	ipMasq, ipMasqFullyRandomDisable                 bool
	iptablesResync                                   int
	iptablesForwardRules                             bool
	subnetFile                                       string
	renewMarginMinutes                               int
	healthzIP                                        string
	healthzPort                                      int
	setNodeNetworkUnavailable                        bool
	bpfDir, endpointDir, tcAttach, bridge, datapath  string
	resyncInterval                                   time.Duration
	cleanup, version                                 bool
	logLevel                                         string
}

// listFlag is a repeatable string flag; from the environment it takes a
// comma-separated list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("weftd", flag.ContinueOnError)
	// main prints the usage for -h and a bad flag's error, once.
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.etcdEndpoints, "etcd-endpoints", "http://127.0.0.1:2379", "comma-separated list of etcd endpoints")
	fs.StringVar(&o.etcdPrefix, "etcd-prefix", "/coreos.com/network", "etcd prefix of the network config and leases")
	fs.StringVar(&o.etcdKeyfile, "etcd-keyfile", "", "TLS key file for etcd")
	fs.StringVar(&o.etcdCertfile, "etcd-certfile", "", "TLS certificate file for etcd")
	fs.StringVar(&o.etcdCAFile, "etcd-cafile", "", "TLS CA file for etcd")
	fs.StringVar(&o.etcdUsername, "etcd-username", "", "username for etcd authentication")
	fs.StringVar(&o.etcdPassword, "etcd-password", "", "password for etcd authentication")
	fs.BoolVar(&o.kubeSubnetMgr, "kube-subnet-mgr", false, "take the subnet lease from the Kubernetes API (Node.spec.podCIDR) instead of etcd")
	fs.StringVar(&o.kubeAPIURL, "kube-api-url", "", "Kubernetes API server URL (default: in-cluster or kubeconfig)")
	fs.StringVar(&o.kubeconfigFile, "kubeconfig-file", "", "kubeconfig file (default: in-cluster config)")
	fs.StringVar(&o.kubeAnnotationPrefix, "kube-annotation-prefix", "flannel.alpha.coreos.com", "prefix of the Node annotations weft reads and writes")
	fs.StringVar(&o.netConfigPath, "net-config-path", "/etc/kube-flannel/net-conf.json", "net-conf.json path (Kubernetes mode)")
	fs.Var(&o.ifaces, "iface", "interface (name, IPv4 or IPv6 address) for inter-node traffic; repeatable, first match wins")
	fs.Var(&o.ifaceRegexes, "iface-regex", "regex of interface names or IPv4/IPv6 addresses for inter-node traffic; repeatable")
	fs.StringVar(&o.ifaceCanReach, "iface-can-reach", "", "use the interface that routes to this address (IPv4 or IPv6)")
	fs.StringVar(&o.publicIP, "public-ip", "", "IPv4 address peers use to reach this node (default: the interface's address)")
	fs.StringVar(&o.publicIPv6, "public-ipv6", "", "IPv6 address peers use to reach this node with EnableIPv6 (default: the interface's global IPv6 address)")
	fs.BoolVar(&o.ipMasq, "ip-masq", false, "masquerade traffic leaving the pod network")
	fs.BoolVar(&o.ipMasqFullyRandomDisable, "ip-masq-fully-random-disable", false, "masquerade without fully random source ports")
	fs.IntVar(&o.iptablesResync, "iptables-resync", 5, "how often the masquerade and forward rules are checked and repaired, in seconds")
	fs.BoolVar(&o.iptablesForwardRules, "iptables-forward-rules", true, "accept traffic from and to the pod network in the FORWARD chain (needed under a FORWARD policy of DROP, as Docker sets)")
	fs.StringVar(&o.subnetFile, "subnet-file", "/run/weft/subnet.env", "file the node's subnet is written to for the CNI plugin")
	fs.IntVar(&o.renewMarginMinutes, "subnet-lease-renew-margin", 60, "renew the lease this many minutes before it expires (1-1439)")
	fs.StringVar(&o.healthzIP, "healthz-ip", "0.0.0.0", "address of /healthz, /readyz and /metrics")
	fs.IntVar(&o.healthzPort, "healthz-port", 0, "port of /healthz, /readyz and /metrics (0: off)")
	fs.BoolVar(&o.setNodeNetworkUnavailable, "set-node-network-unavailable", true, "set the Node's NetworkUnavailable condition to False when ready (Kubernetes mode)")
	fs.StringVar(&o.bpfDir, "bpf-dir", "/sys/fs/bpf/weft", "bpffs directory for the eBPF datapath's pinned maps and links")
	fs.StringVar(&o.endpointDir, "endpoint-dir", endpoint.DefaultDir, "directory where weft-cni records each pod's endpoint and the eBPF datapath derives its endpoint maps from; a host path both weftd and the CNI plugin see")
	fs.StringVar(&o.tcAttach, "tc-attach", "auto", "how eBPF programs attach: auto, tcx (kernel >= 6.6) or tc (clsact + cls_bpf)")
	fs.StringVar(&o.bridge, "bridge", "cni0", "the pods' bridge (the CNI bridge plugin's name)")
	fs.StringVar(&o.datapath, "datapath", "", "override net-conf.json's Backend.Datapath: auto, ebpf or kernel")
	fs.DurationVar(&o.resyncInterval, "resync-interval", 5*time.Second, "how often the datapath is checked and repaired")
	fs.BoolVar(&o.cleanup, "cleanup", false, "remove everything weft installed on this node (devices, routes, programs, pins, masquerade and forward rules) and exit")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return fs
}

// parseFlags parses args; flags not given take WEFTD_<NAME>, else
// FLANNELD_<NAME> from env (NAME upper case, dashes as underscores).
func parseFlags(args []string, env func(string) string) (*options, error) {
	o := &options{}
	fs := newFlagSet(o)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q: weftd takes only flags", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		key := strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		for _, prefix := range []string{"WEFTD_", "FLANNELD_"} {
			v := env(prefix + key)
			if v == "" {
				continue
			}
			values := []string{v}
			if _, ok := f.Value.(*listFlag); ok {
				values = strings.Split(v, ",")
			}
			for _, one := range values {
				if serr := f.Value.Set(strings.TrimSpace(one)); serr != nil {
					err = fmt.Errorf("%s%s=%q: %w", prefix, key, v, serr)
					return
				}
			}
			return
		}
	})
	if err != nil {
		return nil, err
	}
	if o.renewMarginMinutes < 1 || o.renewMarginMinutes > 1439 {
		return nil, fmt.Errorf("--subnet-lease-renew-margin %d: use 1 to 1439 minutes", o.renewMarginMinutes)
	}
	switch o.tcAttach {
	case "auto", "tcx", "tc":
	default:
		return nil, fmt.Errorf("--tc-attach %q: use auto, tcx or tc", o.tcAttach)
	}
	switch o.datapath {
	case "", "auto", "ebpf", "kernel":
	default:
		return nil, fmt.Errorf("--datapath %q: use auto, ebpf or kernel", o.datapath)
	}
	if o.endpointDir == "" {
		return nil, errors.New("--endpoint-dir is empty: name the directory of the pod endpoint records")
	}
	// The CNI plugin reads it from the subnet file, from its own working
	// directory.
	if o.endpointDir, err = filepath.Abs(o.endpointDir); err != nil {
		return nil, fmt.Errorf("--endpoint-dir: %w", err)
	}
	if o.iptablesResync <= 0 {
		return nil, fmt.Errorf("--iptables-resync %d: use a positive number of seconds", o.iptablesResync)
	}
	if o.resyncInterval <= 0 {
		return nil, fmt.Errorf("--resync-interval %s: must be positive", o.resyncInterval)
	}
	return o, nil
}

// usage prints the flags to stderr.
func usage(fs *flag.FlagSet) {
	fs.SetOutput(os.Stderr)
	fmt.Fprintf(os.Stderr, "Usage: weftd [flags]\n\nweft's node daemon: leases this node's pod subnet and programs the datapath.\nEvery flag can also be set as WEFTD_<NAME> (or flannel's FLANNELD_<NAME>), e.g. WEFTD_ETCD_ENDPOINTS.\n\n")
	fs.PrintDefaults()
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/weftnet/weft/pkg/lease"
	"github.com/weftnet/weft/pkg/lease/etcd"
	"github.com/weftnet/weft/pkg/lease/kube"
)

var leasesCommand = command{
	name:     "leases",
	synopsis: "[-o table|json] [--etcd-endpoints URLS [--etcd-prefix P] | --kube-subnet-mgr [--kubeconfig-file F]]",
	summary:  "list the subnet leases of all nodes from etcd or the Kubernetes API server",
	jsonDoc: `  {"source": the lease source, "leases": [{"subnet", "public_ip", "backend", "vtep_mac",
   "expires": RFC 3339 or null, "permanent"}]}
  etcd: "expires" is when the key's etcd lease runs out; "permanent" is true for a key
  without an etcd lease (a reservation). Kubernetes leases have no expiry (null, false).
  "vtep_mac" is "" for leases that carry none (host-gw). A dual-stack lease is two
  entries, its IPv4 half (PublicIP, BackendData) and its IPv6 half (PublicIPv6,
  BackendV6Data).
`,
	flags: func(fs *flag.FlagSet) runFunc {
		out := outputFlag(fs)
		src := leaseSourceFlags(fs)
		return func(ctx context.Context, stdout io.Writer, _ []string) error {
			ls, err := src.list(ctx)
			if err != nil {
				return err
			}
			r := leasesReport{Source: src.String(), Leases: []leaseRowJSON{}}
			for _, l := range ls {
				r.Leases = append(r.Leases, leaseRows(l)...)
			}
			return render(stdout, *out, r)
		}
	},
}

// leaseSource is the lease source flags, weftd's names and defaults.
type leaseSource struct {
	fs                                      *flag.FlagSet
	etcdEndpoints, etcdPrefix               string
	etcdKeyfile, etcdCertfile, etcdCAFile   string
	etcdUsername, etcdPassword              string
	kube                                    bool
	kubeAPIURL, kubeconfig, kubeAnnotations string
	timeout                                 time.Duration
}

func leaseSourceFlags(fs *flag.FlagSet) *leaseSource {
	s := &leaseSource{fs: fs}
	fs.StringVar(&s.etcdEndpoints, "etcd-endpoints", "http://127.0.0.1:2379", "comma-separated list of etcd endpoints")
	fs.StringVar(&s.etcdPrefix, "etcd-prefix", etcd.DefaultPrefix, "etcd prefix of the network config and leases")
	fs.StringVar(&s.etcdKeyfile, "etcd-keyfile", "", "TLS key file for etcd")
	fs.StringVar(&s.etcdCertfile, "etcd-certfile", "", "TLS certificate file for etcd")
	fs.StringVar(&s.etcdCAFile, "etcd-cafile", "", "TLS CA file for etcd")
	fs.StringVar(&s.etcdUsername, "etcd-username", "", "username for etcd authentication")
	fs.StringVar(&s.etcdPassword, "etcd-password", "", "password for etcd authentication")
	fs.BoolVar(&s.kube, "kube-subnet-mgr", false, "read the leases from the Kubernetes API (Nodes) instead of etcd")
	fs.StringVar(&s.kubeAPIURL, "kube-api-url", "", "Kubernetes API server URL (default: in-cluster or kubeconfig)")
	fs.StringVar(&s.kubeconfig, "kubeconfig-file", "", "kubeconfig file (default: in-cluster config)")
	fs.StringVar(&s.kubeAnnotations, "kube-annotation-prefix", kube.DefaultAnnotationPrefix, "prefix of the Node annotations")
	fs.DurationVar(&s.timeout, "timeout", 10*time.Second, "how long to wait for the lease source")
	return s
}

// chosen reports whether a lease source was given on the command line.
func (s *leaseSource) chosen() bool {
	given := false
	s.fs.Visit(func(f *flag.Flag) { given = given || f.Name == "etcd-endpoints" || f.Name == "kube-subnet-mgr" })
	return given && (s.kube || s.etcdEndpoints != "")
}

func (s *leaseSource) String() string {
	if s.kube {
		where := "in-cluster config"
		if s.kubeconfig != "" {
			where = "kubeconfig " + s.kubeconfig
		}
		if s.kubeAPIURL != "" {
			where += ", server " + s.kubeAPIURL
		}
		return "kubernetes (" + where + ")"
	}
	return fmt.Sprintf("etcd %s, prefix %s", s.etcdEndpoints, s.etcdPrefix)
}

// leaseEntry is a lease with whether it never expires.
type leaseEntry struct {
	lease.Lease
	Permanent bool
}

// list returns the current lease set, sorted by subnet.
func (s *leaseSource) list(ctx context.Context) ([]leaseEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if s.kube {
		m, err := kube.New(ctx, kube.Config{Kubeconfig: s.kubeconfig, APIURL: s.kubeAPIURL,
			NodeName: nodeName(), AnnotationPrefix: s.kubeAnnotations})
		if err != nil {
			return nil, err
		}
		set, err := firstSet(ctx, m, s)
		if err != nil {
			return nil, err
		}
		out := make([]leaseEntry, 0, len(set))
		for _, l := range set {
			out = append(out, leaseEntry{Lease: l})
		}
		return out, nil
	}
	cfg := etcd.Config{Endpoints: []string{s.etcdEndpoints}, Prefix: s.etcdPrefix, KeyFile: s.etcdKeyfile,
		CertFile: s.etcdCertfile, CAFile: s.etcdCAFile, Username: s.etcdUsername, Password: s.etcdPassword,
		RequestTimeout: s.timeout}
	m, err := etcd.New(cfg)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	set, err := m.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	out := make([]leaseEntry, 0, len(set))
	for _, l := range set {
		out = append(out, leaseEntry{Lease: l, Permanent: l.Expiration.IsZero()})
	}
	return out, nil
}

// nodeName names this node to the kube lease source, which requires one
// (listing leases does not use it).
func nodeName() string {
	if n := os.Getenv("NODE_NAME"); n != "" {
		return n
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "weftctl"
}

// firstSet returns the first lease set m's Watch delivers (its first
// update is the full set), sorted.
func firstSet(ctx context.Context, m lease.Manager, src *leaseSource) ([]lease.Lease, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var set []lease.Lease
	got := false
	m.Watch(wctx, func(u lease.Update) {
		for _, c := range u.Changes {
			if !c.Removed {
				set = append(set, c.Lease)
			}
		}
		got = true
		cancel()
	})
	if !got {
		return nil, fmt.Errorf("no answer from %s within %v: check that it is reachable from here and the flags are right", src, src.timeout)
	}
	lease.Sort(set)
	return set, nil
}

type leasesReport struct {
	Source string         `json:"source"`
	Leases []leaseRowJSON `json:"leases"`
}

type leaseRowJSON struct {
	Subnet    string     `json:"subnet"`
	PublicIP  string     `json:"public_ip"`
	Backend   string     `json:"backend"`
	VtepMAC   string     `json:"vtep_mac"`
	Expires   *time.Time `json:"expires"`
	Permanent bool       `json:"permanent"`
}

// leaseRows is one row per family half of l.
func leaseRows(l leaseEntry) []leaseRowJSON {
	var expires *time.Time
	if !l.Expiration.IsZero() {
		t := l.Expiration.UTC()
		expires = &t
	}
	var rows []leaseRowJSON
	for _, h := range l.Halves() {
		rows = append(rows, leaseRowJSON{Subnet: str(h.Subnet), PublicIP: str(h.PublicIP), Backend: l.Attrs.BackendType,
			VtepMAC: halfMAC(l.Attrs.BackendType, h), Expires: expires, Permanent: l.Permanent})
	}
	return rows
}

// halfMAC is the VTEP MAC of a lease half of backend vxlan; "" for other
// backends or without one.
func halfMAC(backend string, h lease.Half) string {
	if backend != "vxlan" {
		return ""
	}
	mac, _, err := h.VXLAN()
	if err != nil {
		return ""
	}
	return mac.String()
}

func (r leasesReport) writeTable(w io.Writer) error {
	fmt.Fprintf(w, "Leases from %s:\n", r.Source)
	now := time.Now()
	rows := make([][]string, 0, len(r.Leases))
	for _, l := range r.Leases {
		rows = append(rows, []string{l.Subnet, l.PublicIP, dash(l.Backend), dash(l.VtepMAC), expiry(l, now)})
	}
	return writeTable(w, []string{"SUBNET", "PUBLIC IP", "BACKEND", "VTEP MAC", "EXPIRES"}, rows)
}

// expiry shows when a lease expires.
func expiry(l leaseRowJSON, now time.Time) string {
	switch {
	case l.Permanent:
		return "permanent"
	case l.Expires == nil:
		return "-"
	}
	return fmt.Sprintf("%s (in %s)", l.Expires.Format(time.RFC3339), l.Expires.Sub(now).Round(time.Second))
}

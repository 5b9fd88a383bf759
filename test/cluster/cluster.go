// Package cluster builds a weft cluster out of network namespaces for
// end-to-end tests and the demo: an infra namespace with the underlay
// bridges (segments), a router between them and the lease source; node
// namespaces that each run the real weftd binary; pods attached by the real
// CNI chain (weft-cni installed as "flannel", then bridge + host-local).
//
// The lease source is etcd, or in kube mode (Options.Kube) a real
// kube-apiserver with one Node object per node.
//
// Nothing is added to the root namespace: the harness reaches etcd, the API
// server, weftd's health port and the pods by entering their namespaces.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/weftnet/weft/test/kubetest"
	"github.com/weftnet/weft/test/testns"
)

// Underlay addressing: segment s is 10.250.s.0/24 and fd00:100:s::/64 on
// bridge "br<s>" in the infra namespace, which owns 10.250.s.254 and
// fd00:100:s::fe and routes between segments; node i (1-based) is
// 10.250.<its segment>.i and fd00:100:<its segment>::i, whatever the pod
// network's families (a host has both). etcd (or the API server) listens on
// segment 0's IPv4 address.
const (
	underlayPrefixLen   = 24
	underlayPrefixLenV6 = 64
	routerHost          = 254
)

// Options describe a cluster.
type Options struct {
	// Binaries are the weftd and weft-cni executables (see Build).
	Binaries Binaries
	// NodeBinaries overrides Binaries for single nodes, by index (a zero
	// value keeps Binaries): e.g. the previous release on some nodes (see
	// BuildCommit and Node.Upgrade).
	NodeBinaries []Binaries
	// Nodes is the number of nodes (default 2).
	Nodes int
	// Segments gives each node's underlay segment (0 or 1) by index; nodes
	// past its end are on segment 0. Nodes on different segments reach each
	// other only through the infra router, so they are not L2 neighbours.
	Segments []int
	// NetConf is net-conf.json, written to etcd (in kube mode to each node's
	// --net-config-path) before weftd starts (see NetConf for the usual
	// ones). Empty means vxlan on the kernel datapath.
	NetConf string
	// Datapaths overrides Backend.Datapath for single nodes, by index
	// ("" keeps net-conf's), through weftd's WEFTD_DATAPATH.
	Datapaths []string
	// WeftdArgs are extra weftd flags for every node.
	WeftdArgs []string
	// NoStart leaves weftd stopped; start it with Node.StartWeftd.
	NoStart bool
	// Kube switches the lease source from etcd to a kube-apiserver (package
	// test/kubetest) in the infra namespace: weftd runs with
	// --kube-subnet-mgr as deploy/weft.yaml's ServiceAccount, each node is a
	// Node object with spec.podCIDRs PodCIDRs(i, <the NetConf's stack>). It needs a test: build the
	// cluster with Start.
	Kube bool
	// Log receives the harness's progress; nil discards it.
	Log *slog.Logger
}

// Cluster is a running namespace cluster. Close (or the test's cleanup)
// removes all of it.
type Cluster struct {
	// Prefix starts every namespace name (testns.Prefix: "wt-<hex>-").
	Prefix string
	// Dir holds logs, subnet files, CNI and IPAM state, bpffs mounts.
	Dir string
	// Infra is the namespace of the underlay bridges, the router and the
	// lease source.
	Infra *Netns
	// Etcd is the lease source; nil in kube mode.
	Etcd *Etcd
	// Kube is the lease source in kube mode (Options.Kube), else nil. Its
	// clients dial from the infra namespace.
	Kube *kubetest.Cluster
	// Nodes are the nodes, n1 first.
	Nodes []*Node

	opts Options
	log  *slog.Logger
	t    testing.TB // set by Start; kube mode runs the API server for it
	kube kube       // kube mode's client and credentials

	undo Undo
}

// New builds and starts a cluster; on error it removes what it had built.
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

// newCluster fills opts' defaults and returns an empty cluster, registered
// for CloseOnInterrupt.
func newCluster(opts Options) (*Cluster, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the namespace cluster needs root: run as root (e.g. sudo)")
	}
	if opts.Nodes == 0 {
		opts.Nodes = 2
	}
	if opts.NetConf == "" {
		opts.NetConf = NetConf("vxlan", "kernel", false)
	}
	c := &Cluster{Prefix: testns.Prefix(), opts: opts, log: opts.Log}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	Track(c, c.Prefix)
	return c, nil
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
	if err := c.buildInfra(ctx); err != nil {
		return err
	}
	if c.Etcd != nil {
		c.log.Info("infra up", "ns", c.Infra.Name, "etcd", c.Etcd.Endpoint)
		if err := c.Etcd.Put(ctx, ConfigKey, c.opts.NetConf); err != nil {
			return err
		}
	}
	for i := range c.opts.Nodes {
		n, err := c.buildNode(ctx, i)
		if err != nil {
			return err
		}
		if c.Kube != nil {
			if err := c.registerNode(ctx, n, i); err != nil {
				return err
			}
		}
		c.Nodes = append(c.Nodes, n)
		c.log.Info("node up", "node", n.Name, "ns", n.NS.Name, "ip", n.IP)
	}
	if c.opts.NoStart {
		return nil
	}
	for _, n := range c.Nodes {
		if err := n.StartWeftd(ctx); err != nil {
			return err
		}
	}
	return nil
}

// segments is how many underlay segments the nodes use (at least one).
func (c *Cluster) segments() int {
	n := 0
	for _, s := range c.opts.Segments {
		n = max(n, s)
	}
	return n + 1
}

// routerIP is the infra namespace's IPv4 address on segment s.
func routerIP(s int) netip.Addr { return underlayIP(s, routerHost, IPv4) }

// underlayIP is host's address of family f on segment s (see the
// underlay addressing above).
func underlayIP(s, host int, f Family) netip.Addr {
	if f == IPv6 {
		return netip.AddrFrom16([16]byte{0xfd, 0x00, 0x01, 0x00, 0x00, byte(s), 14: byte(host >> 8), 15: byte(host)})
	}
	return netip.AddrFrom4([4]byte{10, 250, byte(s), byte(host)})
}

// underlayPrefix is the address of host on segment s with the segment's
// prefix length, in family f.
func underlayPrefix(s, host int, f Family) netip.Prefix {
	if f == IPv6 {
		return netip.PrefixFrom(underlayIP(s, host, f), underlayPrefixLenV6)
	}
	return netip.PrefixFrom(underlayIP(s, host, f), underlayPrefixLen)
}

// underlayFamilies are the underlay's families: both, always.
var underlayFamilies = []Family{IPv4, IPv6}

// Stack is the pod network's families, from Options.NetConf.
func (c *Cluster) Stack() Stack { return StackOf(c.opts.NetConf) }

func (c *Cluster) buildInfra(ctx context.Context) error {
	err := c.add(func() error {
		ns, err := NewNetns(ctx, c.Prefix+"infra")
		c.Infra = ns
		return err
	}, func() error { return c.Infra.Delete() })
	if err != nil {
		return err
	}
	for s := range c.segments() {
		br := fmt.Sprintf("br%d", s)
		cmds := [][]string{{"link", "add", br, "type", "bridge"}, {"link", "set", br, "up"}}
		for _, f := range underlayFamilies {
			cmds = append(cmds, []string{"addr", "add", underlayPrefix(s, routerHost, f).String(), "dev", br, "nodad"})
		}
		if err := c.infraIP(ctx, cmds...); err != nil {
			return err
		}
	}
	if _, err := c.Infra.Exec(ctx, "sysctl", append([]string{"-qw"}, forwardSysctls...)...); err != nil {
		return err
	}
	if c.opts.Kube {
		return c.startKube()
	}
	return c.add(func() error {
		dir := filepath.Join(c.Dir, "etcd")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		e, err := startEtcd(ctx, c.Infra, routerIP(0), dir)
		c.Etcd = e
		return err
	}, func() error { return c.Etcd.close() })
}

// infraIP runs ip commands in the infra namespace.
func (c *Cluster) infraIP(ctx context.Context, cmds ...[]string) error {
	for _, args := range cmds {
		if _, err := c.Infra.Exec(ctx, "ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// add runs create and remembers undo for Close (see Undo.Add).
func (c *Cluster) add(create, undo func() error) error { return c.undo.Add(create, undo) }

// Close stops every process, deletes every namespace, unmounts the bpffs
// mounts and removes Dir. It is safe to call more than once.
func (c *Cluster) Close() error {
	Untrack(c)
	return c.undo.Close()
}

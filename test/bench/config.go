package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/weftnet/weft/pkg/subnetfile"
	"github.com/weftnet/weft/test/cluster"
)

// config is one measured configuration.
type config struct {
	// key names the configuration in -configs; name in the report.
	key, name string
	// backend and datapath go into net-conf.json; backend "" is the
	// baseline: no weftd, hand-written subnet files and plain routes.
	backend, datapath string
	// family is the pods' address family measured. An IPv6 configuration
	// runs a dual-stack cluster (cluster.DualStack: IPv6 underlay, both
	// families in the pods) and measures between the pods' IPv6
	// addresses; its ratios are to the IPv6 baseline.
	family cluster.Family
	// probe and clusterIP make a "real node" variant of the configuration
	// with the same backend and datapath (see realnode.go): the server's
	// node probes the server pod's port every second, and the client
	// reaches the server through a DNATed ClusterIP.
	probe, clusterIP bool
}

// plain reports whether c is no real-node variant.
func (c config) plain() bool { return !c.probe && !c.clusterIP }

// configs are the configurations in report order; the first is the
// baseline.
var configs = []config{
	{key: "baseline", name: "baseline (plain routes)", family: cluster.IPv4},
	{key: "baseline-v6", name: "baseline IPv6 (plain routes)", family: cluster.IPv6},
	{key: "kernel-vxlan", name: "kernel vxlan", backend: "vxlan", datapath: "kernel", family: cluster.IPv4},
	{key: "kernel-vxlan-v6", name: "kernel vxlan IPv6", backend: "vxlan", datapath: "kernel", family: cluster.IPv6},
	{key: "ebpf-vxlan", name: "ebpf vxlan", backend: "vxlan", datapath: "ebpf", family: cluster.IPv4},
	{key: "ebpf-vxlan-v6", name: "ebpf vxlan IPv6", backend: "vxlan", datapath: "ebpf", family: cluster.IPv6},
	{key: "kernel-host-gw", name: "kernel host-gw", backend: "host-gw", datapath: "kernel", family: cluster.IPv4},
	{key: "kernel-host-gw-v6", name: "kernel host-gw IPv6", backend: "host-gw", datapath: "kernel", family: cluster.IPv6},
	{key: "ebpf-host-gw", name: "ebpf host-gw", backend: "host-gw", datapath: "ebpf", family: cluster.IPv4},
	{key: "ebpf-host-gw-v6", name: "ebpf host-gw IPv6", backend: "host-gw", datapath: "ebpf", family: cluster.IPv6},
	{key: "kernel-udp", name: "kernel udp", backend: "udp", datapath: "kernel", family: cluster.IPv4},
	{key: "ebpf-udp", name: "ebpf udp", backend: "udp", datapath: "ebpf", family: cluster.IPv4},
	{key: "kernel-wireguard", name: "kernel wireguard (userspace)", backend: "wireguard", datapath: "kernel", family: cluster.IPv4},
	{key: "kernel-vxlan-probes", name: "kernel vxlan, real node: probes", backend: "vxlan", datapath: "kernel", family: cluster.IPv4, probe: true},
	{key: "kernel-vxlan-clusterip", name: "kernel vxlan, real node: probes + ClusterIP", backend: "vxlan", datapath: "kernel",
		family: cluster.IPv4, probe: true, clusterIP: true},
	{key: "ebpf-vxlan-probes", name: "ebpf vxlan, real node: probes", backend: "vxlan", datapath: "ebpf", family: cluster.IPv4, probe: true},
	{key: "ebpf-vxlan-clusterip", name: "ebpf vxlan, real node: probes + ClusterIP", backend: "vxlan", datapath: "ebpf",
		family: cluster.IPv4, probe: true, clusterIP: true},
}

// selectConfigs reads -configs: "all" or configuration keys separated by
// commas. The baseline of each selected configuration's family and the
// plain configuration of each selected real-node variant are added, since
// the ratios divide by their runs; the result keeps the order of configs.
func selectConfigs(spec string) ([]config, error) {
	picked, err := pickKeys(spec, keysOf(configs, configKey))
	if err != nil {
		return nil, fmt.Errorf("-configs: %w", err)
	}
	picked[0] = true
	for i, c := range configs {
		if picked[i] {
			picked[plainOf(configs, c)] = true
			picked[baselineOf(configs, c)] = true
		}
	}
	return keep(configs, picked), nil
}

// configKey is c's key.
func configKey(c config) string { return c.key }

// keysOf is the key of every element of xs.
func keysOf[T any](xs []T, key func(T) string) []string {
	keys := make([]string, len(xs))
	for i, x := range xs {
		keys[i] = key(x)
	}
	return keys
}

// keep is the elements of xs that are picked, in order.
func keep[T any](xs []T, picked []bool) []T {
	var out []T
	for i, x := range xs {
		if picked[i] {
			out = append(out, x)
		}
	}
	return out
}

// pickKeys returns which of keys spec names: "all", or keys separated by
// commas.
func pickKeys(spec string, keys []string) ([]bool, error) {
	picked := make([]bool, len(keys))
	for _, k := range strings.Split(spec, ",") {
		k = strings.TrimSpace(k)
		if k == "all" {
			for i := range picked {
				picked[i] = true
			}
			continue
		}
		i := slices.Index(keys, k)
		if i < 0 {
			return nil, fmt.Errorf("unknown %q; choose from all, %s", k, strings.Join(keys, ", "))
		}
		picked[i] = true
	}
	return picked, nil
}

// plainOf is the index in cfgs of the plain configuration that c is a
// variant of (c's own index if c is plain), or -1.
func plainOf(cfgs []config, c config) int {
	return slices.IndexFunc(cfgs, func(p config) bool {
		return p.plain() && p.backend == c.backend && p.datapath == c.datapath && p.family == c.family
	})
}

// baselineOf is the index in cfgs of the baseline of c's family, or -1.
func baselineOf(cfgs []config, c config) int {
	return slices.IndexFunc(cfgs, func(p config) bool { return p.backend == "" && p.family == c.family })
}

// indexOf is the index of the configuration key in cfgs, or -1.
func indexOf(cfgs []config, key string) int {
	return slices.IndexFunc(cfgs, func(c config) bool { return c.key == key })
}

// baselineMTU is the pod MTU of the baseline: the underlay's, as host-gw.
const baselineMTU = 1500

// reachTimeout bounds the wait until the client pod reaches the server pod.
const reachTimeout = 60 * time.Second

// setup is a running configuration: its cluster, the client pod on n1 and
// the server pod (with the servers, see servers.go) on n2.
type setup struct {
	cfg            config
	c              *cluster.Cluster
	client, server *cluster.Pod
	// target is where clients connect: the server pod, or the ClusterIP
	// in front of it.
	target netip.Addr
	// mtu is the pod MTU from n1's subnet file.
	mtu     int
	servers *servers
	// prober probes the server pod from n2 (probe variants only).
	prober *prober
	// self is this program, whose crr subcommands run in the pods.
	self string
}

// bringUp builds cfg's cluster, attaches the pods, starts the servers and
// waits until the client reaches the server. On error it removes all of it.
func bringUp(ctx context.Context, cfg config, opts options) (s *setup, err error) {
	copts := cluster.Options{Binaries: opts.bins, Nodes: 2, Log: opts.log, NetConf: cfg.netConf()}
	copts.NoStart = cfg.backend == ""
	c, err := cluster.New(ctx, copts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.name, err)
	}
	s = &setup{cfg: cfg, c: c, self: opts.self}
	defer func() {
		if err != nil {
			err = errors.Join(fmt.Errorf("%s: %w", cfg.name, err), s.close())
		}
	}()
	if cfg.backend == "" {
		if err := plainRoutes(ctx, c, c.Stack()); err != nil {
			return s, err
		}
	}
	if s.client, err = c.Nodes[0].AddPod(ctx); err != nil {
		return s, err
	}
	if s.server, err = c.Nodes[1].AddPod(ctx); err != nil {
		return s, err
	}
	env, err := c.Nodes[0].SubnetEnv()
	if err != nil {
		return s, err
	}
	if _, err := fmt.Sscan(env["FLANNEL_MTU"], &s.mtu); err != nil {
		return s, fmt.Errorf("FLANNEL_MTU %q in %s: %w", env["FLANNEL_MTU"], c.Nodes[0].SubnetFile, err)
	}
	if s.servers, err = startServers(ctx, s.server, s.server.IPOf(cfg.family), opts.sched, opts.self); err != nil {
		return s, err
	}
	s.target = s.server.IPOf(cfg.family)
	if err := s.client.NS.WaitReach(ctx, s.target, reachTimeout); err != nil {
		return s, err
	}
	if cfg.clusterIP {
		if err := addClusterIP(ctx, c.Nodes[0], iperfPort, s.target); err != nil {
			return s, err
		}
		s.target = clusterIP
	}
	if cfg.probe {
		// The first probe is done before any measured stream starts.
		if s.prober, err = startProber(ctx, c.Nodes[1], netip.AddrPortFrom(s.server.IPOf(cfg.family), iperfPort)); err != nil {
			return s, err
		}
	}
	return s, nil
}

// netConf is the configuration's net-conf.json: IPv4 only for an IPv4
// configuration, dual stack for an IPv6 one (the baseline's tells the
// harness the families its hand-written subnet files have).
func (c config) netConf() string {
	stack := cluster.IPv4Only
	if c.family == cluster.IPv6 {
		stack = cluster.DualStack
	}
	return cluster.StackNetConf(stack, c.backend, c.datapath, false)
}

// plainRoutes is the baseline's control plane, done by hand: node i gets
// pod subnets cluster.PodCIDR(i, f) of the stack's families in its subnet
// file (as weftd would write them) and a route to every other node's
// subnets via that node's underlay address of the family.
func plainRoutes(ctx context.Context, c *cluster.Cluster, stack cluster.Stack) error {
	for i, n := range c.Nodes {
		// IPMasq true: the bridge plugin adds no masquerading of its own
		// (flannel's ipMasq = !FLANNEL_IPMASQ), so the baseline's nodes
		// have no netfilter rules at all.
		env := subnetfile.Env{MTU: baselineMTU, IPMasq: true}
		if stack.Has(cluster.IPv4) {
			env.Network, env.Subnet = cluster.PodNetworkOf(cluster.IPv4), cluster.PodCIDR(i, cluster.IPv4)
		}
		if stack.Has(cluster.IPv6) {
			env.IPv6Network, env.IPv6Subnet = cluster.PodNetworkOf(cluster.IPv6), cluster.PodCIDR(i, cluster.IPv6)
		}
		if err := subnetfile.Write(n.SubnetFile, env); err != nil {
			return err
		}
		for j, m := range c.Nodes {
			if j == i {
				continue
			}
			for _, f := range stack.Families() {
				if _, err := n.Exec(ctx, "ip", "route", "add", cluster.PodCIDR(j, f).String(), "via", m.IPOf(f).String(), "dev", "eth0"); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// close stops the prober and the servers and removes the cluster.
func (s *setup) close() error {
	var errs []error
	if s.prober != nil {
		s.prober.stop()
	}
	if s.servers != nil {
		errs = append(errs, s.servers.stop())
	}
	return errors.Join(append(errs, s.c.Close())...)
}

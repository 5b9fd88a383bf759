package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/weftnet/weft/pkg/subnetfile"
	"github.com/weftnet/weft/test/cluster"
)

// config is one measured configuration.
type config struct {
	// name labels the configuration in the report.
	name string
	// backend and datapath go into net-conf.json; backend "" is the
	// baseline: no weftd, hand-written subnet files and plain routes.
	backend, datapath string
}

// configs are the measured configurations; the first is the baseline.
var configs = []config{
	{name: "baseline (plain routes)"},
	{name: "kernel vxlan", backend: "vxlan", datapath: "kernel"},
	{name: "ebpf vxlan", backend: "vxlan", datapath: "ebpf"},
	{name: "kernel host-gw", backend: "host-gw", datapath: "kernel"},
	{name: "ebpf host-gw", backend: "host-gw", datapath: "ebpf"},
}

// Indexes into configs used by the targets.
const (
	cfgBaseline = iota
	cfgKernelVXLAN
	cfgEBPFVXLAN
	cfgKernelHostGW
	cfgEBPFHostGW
)

// baselineMTU is the pod MTU of the baseline: the underlay's, as host-gw.
const baselineMTU = 1500

// reachTimeout bounds the wait until the client pod reaches the server pod.
const reachTimeout = 60 * time.Second

// setup is a running configuration: its cluster, the client pod on n1 and
// the server pod (with iperf3 and sockperf servers) on n2.
type setup struct {
	cfg            config
	c              *cluster.Cluster
	client, server *cluster.Pod
	// mtu is the pod MTU from n1's subnet file.
	mtu     int
	servers *servers
}

// bringUp builds cfg's cluster, attaches the pods, starts the servers and
// waits until the client reaches the server. On error it removes all of it.
func bringUp(ctx context.Context, cfg config, opts options) (s *setup, err error) {
	copts := cluster.Options{Binaries: opts.bins, Nodes: 2, Log: opts.log}
	if cfg.backend == "" {
		copts.NoStart = true
	} else {
		copts.NetConf = cluster.NetConf(cfg.backend, cfg.datapath, false)
	}
	c, err := cluster.New(ctx, copts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.name, err)
	}
	s = &setup{cfg: cfg, c: c}
	defer func() {
		if err != nil {
			err = errors.Join(fmt.Errorf("%s: %w", cfg.name, err), s.close())
		}
	}()
	if cfg.backend == "" {
		if err := plainRoutes(ctx, c); err != nil {
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
	if s.servers, err = startServers(ctx, s.server, opts.sched); err != nil {
		return s, err
	}
	if err := s.client.NS.WaitReach(ctx, s.server.IP, reachTimeout); err != nil {
		return s, err
	}
	return s, nil
}

// plainRoutes is the baseline's control plane, done by hand: node i gets pod
// subnet 10.244.<i+1>.0/24 in its subnet file (as weftd would write it) and
// a route to every other node's subnet via that node's underlay address.
func plainRoutes(ctx context.Context, c *cluster.Cluster) error {
	network := netip.MustParsePrefix(cluster.PodNetwork)
	subnet := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i + 1), 0}), 24)
	}
	for i, n := range c.Nodes {
		// IPMasq true: the bridge plugin adds no masquerading of its own
		// (flannel's ipMasq = !FLANNEL_IPMASQ), so the baseline's nodes
		// have no netfilter rules at all.
		env := subnetfile.Env{Network: network, Subnet: subnet(i), MTU: baselineMTU, IPMasq: true}
		if err := subnetfile.Write(n.SubnetFile, env); err != nil {
			return err
		}
		for j, m := range c.Nodes {
			if j == i {
				continue
			}
			if _, err := n.Exec(ctx, "ip", "route", "add", subnet(j).String(), "via", m.IP.String(), "dev", "eth0"); err != nil {
				return err
			}
		}
	}
	return nil
}

// close stops the servers and removes the cluster.
func (s *setup) close() error {
	var errs []error
	if s.servers != nil {
		errs = append(errs, s.servers.stop())
	}
	return errors.Join(append(errs, s.c.Close())...)
}

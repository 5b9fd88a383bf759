// Package daemon is weftd's control loop: it sets up the datapath, holds
// this node's subnet lease, publishes the subnet file, keeps the masquerade
// and forward rules and makes the datapath equal to the set of other nodes'
// leases.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftnet/weft/pkg/backoff"
	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/firewall"
	"github.com/weftnet/weft/pkg/iface"
	"github.com/weftnet/weft/pkg/lease"
	"github.com/weftnet/weft/pkg/metrics"
	"github.com/weftnet/weft/pkg/netconf"
	"github.com/weftnet/weft/pkg/reconcile"
	"github.com/weftnet/weft/pkg/subnetfile"
)

// Config is what weftd is told on its command line.
type Config struct {
	Iface  iface.Options
	IPMasq bool
	// ForwardRules accepts pod traffic in the FORWARD chain
	// (--iptables-forward-rules); NoFullyRandom masquerades without fully
	// random ports (--ip-masq-fully-random-disable); FirewallResync is how
	// often both rule sets are checked and repaired (--iptables-resync).
	ForwardRules   bool
	NoFullyRandom  bool
	FirewallResync time.Duration
	SubnetFile     string
	// WireGuardKeyFile holds the wireguard private key across restarts
	// (flannel's WIREGUARD_KEY_FILE, default /run/flannel/wgkey).
	WireGuardKeyFile string
	// Datapath overrides net-conf.json's Backend.Datapath when not empty.
	Datapath       string
	Datapaths      Factory
	ResyncInterval time.Duration
	// Metrics records control-plane metrics; nil records none.
	Metrics *metrics.Metrics
}

// Factory builds datapaths; it is how the daemon stays independent of the
// implementations' packages.
type Factory interface {
	// Kernel returns the kernel datapath.
	Kernel() datapath.Datapath
	// EBPF returns the eBPF datapath, or why this machine cannot run it.
	EBPF() (datapath.Datapath, error)
	// BPFDir is the pin directory published in the subnet file for the CNI
	// plugin when the eBPF datapath runs.
	BPFDir() string
	// EndpointDir is the directory of the pod endpoint records, published
	// in the subnet file with BPFDir.
	EndpointDir() string
	// RemoveEBPF removes what an earlier eBPF datapath left on this node
	// (programs, links, tc filters, pins), which would otherwise keep
	// forwarding beside the kernel datapath on maps nobody updates. It
	// loads no program, so it works where the eBPF datapath cannot run.
	RemoveEBPF(ctx context.Context) error
}

// NetworkAvailabler is implemented by lease sources that publish node
// readiness (Kubernetes' NetworkUnavailable condition).
type NetworkAvailabler interface {
	SetNetworkAvailable(ctx context.Context) error
}

// Daemon is one running weftd.
type Daemon struct {
	cfg    Config
	leases lease.Manager
	fw     *firewall.Firewall

	ready atomic.Pointer[error]

	mu      sync.Mutex
	net     *netconf.Config
	own     lease.Lease
	backend string
	peers   *peerTable
	rec     *reconcile.Reconciler
	dp      datapath.Datapath
}

// New returns a daemon that takes leases from leases.
func New(cfg Config, leases lease.Manager) *Daemon {
	d := &Daemon{cfg: cfg, leases: leases, fw: firewall.New()}
	notYet := errors.New("starting")
	d.ready.Store(&notYet)
	cfg.Metrics.SetSource(d)
	return d
}

// Ready returns nil once the node is ready for pods (subnet file written and
// masquerade and forward rules in place), else the reason it is not.
func (d *Daemon) Ready() error {
	if p := d.ready.Load(); p != nil {
		return *p
	}
	return nil
}

func (d *Daemon) setReady(err error) { d.ready.Store(&err) }

// Datapath returns the running datapath (nil before setup).
func (d *Daemon) Datapath() datapath.Datapath {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dp
}

// Reconciler returns the reconciler (nil before setup).
func (d *Daemon) Reconciler() *reconcile.Reconciler {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rec
}

// Run brings the node up and keeps it equal to the lease set until ctx ends.
// It retries transient failures (lease source away, interface not up yet)
// forever and returns only on ctx's end or a configuration the user must fix.
// On return the datapath's kernel state stays in place (hitless restart).
func (d *Daemon) Run(ctx context.Context) error {
	var nc *netconf.Config
	if err := backoff.Retry(ctx, backoff.Options{What: "read network config"}, func() (err error) {
		nc, err = d.leases.NetworkConfig(ctx)
		return err
	}); err != nil {
		return err
	}
	if len(nc.Ignored) > 0 {
		slog.Warn("net-conf.json keys weft does not use (typo?)", "keys", nc.Ignored)
	}
	if nc.DefaultedBackend {
		slog.Info("net-conf.json has no Backend: using vxlan (flannel would use udp, which weft does not support)")
	}
	var sel iface.Selected
	opts := d.cfg.Iface
	opts.IPv4, opts.IPv6 = nc.EnableIPv4, nc.EnableIPv6
	if err := backoff.Retry(ctx, backoff.Options{What: "select interface"}, func() (err error) {
		sel, err = iface.Select(opts)
		return err
	}); err != nil {
		return err
	}
	dp, err := d.chooseDatapath(ctx, nc.Backend)
	if err != nil {
		return err
	}
	defer func() {
		if err := dp.Close(); err != nil {
			slog.Warn("close datapath", "err", err)
		}
	}()
	node := datapath.Node{
		NodeIP: sel.IP, NodeIPv6: sel.IPv6, Uplink: sel.Name, Network: nc.Network, IPv6Network: nc.IPv6Network,
		Backend: datapath.Mode(nc.Backend.Type), VNI: nc.Backend.VNI, Port: nc.Backend.Port,
		DirectRouting: nc.Backend.DirectRouting, GBP: nc.Backend.GBP, Learning: nc.Backend.Learning,
		MTU: nc.Backend.MTU,
		WireGuard: datapath.WireGuard{PSK: nc.Backend.PSK, Keepalive: nc.Backend.Keepalive, KeyFile: d.cfg.WireGuardKeyFile,
			PortV6: nc.Backend.ListenPortV6},
	}
	slog.Info("node", "iface", sel.Name, "ip", sel.IP, "public_ip", sel.PublicIP, "network", nc.Network,
		"ipv6", sel.IPv6, "public_ipv6", sel.PublicIPv6, "ipv6_network", nc.IPv6Network,
		"backend", nc.Backend.Type, "datapath", dp.Name())
	var info datapath.Info
	if err := backoff.Retry(ctx, backoff.Options{What: "set up datapath"}, func() (err error) {
		info, err = dp.Setup(ctx, node)
		return err
	}); err != nil {
		return err
	}

	attrs, err := leaseAttrs(sel, nc.Backend, info)
	if err != nil {
		return err
	}
	var own lease.Lease
	if err := backoff.Retry(ctx, backoff.Options{What: "acquire lease"}, func() (err error) {
		own, err = d.leases.Acquire(ctx, attrs, d.previousSubnets(nc))
		return err
	}); err != nil {
		return err
	}
	slog.Info("lease acquired", "subnet", own.String(), "public_ip", own.Attrs.PublicIP, "public_ipv6", own.Attrs.PublicIPv6)
	d.cfg.Metrics.LeaseEvent(metrics.LeaseAcquired)

	peers := newPeerTable(nc.Backend.Type, nc.Network, nc.IPv6Network, own)
	rec := reconcile.New(dp, peers, d.cfg.ResyncInterval)
	rec.Observe(d.cfg.Metrics.ObserveReconcile)
	d.mu.Lock()
	d.net, d.own, d.backend, d.rec, d.dp, d.peers = nc, own, nc.Backend.Type, rec, dp, peers
	d.mu.Unlock()

	if err := backoff.Retry(ctx, backoff.Options{What: "configure own subnet"}, func() error { return d.applyOwn(ctx, info.MTU) }); err != nil {
		return err
	}
	if na, ok := d.leases.(NetworkAvailabler); ok {
		go func() {
			_ = backoff.Retry(ctx, backoff.Options{What: "set node network available"}, func() error { return na.SetNetworkAvailable(ctx) })
		}()
	}

	changed := make(chan lease.Lease, 1)
	var wg sync.WaitGroup
	wg.Add(4)
	go func() {
		defer wg.Done()
		d.leases.Keep(ctx, own, func(l lease.Lease) {
			select {
			case <-changed: // keep only the newest
			default:
			}
			changed <- l
		})
	}()
	go func() {
		defer wg.Done()
		d.leases.Watch(ctx, d.setLeases)
	}()
	go func() {
		defer wg.Done()
		rec.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		d.keepFirewall(ctx)
	}()
	defer wg.Wait()

	for {
		select {
		case <-ctx.Done():
			return nil
		case l := <-changed:
			d.mu.Lock()
			moved := l.Subnet != d.own.Subnet || l.IPv6Subnet != d.own.IPv6Subnet
			d.own = l
			d.mu.Unlock()
			if !moved {
				continue
			}
			// Only when our subnet was taken by another node while we were
			// away: pods on the old subnet must be recreated.
			d.cfg.Metrics.LeaseEvent(metrics.LeaseSubnetMoved)
			slog.Error("own lease moved to a new subnet: pods of the old subnet lose connectivity until recreated", "subnet", l.String())
			d.setReady(fmt.Errorf("subnet moved to %s", l))
			if err := backoff.Retry(ctx, backoff.Options{What: "configure own subnet"}, func() error { return d.applyOwn(ctx, info.MTU) }); err != nil {
				return nil
			}
			if keys := peers.setOwn(l); peers.complete() {
				rec.Changed(keys...)
			}
		}
	}
}

// chooseDatapath picks the datapath from Backend.Datapath (or the override)
// and logs why. Before the kernel datapath runs, what an earlier eBPF run
// left is removed.
func (d *Daemon) chooseDatapath(ctx context.Context, b netconf.Backend) (datapath.Datapath, error) {
	want, source := b.Datapath, "net-conf.json Backend.Datapath"
	if d.cfg.Datapath != "" {
		want, source = d.cfg.Datapath, "--datapath"
	}
	switch want {
	case netconf.DatapathKernel:
		slog.Info("datapath kernel", "reason", "configured by "+source)
		return d.kernel(ctx), nil
	case netconf.DatapathEBPF:
		dp, err := d.cfg.Datapaths.EBPF()
		if err != nil {
			return nil, fmt.Errorf("Backend.Datapath is ebpf but this node cannot run it: %w (set Backend.Datapath to auto or kernel)", err)
		}
		slog.Info("datapath ebpf", "reason", "configured by "+source)
		return dp, nil
	case netconf.DatapathAuto, "":
		dp, err := d.cfg.Datapaths.EBPF()
		if err != nil {
			slog.Warn("datapath kernel: eBPF datapath unavailable", "reason", err)
			return d.kernel(ctx), nil
		}
		slog.Info("datapath ebpf", "reason", "auto: kernel supports it")
		return dp, nil
	default:
		return nil, fmt.Errorf("datapath %q: use auto, ebpf or kernel", want)
	}
}

// kernel returns the kernel datapath after taking down what an earlier
// eBPF run left: first the subnet file's WEFT_BPF_DIR, so the CNI plugin
// stops registering pods, then the programs and pins. A failure is logged,
// not fatal: the kernel datapath must come up even where eBPF is denied.
func (d *Daemon) kernel(ctx context.Context) datapath.Datapath {
	if env, err := subnetfile.Read(d.cfg.SubnetFile); err == nil && env.BPFDir != "" {
		env.BPFDir, env.EndpointDir = "", ""
		if err := subnetfile.Write(d.cfg.SubnetFile, env); err != nil {
			slog.Warn("could not drop WEFT_BPF_DIR from the subnet file; it goes with the next write", "err", err)
		}
	}
	if err := d.cfg.Datapaths.RemoveEBPF(ctx); err != nil {
		slog.Error("could not remove what an earlier eBPF datapath left: its programs may drop "+
			"traffic of nodes that join later (`weftd --cleanup` removes them)", "err", err)
	}
	return d.cfg.Datapaths.Kernel()
}

// leaseAttrs is what this node publishes: flannel's lease JSON, a public
// IP and backend data for each family sel has an address of. VXLAN leaves
// from the interface's address; when --public-ip (--public-ipv6) names
// another, the family's data says so (TunnelIP), so weft peers accept it.
// udp and host-gw leases carry no backend data, wireguard ones the public
// key (one for both families) and the family's device port (ListenPort,
// ListenPortV6), as flanneld's.
func leaseAttrs(sel iface.Selected, b netconf.Backend, info datapath.Info) (lease.Attrs, error) {
	a := lease.Attrs{PublicIP: sel.PublicIP, BackendType: b.Type}
	if sel.PublicIPv6.IsValid() {
		ip6 := sel.PublicIPv6
		a.PublicIPv6 = &ip6
	}
	for _, f := range []struct {
		on              bool
		ifaceIP, public netip.Addr
		mac             net.HardwareAddr
		wgPort          int
		dst             *json.RawMessage
	}{
		{sel.IP.IsValid(), sel.IP, sel.PublicIP, info.VtepMAC, b.Port, &a.BackendData},
		{sel.IPv6.IsValid(), sel.IPv6, sel.PublicIPv6, info.VtepMACv6, b.ListenPortV6, &a.BackendV6Data},
	} {
		var data any
		switch {
		case !f.on:
			continue
		case b.Type == netconf.BackendVXLAN:
			d := lease.VXLANData{VNI: b.VNI, VtepMAC: f.mac.String()}
			if f.ifaceIP != f.public {
				d.TunnelIP = f.ifaceIP.String()
			}
			data = d
		case b.Type == netconf.BackendWireGuard:
			data = lease.WireGuardData{PublicKey: info.PublicKey, Port: f.wgPort}
		default:
			continue
		}
		raw, err := json.Marshal(data)
		if err != nil {
			return a, fmt.Errorf("encode %s lease data: %w", b.Type, err)
		}
		*f.dst = raw
	}
	return a, nil
}

// previousSubnets are the subnets this node had before (from the subnet
// file), of each family whose network is unchanged, offered to the lease
// source as a hint so a restart keeps pod addresses.
func (d *Daemon) previousSubnets(nc *netconf.Config) lease.Lease {
	var l lease.Lease
	env, err := subnetfile.Read(d.cfg.SubnetFile)
	if err != nil {
		return l
	}
	if nc.EnableIPv4 && env.Network == nc.Network {
		l.Subnet = env.Subnet
	}
	if nc.EnableIPv6 && env.IPv6Network == nc.IPv6Network {
		l.IPv6Subnet = env.IPv6Subnet
	}
	return l
}

// applyOwn configures the datapath for the own subnet of each family and
// publishes them.
func (d *Daemon) applyOwn(ctx context.Context, mtu int) error {
	d.mu.Lock()
	own, nc, dp := d.own, d.net, d.dp
	d.mu.Unlock()
	for _, h := range own.Halves() {
		if err := dp.SetSubnet(ctx, h.Subnet); err != nil {
			return fmt.Errorf("configure subnet %s: %w", h.Subnet, err)
		}
	}
	env := subnetfile.Env{
		Network: nc.Network, Subnet: own.Subnet, IPv6Network: nc.IPv6Network, IPv6Subnet: own.IPv6Subnet,
		MTU: mtu, IPMasq: d.cfg.IPMasq,
	}
	if dp.Name() == netconf.DatapathEBPF {
		env.BPFDir = d.cfg.Datapaths.BPFDir()
		env.EndpointDir = d.cfg.Datapaths.EndpointDir()
	}
	if err := d.fw.Ensure(ctx, d.firewallConfig()); err != nil {
		return fmt.Errorf("install firewall rules: %w", err)
	}
	if err := subnetfile.Write(d.cfg.SubnetFile, env); err != nil {
		return fmt.Errorf("write subnet file: %w", err)
	}
	slog.Info("subnet file written", "path", d.cfg.SubnetFile, "subnet", own.String(), "mtu", mtu)
	d.setReady(nil)
	return nil
}

// setLeases takes an update from the lease source and tells the
// reconciler which peers it changed.
func (d *Daemon) setLeases(u lease.Update) {
	d.mu.Lock()
	peers, rec, name := d.peers, d.rec, d.backend+"-"+d.dp.Name()
	d.mu.Unlock()
	keys := peers.update(u)
	n := peers.Len()
	d.cfg.Metrics.LeaseEvent(metrics.LeaseSetChanged)
	d.cfg.Metrics.SetPeers(map[string]int{name: n})
	slog.Debug("leases changed", "full", u.Full, "leases", len(u.Changes), "peers", n, "changed", len(keys))
	if peers.complete() {
		rec.Changed(keys...)
	}
}

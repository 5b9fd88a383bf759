// Package ebpf is weft's eBPF datapath: tc programs (bpf/weft.c) that carry
// pod traffic between nodes in flannel's wire format, vxlan or host-gw,
// without the host stack. It composes the kernel datapath as its slow path:
// host-originated traffic, Service (NATed) traffic and whatever the programs
// pass up go through flannel.<VNI> and routes exactly as with flannel.
//
// Maps and tcx links are pinned in Options.BPFDir, so a restarted process
// adopts them (programs are replaced in place) without interrupting traffic.
//
// A Datapath works in the network namespace of the thread that called New.
package ebpf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/datapath/kernel"
	"github.com/weftnet/weft/pkg/endpoint"
)

// Defaults of Options.
const (
	DefaultBPFDir = "/sys/fs/bpf/weft"
	DefaultBridge = "cni0"
)

// Attach modes of Options.Attach.
const (
	AttachAuto = "auto" // tcx when the kernel has it, else tc
	AttachTCX  = "tcx"  // tcx links (Linux >= 6.6)
	AttachTC   = "tc"   // clsact qdisc + direct-action cls_bpf filters
)

// Options configure a Datapath.
type Options struct {
	// BPFDir holds the pinned maps and links; a bpf filesystem is mounted
	// there if it is on none. Default DefaultBPFDir.
	BPFDir string
	// EndpointDir holds the pod endpoint records weft-cni writes
	// (pkg/endpoint), the truth the endpoint maps are derived from.
	// Default endpoint.DefaultDir.
	EndpointDir string
	// Bridge is the pods' bridge (created by the bridge CNI plugin with the
	// first pod). Default DefaultBridge.
	Bridge string
	// Attach is AttachAuto (default), AttachTCX or AttachTC.
	Attach string
}

// Endpoint is a local pod as the CNI plugin registers it.
type Endpoint struct {
	// IP is one of the pod's addresses, IPv4 or IPv6.
	IP netip.Addr
	// HostIfindex is the ifindex of the host side of the pod's veth.
	HostIfindex int
	// MAC is the pod's (container side) MAC address.
	MAC net.HardwareAddr
}

// Datapath is the eBPF datapath. Create it with New.
type Datapath struct {
	opts Options
	// ns is the network namespace everything runs in (the caller's of New).
	ns   netns.NsHandle
	slow *kernel.Datapath

	mu sync.Mutex
	// objs is nil until Setup has loaded the programs.
	objs *weftObjects
	node datapath.Node
	cfg  weftNodeConfig
	// tc is true once the attach mode resolved to tc.
	tc bool
	// staged are the pin changes of an upgrade that wait until the new
	// maps are filled (see swapIn); nil when the programs run on the
	// pinned maps.
	staged []stagedPin
	// stopWatch ends the link watcher; nil when none runs.
	stopWatch func()
	// stopOffload ends the conntrack offload goroutine; nil when none runs.
	stopOffload func()
	// sel holds the peer set of the last Sync and the Applies since, and
	// which of its peers are in the maps; nil until a Sync after Setup.
	sel *datapath.Selector
	// last is what the last Sync or Apply wrote to the maps, if it
	// succeeded and no Setup or subnet change came after it; nil makes
	// Apply rewrite the maps from the whole selection.
	last *written
}

var (
	_ datapath.Datapath = (*Datapath)(nil)
	_ datapath.Applier  = (*Datapath)(nil)
)

// New checks opts and returns a Datapath bound to the calling thread's
// network namespace. Nothing in the kernel changes until Setup (or Cleanup).
func New(opts Options) (*Datapath, error) {
	if opts.BPFDir == "" {
		opts.BPFDir = DefaultBPFDir
	}
	if opts.EndpointDir == "" {
		opts.EndpointDir = endpoint.DefaultDir
	}
	if opts.Bridge == "" {
		opts.Bridge = DefaultBridge
	}
	switch opts.Attach {
	case "":
		opts.Attach = AttachAuto
	case AttachAuto, AttachTCX, AttachTC:
	default:
		return nil, fmt.Errorf("tc attach mode %q is not one of auto, tcx, tc: fix --tc-attach", opts.Attach)
	}
	abs, err := filepath.Abs(opts.BPFDir)
	if err != nil {
		return nil, fmt.Errorf("bpf dir %s: %w", opts.BPFDir, err)
	}
	opts.BPFDir = abs
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("get current network namespace: %w", err)
	}
	return &Datapath{opts: opts, ns: ns, slow: kernel.New(), tc: opts.Attach == AttachTC}, nil
}

// Name returns "ebpf".
func (d *Datapath) Name() string { return "ebpf" }

// Close stops the link watcher and releases the process's file descriptors.
// Pinned maps and links stay: the programs keep forwarding.
func (d *Datapath) Close() error {
	d.mu.Lock()
	stops := []func(){d.stopWatch, d.stopOffload}
	d.stopWatch, d.stopOffload = nil, nil
	d.mu.Unlock()
	for _, stop := range stops {
		if stop != nil {
			stop() // outside d.mu: the watcher takes it
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	if d.objs != nil {
		if err := d.objs.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close eBPF objects: %w", err))
		}
		d.objs = nil
	}
	if d.ns.IsOpen() {
		errs = append(errs, d.ns.Close())
	}
	return errors.Join(append(errs, d.slow.Close())...)
}

// Setup mounts bpffs if needed, sets up the kernel slow path, loads the
// programs (reusing pinned maps), writes the node config and attaches to the
// uplink and, once it exists, the bridge. Programs already attached by an
// earlier process are replaced in place; when a map definition changed (an
// upgrade), only by the first Sync, which fills the new maps.
func (d *Datapath) Setup(ctx context.Context, node datapath.Node) (datapath.Info, error) {
	if err := ctx.Err(); err != nil {
		return datapath.Info{}, err
	}
	var info datapath.Info
	err := d.inNS(func() error {
		var err error
		info, err = d.setup(ctx, node)
		return err
	})
	if err != nil {
		return datapath.Info{}, err
	}
	if err := d.watch(); err != nil {
		return datapath.Info{}, err
	}
	if err := d.offload(); err != nil {
		return datapath.Info{}, err
	}
	return info, nil
}

func (d *Datapath) setup(ctx context.Context, node datapath.Node) (datapath.Info, error) {
	if len(node.Families()) == 0 {
		return datapath.Info{}, errors.New("the node has no address family on (no node IP with its network)")
	}
	if err := ensureBPFFS(d.opts.BPFDir); err != nil {
		return datapath.Info{}, err
	}
	info, err := d.slow.Setup(ctx, node)
	if err != nil {
		return datapath.Info{}, fmt.Errorf("kernel slow path: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// The node (which peers are acceptable, their modes) and, on a first
	// load, the maps may be new: what Apply knows is void.
	d.last, d.sel = nil, nil
	if d.objs == nil {
		// Before the programs load: an upgrade may replace the old map.
		if err := adoptEndpoints(d.opts.BPFDir, d.opts.Bridge, endpoint.Store{Dir: d.opts.EndpointDir}); err != nil {
			slog.Warn("adopting endpoints failed: their pods take the kernel path", "err", err)
		}
		objs, staged, err := loadPinned(d.opts.BPFDir)
		if err != nil {
			return datapath.Info{}, err
		}
		d.objs, d.staged = objs, staged
		// Start from what an earlier process stored (its subnet stays
		// until SetSubnet).
		if err := objs.WeftConfig.Lookup(configKey, &d.cfg); err != nil {
			return datapath.Info{}, fmt.Errorf("read node config map: %w", err)
		}
	}
	d.node = node
	if err := ensureTracking(); err != nil {
		return datapath.Info{}, err
	}
	if err := d.writeNodeConfig(info); err != nil {
		return datapath.Info{}, err
	}
	if err := d.syncEndpoints(); err != nil {
		return datapath.Info{}, err
	}
	if err := d.swapIn(false); err != nil {
		return datapath.Info{}, err
	}
	slog.Info("ebpf datapath ready", "node", node.NodeIP, "node_ipv6", node.NodeIPv6, "backend", node.Backend,
		"uplink", node.Uplink, "bridge", d.opts.Bridge, "bpf_dir", d.opts.BPFDir, "attach", d.attachMode(),
		"programs_swapped_at_first_sync", len(d.staged) > 0)
	return info, nil
}

// SetSubnet records this node's pod subnet of subnet's family in the node
// config and the slow path (called once per enabled family).
func (d *Datapath) SetSubnet(ctx context.Context, subnet netip.Prefix) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.inNS(func() error {
		// d.mu first: the slow path changes the Selector it shares with
		// Apply.
		d.mu.Lock()
		defer d.mu.Unlock()
		if err := d.slow.SetSubnet(ctx, subnet); err != nil {
			return fmt.Errorf("kernel slow path: %w", err)
		}
		if d.objs == nil {
			return fmt.Errorf("set subnet %s: Setup has not succeeded yet", subnet)
		}
		fc := &d.cfg.Family[familyOf(subnet.Addr())]
		if fc.NodeIp == (weftAddr{}) {
			return fmt.Errorf("set subnet %s: the node has no node IP of its family", subnet)
		}
		if subnet != prefixOf(fc.Subnet, fc.SubnetLen) {
			// The own subnet decides which peers are acceptable.
			// The slow path gave the shared Selector the new subnet.
			d.last = nil
		}
		ifindex := fc.VxlanIfindex
		*fc = familyConfig(addrOf(fc.NodeIp), subnet, prefixOf(fc.Network, fc.NetworkLen), optionalMAC(fc.VtepMac))
		fc.VxlanIfindex = ifindex
		return d.putNodeConfig()
	})
}

// pinnedMap opens one of the maps pinned in bpfDir.
func pinnedMap(bpfDir, name string) (*ebpf.Map, error) {
	return ebpf.LoadPinnedMap(filepath.Join(bpfDir, name), nil)
}

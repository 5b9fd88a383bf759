// Package datapath is the interface between weft's control plane and the
// code that forwards pod traffic between nodes. Implementations (package
// datapath/kernel, package datapath/ebpf) know nothing of etcd or Kubernetes:
// they are told what this node is and which peers exist, and make the kernel
// state equal to that.
package datapath

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// Mode is how traffic to one peer's subnet is carried.
type Mode string

// Modes of a peer.
const (
	// ModeVXLAN encapsulates in VXLAN (UDP) to the peer's node IP.
	ModeVXLAN Mode = "vxlan"
	// ModeHostGW routes unchanged with the peer's node IP as next hop.
	ModeHostGW Mode = "host-gw"
	// ModeUDP carries the pod's IP packet as the payload of a UDP
	// datagram to the peer's node IP (flannel's udp backend).
	ModeUDP Mode = "udp"
	// ModeWireGuard encrypts with WireGuard to the peer's node IP.
	ModeWireGuard Mode = "wireguard"
)

// Node describes this node to a datapath.
type Node struct {
	// NodeIP is the address peers send to (flannel's PublicIP).
	NodeIP netip.Addr
	// Uplink is the name of the interface that carries NodeIP's traffic.
	Uplink string
	// Network is the cluster's pod network (e.g. 10.244.0.0/16).
	Network netip.Prefix
	// Backend is ModeVXLAN, ModeHostGW, ModeUDP or ModeWireGuard.
	Backend Mode
	// VNI is the VXLAN network identifier; Port the UDP port of vxlan,
	// udp or wireguard (its ListenPort).
	VNI, Port int
	// DirectRouting carries traffic to peers on the uplink's L2 segment as
	// host-gw even when Backend is ModeVXLAN.
	DirectRouting bool
	// GBP and Learning are the kernel vxlan device options of those names.
	GBP, Learning bool
	// MTU of the vxlan or wireguard device; 0 means the uplink MTU minus
	// the encapsulation.
	MTU int
	// WireGuard holds the wireguard backend's settings.
	WireGuard WireGuard
}

// WireGuard is what the wireguard backend needs besides Node's Port and
// MTU.
type WireGuard struct {
	// PSK is the pre-shared key (base64) used with every peer; "" for
	// none.
	PSK string
	// Keepalive is the persistent keepalive interval; 0 turns it off.
	Keepalive time.Duration
	// KeyFile holds this node's private key across restarts (flannel's
	// /run/flannel/wgkey); it is created when missing.
	KeyFile string
}

// Info is what a datapath reports after Setup, to be published in the lease
// and the subnet file.
type Info struct {
	// VtepMAC is this node's VXLAN tunnel endpoint MAC (vxlan only).
	VtepMAC net.HardwareAddr
	// PublicKey is this node's WireGuard public key, base64 (wireguard
	// only).
	PublicKey string
	// MTU is the MTU pods must use.
	MTU int
}

// Peer is another node's subnet as the datapath must reach it.
type Peer struct {
	Subnet  netip.Prefix
	NodeIP  netip.Addr
	VtepMAC net.HardwareAddr // vxlan leases only
	// TunnelIP is the address the peer's VXLAN comes from when its lease
	// says it differs from NodeIP (its --public-ip); zero otherwise.
	TunnelIP netip.Addr
	// PublicKey is the peer's WireGuard public key, base64 (wireguard
	// leases only).
	PublicKey string
	// Mode is decided by the datapath from Node.Backend and DirectRouting;
	// callers leave it empty.
	Mode Mode
}

// Counter is one datapath counter, as exported for metrics.
type Counter struct {
	// Backend is e.g. "vxlan-ebpf", "host-gw-ebpf", "vxlan-kernel".
	Backend string
	// Direction is "tx" or "rx"; empty for drops.
	Direction string
	// Reason is the drop reason; empty for forwarded traffic.
	Reason  string
	Packets uint64
	Bytes   uint64
}

// Datapath forwards pod traffic between nodes.
type Datapath interface {
	// Name is "ebpf" or "kernel".
	Name() string
	// Setup creates or adopts the node-level state (devices, programs) for
	// node. It is idempotent and keeps state left by an earlier process, so
	// a restart does not interrupt traffic.
	Setup(ctx context.Context, node Node) (Info, error)
	// SetSubnet configures this node's own pod subnet. Idempotent.
	SetSubnet(ctx context.Context, subnet netip.Prefix) error
	// Sync makes the forwarding state equal to peers: it adds what is
	// missing, repairs what differs and removes what no peer backs. It is
	// idempotent and safe to call at any time.
	Sync(ctx context.Context, peers []Peer) error
	// Stats reads the datapath's counters.
	Stats() ([]Counter, error)
	// Close releases what the process holds and leaves the kernel state in
	// place (hitless restart).
	Close() error
	// Cleanup removes everything the datapath created (uninstall).
	Cleanup(ctx context.Context) error
}

// PeerKey identifies a peer: one subnet leased by one node IP. A peer set
// holds each key once.
type PeerKey struct {
	Subnet netip.Prefix
	NodeIP netip.Addr
}

// Key returns p's key.
func (p Peer) Key() PeerKey { return PeerKey{p.Subnet, p.NodeIP} }

// Changes is a change to a peer set: peers added or changed (Set, by key),
// and the keys of peers gone (Removed). A key is in at most one of the two.
type Changes struct {
	Set     []Peer
	Removed []PeerKey
}

// Empty reports whether c changes nothing.
func (c Changes) Empty() bool { return len(c.Set) == 0 && len(c.Removed) == 0 }

// Applier is implemented by datapaths that can apply a change to the peer
// set they were last given, at a cost that depends on the size of the
// change and not on the number of peers: cheap enough to run on every lease
// event with thousands of peers. The reconciler calls Sync with the whole
// set first and on its periodic resync (Sync reads the kernel state back and
// repairs drift), and Apply for the changes in between. Apply never reads
// the kernel state; when the previous Sync or Apply failed it rewrites the
// whole set it holds. Apply before any Sync returns an error.
type Applier interface {
	Apply(ctx context.Context, changes Changes) error
}

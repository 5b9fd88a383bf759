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
	// NodeIP is the IPv4 address peers send IPv4 pod traffic to (the
	// interface's address behind flannel's PublicIP); invalid when IPv4 is
	// off (an IPv6-only cluster).
	NodeIP netip.Addr
	// NodeIPv6 is the IPv6 address peers send IPv6 pod traffic to
	// (flannel's PublicIPv6); invalid when IPv6 is off.
	NodeIPv6 netip.Addr
	// Uplink is the name of the interface that carries the node IPs'
	// traffic (both families: flannel uses one interface).
	Uplink string
	// Network is the cluster's IPv4 pod network (e.g. 10.244.0.0/16);
	// IPv6Network its IPv6 one. A family's Network is valid exactly when
	// its node IP is.
	Network, IPv6Network netip.Prefix
	// Backend is ModeVXLAN, ModeHostGW, ModeUDP or ModeWireGuard.
	Backend Mode
	// VNI is the VXLAN network identifier; Port the UDP port of vxlan,
	// udp or wireguard (its ListenPort, of the IPv4 device; the IPv6 one's
	// is WireGuard.PortV6).
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

// Family is one address family's half of a Node.
type Family struct {
	// NodeIP is the node's address of the family; Network the pod network.
	NodeIP  netip.Addr
	Network netip.Prefix
}

// V6 reports whether f is the IPv6 family.
func (f Family) V6() bool { return f.Network.Addr().Is6() }

// Families returns the node's enabled address families, IPv4 first.
func (n Node) Families() []Family {
	var fs []Family
	for _, f := range []Family{{n.NodeIP, n.Network}, {n.NodeIPv6, n.IPv6Network}} {
		if f.NodeIP.IsValid() && f.Network.IsValid() {
			fs = append(fs, f)
		}
	}
	return fs
}

// Family returns the node's family of addr's kind (IPv4 or IPv6) and
// whether it is enabled.
func (n Node) Family(addr netip.Addr) (Family, bool) {
	f := Family{n.NodeIP, n.Network}
	if addr.Is6() && !addr.Is4In6() {
		f = Family{n.NodeIPv6, n.IPv6Network}
	}
	return f, f.NodeIP.IsValid() && f.Network.IsValid()
}

// WireGuard is what the wireguard backend needs besides Node's Port and
// MTU. As flannel's default Mode "separate", each enabled family has its
// own device (flannel-wg over IPv4, flannel-wg-v6 over IPv6), both with the
// one private key of KeyFile.
type WireGuard struct {
	// PortV6 is the IPv6 device's ListenPort (flannel's ListenPortV6); 0
	// means 51821.
	PortV6 int
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
	// VtepMAC is this node's VXLAN tunnel endpoint MAC (vxlan with IPv4:
	// flannel.<VNI>'s); VtepMACv6 the IPv6 one (vxlan with IPv6:
	// flannel-v6.<VNI>'s, flannel's BackendV6Data).
	VtepMAC, VtepMACv6 net.HardwareAddr
	// PublicKey is this node's WireGuard public key, base64 (wireguard
	// only): the one key of both families' devices, as flannel's.
	PublicKey string
	// MTU is the MTU pods must use: the smallest of the enabled
	// families' (an IPv6 underlay costs 20 bytes more).
	MTU int
}

// Peer is another node's subnet of one address family as the datapath must
// reach it. A dual-stack lease is two peers: its IPv4 subnet with PublicIP
// and BackendData's VtepMAC, and its IPv6 subnet with PublicIPv6 and
// BackendV6Data's VtepMAC. Subnet and NodeIP are of one family.
type Peer struct {
	Subnet  netip.Prefix
	NodeIP  netip.Addr
	VtepMAC net.HardwareAddr // vxlan leases only: the family's VTEP
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
	// SetSubnet configures this node's own pod subnet of subnet's address
	// family; a dual-stack node calls it once per family. Idempotent.
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

// Package lease defines the subnet lease model shared by the lease sources
// (etcd in package lease/etcd, Kubernetes in package lease/kube) and the
// control plane that consumes them. A lease source never touches the datapath.
package lease

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/weftnet/weft/pkg/netconf"
)

// Attrs are what a node publishes with its lease, in flannel's JSON layout
// ({"PublicIP":...,"BackendType":...,"BackendData":...}).
type Attrs struct {
	PublicIP    netip.Addr      `json:"PublicIP"`
	PublicIPv6  *netip.Addr     `json:"PublicIPv6"`
	BackendType string          `json:"BackendType"`
	BackendData json.RawMessage `json:"BackendData,omitempty"`
}

// Lease is one node's claim on a pod subnet.
type Lease struct {
	Subnet netip.Prefix
	Attrs  Attrs
	// Expiration is when the lease runs out; zero for a permanent reservation
	// or a lease source without expiry (Kubernetes).
	Expiration time.Time
}

// Sort orders leases by subnet (netip.Prefix.Compare: address, then prefix
// length), leases of one subnet by PublicIP, so that a lease set always
// comes in the same order.
func Sort(ls []Lease) {
	slices.SortFunc(ls, func(a, b Lease) int {
		return cmp.Or(a.Subnet.Compare(b.Subnet), a.Attrs.PublicIP.Compare(b.Attrs.PublicIP))
	})
}

// VXLANData is the BackendData of a vxlan lease.
type VXLANData struct {
	VNI     int    `json:"VNI"`
	VtepMAC string `json:"VtepMAC"`
	// TunnelIP is weft's addition: the address the node's VXLAN packets
	// come from, published only when it differs from PublicIP (--public-ip
	// names another address than the interface's). flannel ignores it.
	TunnelIP string `json:"TunnelIP,omitempty"`
}

// WireGuardData is the BackendData of a wireguard lease.
type WireGuardData struct {
	PublicKey string `json:"PublicKey"`
}

// WireGuardKey decodes a wireguard lease's public key (base64 of 32
// bytes).
func (l Lease) WireGuardKey() (string, error) {
	var d WireGuardData
	if err := json.Unmarshal(l.Attrs.BackendData, &d); err != nil {
		return "", fmt.Errorf("lease %s: decode wireguard BackendData: %w", l.Subnet, err)
	}
	if k, err := base64.StdEncoding.DecodeString(d.PublicKey); err != nil || len(k) != 32 {
		return "", fmt.Errorf("lease %s: PublicKey %q is not a wireguard key (base64 of 32 bytes)", l.Subnet, d.PublicKey)
	}
	return d.PublicKey, nil
}

// VXLAN decodes a vxlan lease's VTEP MAC and tunnel source address (the
// zero Addr when the lease names none: its PublicIP).
func (l Lease) VXLAN() (net.HardwareAddr, netip.Addr, error) {
	var d VXLANData
	if err := json.Unmarshal(l.Attrs.BackendData, &d); err != nil {
		return nil, netip.Addr{}, fmt.Errorf("lease %s: decode vxlan BackendData: %w", l.Subnet, err)
	}
	mac, err := net.ParseMAC(d.VtepMAC)
	if err != nil {
		return nil, netip.Addr{}, fmt.Errorf("lease %s: VtepMAC %q: %w", l.Subnet, d.VtepMAC, err)
	}
	var tunnel netip.Addr
	if d.TunnelIP != "" {
		if tunnel, err = netip.ParseAddr(d.TunnelIP); err != nil {
			return nil, netip.Addr{}, fmt.Errorf("lease %s: TunnelIP %q: %w", l.Subnet, d.TunnelIP, err)
		}
	}
	return mac, tunnel, nil
}

// VtepMAC decodes the VTEP MAC of a vxlan lease.
func (l Lease) VtepMAC() (net.HardwareAddr, error) {
	mac, _, err := l.VXLAN()
	return mac, err
}

// Manager is a source of subnet leases.
type Manager interface {
	// NetworkConfig returns the cluster's network configuration.
	NetworkConfig(ctx context.Context) (*netconf.Config, error)
	// Acquire obtains this node's lease: the lease that already carries
	// attrs.PublicIP if there is one, else hint if it is valid and free, else
	// a free subnet. Two nodes never hold one subnet.
	Acquire(ctx context.Context, attrs Attrs, hint netip.Prefix) (Lease, error)
	// Keep holds the lease until ctx ends: it renews it before it expires and
	// reacquires it (same subnet first) if it vanishes, retrying with backoff
	// while the source is unreachable. It calls changed whenever the held lease
	// changes (renewed expiry or a new subnet). It never gives up on its own.
	Keep(ctx context.Context, l Lease, changed func(Lease))
	// Watch tells update about the set of valid leases, the own one
	// included, until ctx ends: first the complete set (Update.Full), then
	// each change to it, a burst batched into one call. After a re-list
	// (compaction, reconnect) it sends only what differs from what it sent
	// before. While the source is unreachable it keeps the last set and
	// retries; leases it cannot parse are logged and left out (a lease that
	// becomes unparseable is removed).
	Watch(ctx context.Context, update func(Update))
}

// Change is one lease added, changed or removed, named by the source's key
// for it (the etcd key, the Node name).
type Change struct {
	Key string
	// Lease is the lease now held under Key; zero when Removed.
	Lease   Lease
	Removed bool
}

// Update is one delivery of a lease watch.
type Update struct {
	// Full means Changes hold every valid lease (none Removed), and keys
	// the receiver holds that are not among them are gone.
	Full    bool
	Changes []Change
}

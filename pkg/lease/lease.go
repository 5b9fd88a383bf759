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
// ({"PublicIP":...,"PublicIPv6":...,"BackendType":...,"BackendData":...,
// "BackendV6Data":...}). PublicIP is invalid when the node has no IPv4
// half (IPv6 only); in JSON that is flannel's "0.0.0.0".
type Attrs struct {
	PublicIP    netip.Addr      `json:"PublicIP"`
	PublicIPv6  *netip.Addr     `json:"PublicIPv6"`
	BackendType string          `json:"BackendType"`
	BackendData json.RawMessage `json:"BackendData,omitempty"`
	// BackendV6Data is the IPv6 half's backend data (vxlan: the VTEP MAC
	// of flannel-v6.<VNI>).
	BackendV6Data json.RawMessage `json:"BackendV6Data,omitempty"`
}

// attrsJSON is Attrs without its JSON methods.
type attrsJSON Attrs

// MarshalJSON writes flannel's lease value; an invalid PublicIP is
// written as "0.0.0.0", as flannel writes it for an IPv6-only node.
func (a Attrs) MarshalJSON() ([]byte, error) {
	j := attrsJSON(a)
	if !j.PublicIP.IsValid() {
		j.PublicIP = netip.IPv4Unspecified()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads flannel's lease value; PublicIP "0.0.0.0" (an
// IPv6-only node) becomes the invalid Addr.
func (a *Attrs) UnmarshalJSON(data []byte) error {
	var j attrsJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	if j.PublicIP.IsUnspecified() {
		j.PublicIP = netip.Addr{}
	}
	*a = Attrs(j)
	return nil
}

// Lease is one node's claim on a pod subnet of each enabled address
// family.
type Lease struct {
	// Subnet is the IPv4 subnet, IPv6Subnet the IPv6 one; each is invalid
	// when the lease has no half of that family.
	Subnet     netip.Prefix
	IPv6Subnet netip.Prefix
	Attrs      Attrs
	// Expiration is when the lease runs out; zero for a permanent reservation
	// or a lease source without expiry (Kubernetes).
	Expiration time.Time
}

// Half is one address family's part of a lease: its subnet, the public IP
// of that family and the family's backend data.
type Half struct {
	Subnet      netip.Prefix
	PublicIP    netip.Addr
	BackendData json.RawMessage
}

// Halves returns the lease's halves that have a subnet, IPv4 first; a
// half's PublicIP may be invalid (the lease publishes none).
func (l Lease) Halves() []Half {
	var hs []Half
	if l.Subnet.IsValid() {
		hs = append(hs, Half{l.Subnet, l.Attrs.PublicIP, l.Attrs.BackendData})
	}
	if l.IPv6Subnet.IsValid() {
		var ip netip.Addr
		if l.Attrs.PublicIPv6 != nil {
			ip = *l.Attrs.PublicIPv6
		}
		hs = append(hs, Half{l.IPv6Subnet, ip, l.Attrs.BackendV6Data})
	}
	return hs
}

// String names the lease by its subnets, e.g. "10.244.3.0/24" or
// "10.244.3.0/24+fd10:244:0:3::/64", for logs and errors.
func (l Lease) String() string {
	switch {
	case !l.IPv6Subnet.IsValid():
		return l.Subnet.String()
	case !l.Subnet.IsValid():
		return l.IPv6Subnet.String()
	}
	return l.Subnet.String() + "+" + l.IPv6Subnet.String()
}

// Sort orders leases by subnet (netip.Prefix.Compare: address, then prefix
// length; IPv4 subnet first, then IPv6), leases of one subnet by PublicIP,
// then PublicIPv6, so that a lease set always comes in the same order.
func Sort(ls []Lease) {
	v6 := func(a *netip.Addr) netip.Addr {
		if a == nil {
			return netip.Addr{}
		}
		return *a
	}
	slices.SortFunc(ls, func(a, b Lease) int {
		return cmp.Or(a.Subnet.Compare(b.Subnet), a.IPv6Subnet.Compare(b.IPv6Subnet),
			a.Attrs.PublicIP.Compare(b.Attrs.PublicIP), v6(a.Attrs.PublicIPv6).Compare(v6(b.Attrs.PublicIPv6)))
	})
}

// VXLANData is the BackendData of a vxlan lease.
type VXLANData struct {
	VNI     int    `json:"VNI"`
	VtepMAC string `json:"VtepMAC"`
	// TunnelIP is weft's addition: the address the node's VXLAN packets
	// come from, published only when it differs from the half's public IP
	// (--public-ip or --public-ipv6 names another address than the
	// interface's). flannel ignores it.
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

// VXLAN decodes the VTEP MAC and tunnel source address (the zero Addr
// when the lease names none: its PublicIP) of a vxlan lease's IPv4 half.
func (l Lease) VXLAN() (net.HardwareAddr, netip.Addr, error) {
	return Half{Subnet: l.Subnet, BackendData: l.Attrs.BackendData}.VXLAN()
}

// VtepMAC decodes the VTEP MAC of a vxlan lease's IPv4 half.
func (l Lease) VtepMAC() (net.HardwareAddr, error) {
	mac, _, err := l.VXLAN()
	return mac, err
}

// VXLAN decodes the half's vxlan backend data: the VTEP MAC and the tunnel
// source address (the zero Addr when it names none: the half's PublicIP).
func (h Half) VXLAN() (net.HardwareAddr, netip.Addr, error) {
	var d VXLANData
	if err := json.Unmarshal(h.BackendData, &d); err != nil {
		return nil, netip.Addr{}, fmt.Errorf("lease %s: decode vxlan backend data: %w", h.Subnet, err)
	}
	mac, err := net.ParseMAC(d.VtepMAC)
	if err != nil {
		return nil, netip.Addr{}, fmt.Errorf("lease %s: VtepMAC %q: %w", h.Subnet, d.VtepMAC, err)
	}
	var tunnel netip.Addr
	if d.TunnelIP != "" {
		if tunnel, err = netip.ParseAddr(d.TunnelIP); err != nil {
			return nil, netip.Addr{}, fmt.Errorf("lease %s: TunnelIP %q: %w", h.Subnet, d.TunnelIP, err)
		}
	}
	return mac, tunnel, nil
}

// Manager is a source of subnet leases.
type Manager interface {
	// NetworkConfig returns the cluster's network configuration.
	NetworkConfig(ctx context.Context) (*netconf.Config, error)
	// Acquire obtains this node's lease, with a subnet of each enabled
	// family: the lease that already carries attrs.PublicIP (or
	// attrs.PublicIPv6) if there is one, else for each family hint's subnet
	// of that family if it is valid and free, else a free subnet. Two nodes
	// never hold one subnet.
	Acquire(ctx context.Context, attrs Attrs, hint Lease) (Lease, error)
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

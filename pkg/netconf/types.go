// Package netconf parses and validates net-conf.json, flannel's network
// configuration, plus weft's own Backend.Datapath key.
package netconf

import (
	"net/netip"
	"time"
)

// Backend types weft can run.
const (
	BackendVXLAN     = "vxlan"
	BackendHostGW    = "host-gw"
	BackendUDP       = "udp"
	BackendWireGuard = "wireguard"
)

// Datapath choices for Backend.Datapath (a weft extension).
const (
	DatapathAuto   = "auto"
	DatapathEBPF   = "ebpf"
	DatapathKernel = "kernel"
)

// Config is a validated net-conf.json with every default filled in.
type Config struct {
	// Network, SubnetLen, SubnetMin and SubnetMax are the IPv4 pod network
	// and its leasable subnets; zero when EnableIPv4 is false.
	Network   netip.Prefix
	SubnetLen int
	SubnetMin netip.Addr
	SubnetMax netip.Addr
	// EnableIPv4 (default true) and EnableIPv6 turn the address families
	// on; at least one is on.
	EnableIPv4 bool
	EnableIPv6 bool
	// IPv6Network, IPv6SubnetLen, IPv6SubnetMin and IPv6SubnetMax are the
	// IPv6 ones; zero when EnableIPv6 is false.
	IPv6Network    netip.Prefix
	IPv6SubnetLen  int
	IPv6SubnetMin  netip.Addr
	IPv6SubnetMax  netip.Addr
	EnableNFTables bool
	Backend        Backend
	// DefaultedBackend is true when net-conf.json has no Backend and vxlan
	// was chosen (flannel would pick udp); the caller should log it.
	DefaultedBackend bool
	// Ignored lists keys weft does not use (unknown keys, or options of
	// another backend type), e.g. "Backend.VNI", for the caller to log.
	Ignored []string
}

// Backend is the validated Backend object of net-conf.json.
type Backend struct {
	// Type is BackendVXLAN, BackendHostGW, BackendUDP or
	// BackendWireGuard.
	Type string
	// VNI is the VXLAN network identifier (vxlan only, default 1).
	VNI int
	// Port is the UDP port: vxlan's (default 8472), udp's (default 8285)
	// or wireguard's ListenPort (default 51820).
	Port int
	// GBP enables VXLAN group based policy (vxlan only, kernel datapath).
	GBP bool
	// DirectRouting routes to peers on the same L2 segment without
	// encapsulation (vxlan only).
	DirectRouting bool
	// Learning enables source address learning on the vxlan device.
	Learning bool
	// MTU overrides the vxlan or wireguard device MTU; 0 means the
	// uplink MTU minus the encapsulation (50 for vxlan, 80 for wireguard).
	MTU int
	// PSK is wireguard's pre-shared key (base64), empty for none.
	PSK string
	// ListenPortV6 is wireguard's port for IPv6 (flannel's option; weft's
	// wireguard backend carries IPv4 only).
	ListenPortV6 int
	// Keepalive is wireguard's PersistentKeepaliveInterval (0: off).
	Keepalive time.Duration
	// WireGuardMode is wireguard's Mode: separate, auto, ipv4 or ipv6.
	WireGuardMode string
	// Datapath is DatapathAuto, DatapathEBPF or DatapathKernel.
	Datapath string
}

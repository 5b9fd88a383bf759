// Package netconf parses and validates net-conf.json, flannel's network
// configuration, plus weft's own Backend.Datapath key.
package netconf

import "net/netip"

// Backend types weft can run.
const (
	BackendVXLAN  = "vxlan"
	BackendHostGW = "host-gw"
)

// Datapath choices for Backend.Datapath (a weft extension).
const (
	DatapathAuto   = "auto"
	DatapathEBPF   = "ebpf"
	DatapathKernel = "kernel"
)

// Config is a validated net-conf.json with every default filled in.
type Config struct {
	Network        netip.Prefix
	SubnetLen      int
	SubnetMin      netip.Addr
	SubnetMax      netip.Addr
	EnableIPv4     bool
	EnableIPv6     bool
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
	// Type is BackendVXLAN or BackendHostGW.
	Type string
	// VNI is the VXLAN network identifier (vxlan only, default 1).
	VNI int
	// Port is the VXLAN UDP port (vxlan only, default 8472).
	Port int
	// GBP enables VXLAN group based policy (vxlan only, kernel datapath).
	GBP bool
	// DirectRouting routes to peers on the same L2 segment without
	// encapsulation (vxlan only).
	DirectRouting bool
	// Learning enables source address learning on the vxlan device.
	Learning bool
	// MTU overrides the vxlan device MTU; 0 means uplink MTU - 50.
	MTU int
	// Datapath is DatapathAuto, DatapathEBPF or DatapathKernel.
	Datapath string
}

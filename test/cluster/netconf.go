package cluster

import (
	"encoding/json"
	"net/netip"
)

// The cluster's pod networks in every NetConf: IPv4, and IPv6 with flannel's
// default IPv6SubnetLen (64), so 256 node subnets.
const (
	PodNetwork     = "10.244.0.0/16"
	IPv6PodNetwork = "fd10:244::/56"
)

// PodNetworkOf is the pod network of family f (PodNetwork or
// IPv6PodNetwork).
func PodNetworkOf(f Family) netip.Prefix {
	if f == IPv6 {
		return netip.MustParsePrefix(IPv6PodNetwork)
	}
	return netip.MustParsePrefix(PodNetwork)
}

// NetConf returns net-conf.json for the IPv4 pod network PodNetwork with
// the given Backend.Type ("vxlan", "host-gw"), Backend.Datapath ("kernel",
// "ebpf", "auto"; "" leaves it out) and vxlan DirectRouting.
func NetConf(backend, datapath string, directRouting bool) string {
	return StackNetConf(IPv4Only, backend, datapath, directRouting)
}

// StackNetConf is NetConf for the pod network families of stack: Network
// PodNetwork unless IPv6Only, EnableIPv6 and IPv6Network IPv6PodNetwork
// unless IPv4Only, EnableIPv4 false for IPv6Only. IPv4Only is exactly
// NetConf's JSON.
func StackNetConf(stack Stack, backend, datapath string, directRouting bool) string {
	type backendConf struct {
		Type          string
		DirectRouting bool   `json:",omitempty"`
		Datapath      string `json:",omitempty"`
	}
	conf := struct {
		Network     string `json:",omitempty"`
		EnableIPv4  *bool  `json:",omitempty"`
		EnableIPv6  bool   `json:",omitempty"`
		IPv6Network string `json:",omitempty"`
		Backend     backendConf
	}{Backend: backendConf{backend, directRouting, datapath}}
	if stack.Has(IPv4) {
		conf.Network = PodNetwork
	} else {
		conf.EnableIPv4 = new(bool)
	}
	if stack.Has(IPv6) {
		conf.EnableIPv6, conf.IPv6Network = true, IPv6PodNetwork
	}
	b, err := json.Marshal(conf)
	if err != nil {
		panic(err) // strings and bools always marshal
	}
	return string(b)
}

package cni

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// Endpoint is what an ADD through the bridge delegate created for one pod,
// as the datapath needs it.
type Endpoint struct {
	// IPs are the pod's addresses on its interface, in result order.
	IPs []netip.Addr
	// MAC is the MAC of the pod's interface (inside the pod).
	MAC net.HardwareAddr
	// HostIfName is the host end of the pod's veth (look up its ifindex in
	// the node's namespace, where the plugin runs).
	HostIfName string
}

// EndpointFromResult finds in an ADD result (any version) the pod interface
// ifName (the one with a sandbox), its addresses, and the host veth: the
// interface outside the sandbox that is not the bridge.
func EndpointFromResult(res types.Result, ifName, bridge string) (Endpoint, error) {
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return Endpoint{}, fmt.Errorf("convert CNI result: %w", err)
	}
	var ep Endpoint
	pod := -1
	for i, iface := range r.Interfaces {
		switch {
		case iface.Sandbox != "" && iface.Name == ifName:
			pod = i
			if ep.MAC, err = net.ParseMAC(iface.Mac); err != nil {
				return Endpoint{}, fmt.Errorf("pod interface %s MAC %q: %w", ifName, iface.Mac, err)
			}
		case iface.Sandbox == "" && iface.Name != bridge:
			ep.HostIfName = iface.Name
		}
	}
	if pod < 0 {
		return Endpoint{}, fmt.Errorf("CNI result has no pod interface %s", ifName)
	}
	if ep.HostIfName == "" {
		return Endpoint{}, fmt.Errorf("CNI result has no host veth for pod interface %s", ifName)
	}
	for _, ip := range r.IPs {
		if ip.Interface == nil || *ip.Interface != pod {
			continue
		}
		a, ok := netip.AddrFromSlice(ip.Address.IP)
		if !ok {
			return Endpoint{}, fmt.Errorf("CNI result address %v is not an IP", ip.Address.IP)
		}
		ep.IPs = append(ep.IPs, a.Unmap())
	}
	if len(ep.IPs) == 0 {
		return Endpoint{}, fmt.Errorf("CNI result has no address on pod interface %s", ifName)
	}
	return ep, nil
}

package cni

import (
	"log/slog"
	"net"

	"github.com/weftnet/weft/pkg/datapath/ebpf"
)

// registerEndpoint tells the ebpf datapath where the pod lives (each of its
// addresses, IPv4 and IPv6) so VXLAN and host-gw traffic for it is
// delivered straight to its veth. A failure only costs speed (the kernel
// path still delivers), so it is logged, not fatal.
func registerEndpoint(bpfDir string, ep Endpoint) {
	host, err := net.InterfaceByName(ep.HostIfName)
	if err != nil {
		slog.Warn("pod not registered with the ebpf datapath: its traffic takes the kernel path", "hostIf", ep.HostIfName, "err", err)
		return
	}
	for _, ip := range ep.IPs {
		if err := ebpf.RegisterEndpoint(bpfDir, ebpf.Endpoint{IP: ip, HostIfindex: host.Index, MAC: ep.MAC}); err != nil {
			slog.Warn("pod not registered with the ebpf datapath: its traffic takes the kernel path", "ip", ip, "err", err)
		}
	}
}

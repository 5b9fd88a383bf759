package cni

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

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

// unregisterPod removes the pod's addresses, read from its namespace, from
// the ebpf datapath. A namespace already gone is fine: weftd drops entries
// whose veth no longer exists.
func unregisterPod(bpfDir, netnsPath, ifName string) {
	addrs, err := podAddrs(netnsPath, ifName)
	if err != nil {
		slog.Debug("pod addresses unknown at DEL; weftd collects its endpoint later", "err", err)
		return
	}
	for _, ip := range addrs {
		if err := ebpf.UnregisterEndpoint(bpfDir, ip); err != nil {
			slog.Warn("unregister pod from the ebpf datapath", "ip", ip, "err", err)
		}
	}
}

// podAddrs lists the IPv4 and global IPv6 addresses of ifName inside the
// network namespace at netnsPath (not link-local ones: IPAM gives none).
func podAddrs(netnsPath, ifName string) ([]netip.Addr, error) {
	if netnsPath == "" {
		return nil, fmt.Errorf("no network namespace given")
	}
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", netnsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", netnsPath, err)
	}
	defer h.Close()
	link, err := h.LinkByName(ifName)
	if err != nil {
		return nil, fmt.Errorf("find %s in %s: %w", ifName, netnsPath, err)
	}
	list, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", ifName, err)
	}
	out := make([]netip.Addr, 0, len(list))
	for _, a := range list {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && !ip.IsLinkLocalUnicast() {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}

package cluster

import (
	"github.com/weftnet/weft/pkg/datapath/ebpf"
	"github.com/weftnet/weft/pkg/datapath/kernel"
	"github.com/weftnet/weft/pkg/wireguard"
)

// BackendDevice is the device the kernel path of backend sends pod traffic
// of family f to other nodes through: flannel.1 and for IPv6 flannel-v6.1
// (vxlan, VNI 1 as NetConf writes it; FLANNEL-COMPAT.md "Dual stack"),
// flannel0 (udp), flannel-wg (wireguard), the uplink eth0 otherwise.
func BackendDevice(backend string, f Family) string {
	switch {
	case backend == "vxlan" && f == IPv6:
		return kernel.DeviceNameV6(1)
	case backend == "vxlan":
		return kernel.DeviceName(1)
	case backend == "udp":
		return kernel.TUNName
	case backend == "wireguard":
		return wireguard.DeviceName
	}
	return "eth0"
}

// EBPFCarrier is the backend label of weft_datapath_packets_total that
// counts the eBPF datapath's fast path for mode ("vxlan", "host-gw",
// "udp") and family f: "vxlan-ebpf", and for IPv6 "vxlan-ebpf-ipv6".
func EBPFCarrier(mode string, f Family) string {
	if f == IPv6 {
		return mode + "-ebpf" + ebpf.IPv6Suffix
	}
	return mode + "-ebpf"
}

package cluster

import (
	"github.com/weftnet/weft/pkg/datapath/kernel"
	"github.com/weftnet/weft/pkg/wireguard"
)

// BackendDevice is the device the kernel path of backend sends pod traffic
// to other nodes through: flannel.1 (vxlan, VNI 1 as NetConf writes it),
// flannel0 (udp), flannel-wg (wireguard), the uplink eth0 otherwise.
func BackendDevice(backend string) string {
	switch backend {
	case "vxlan":
		return kernel.DeviceName(1)
	case "udp":
		return kernel.TUNName
	case "wireguard":
		return wireguard.DeviceName
	}
	return "eth0"
}

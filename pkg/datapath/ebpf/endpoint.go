package ebpf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/cilium/ebpf"

	"github.com/weftnet/weft/pkg/datapath"
)

// RegisterEndpoint tells the programs in bpfDir (weftd's --bpf-dir) where
// the local pod ep lives, so traffic for it is delivered straight to its
// veth. Called by the CNI plugin on ADD; replaces an earlier entry.
func RegisterEndpoint(bpfDir string, ep Endpoint) error {
	switch {
	case !ep.IP.Is4():
		return fmt.Errorf("register endpoint %s: not an IPv4 address", ep.IP)
	case ep.HostIfindex <= 0:
		return fmt.Errorf("register endpoint %s: host ifindex %d is invalid", ep.IP, ep.HostIfindex)
	case !datapath.UnicastMAC(ep.MAC):
		return fmt.Errorf("register endpoint %s: MAC %q is not a unicast Ethernet address", ep.IP, ep.MAC)
	}
	m, err := openEndpoints(bpfDir)
	if err != nil {
		return fmt.Errorf("register endpoint %s: %w", ep.IP, err)
	}
	defer m.Close()
	v := weftEndpoint{HostIfindex: uint32(ep.HostIfindex), Mac: mac6(ep.MAC)}
	if err := m.Put(be32(ep.IP), v); err != nil {
		return fmt.Errorf("register endpoint %s: %w", ep.IP, err)
	}
	return nil
}

// UnregisterEndpoint removes the pod with address ip from the endpoints map
// in bpfDir. Called by the CNI plugin on DEL; a missing entry is no error.
func UnregisterEndpoint(bpfDir string, ip netip.Addr) error {
	if !ip.Is4() {
		return fmt.Errorf("unregister endpoint %s: not an IPv4 address", ip)
	}
	m, err := openEndpoints(bpfDir)
	if err != nil {
		return fmt.Errorf("unregister endpoint %s: %w", ip, err)
	}
	defer m.Close()
	if err := m.Delete(be32(ip)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unregister endpoint %s: %w", ip, err)
	}
	return nil
}

// openEndpoints opens the pinned endpoints map.
func openEndpoints(bpfDir string) (*ebpf.Map, error) {
	m, err := pinnedMap(bpfDir, weftMapWeftEndpoints)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no endpoints map in %s: weftd's ebpf datapath has not created it "+
			"(is weftd running with the ebpf datapath and this --bpf-dir?)", bpfDir)
	}
	if err != nil {
		return nil, fmt.Errorf("open endpoints map in %s: %w", bpfDir, err)
	}
	return m, nil
}

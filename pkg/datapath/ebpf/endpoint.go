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
// veth, and which addresses the pod may send from there (anything else is
// dropped at the veth). Called by the CNI plugin on ADD, once per address
// of the pod (IPv4 and IPv6); replaces earlier entries. The pod's source
// entry keeps the other family's address registered for the same veth and
// MAC.
func RegisterEndpoint(bpfDir string, ep Endpoint) error {
	switch {
	case !ep.IP.IsValid() || ep.IP.Is4In6() || ep.IP.Zone() != "":
		return fmt.Errorf("register endpoint %s: not a plain IPv4 or IPv6 address", ep.IP)
	case ep.HostIfindex <= 0:
		return fmt.Errorf("register endpoint %s: host ifindex %d is invalid", ep.IP, ep.HostIfindex)
	case !datapath.UnicastMAC(ep.MAC):
		return fmt.Errorf("register endpoint %s: MAC %q is not a unicast Ethernet address", ep.IP, ep.MAC)
	}
	eps, err := openEndpoints(bpfDir, MapEndpoints)
	if err != nil {
		return fmt.Errorf("register endpoint %s: %w", ep.IP, err)
	}
	defer eps.Close()
	pods, err := openEndpoints(bpfDir, MapPods)
	if err != nil {
		return fmt.Errorf("register endpoint %s: %w", ep.IP, err)
	}
	defer pods.Close()
	v := weftEndpoint{HostIfindex: uint32(ep.HostIfindex), Mac: mac6(ep.MAC)}
	if err := eps.Put(addrKey(ep.IP), v); err != nil {
		return fmt.Errorf("register endpoint %s: %w", ep.IP, err)
	}
	var p weftPod
	if err := pods.Lookup(uint32(ep.HostIfindex), &p); err != nil || p.Mac != v.Mac {
		p = weftPod{Mac: v.Mac} // none, or a former pod's
	}
	p.Ip[familyOf(ep.IP)] = addrKey(ep.IP)
	if err := pods.Put(uint32(ep.HostIfindex), p); err != nil {
		return fmt.Errorf("register pod source %s: %w", ep.IP, err)
	}
	return nil
}

// UnregisterEndpoint removes the pod with address ip from the endpoints and
// pods maps in bpfDir. Called by the CNI plugin on DEL; a missing entry is
// no error.
func UnregisterEndpoint(bpfDir string, ip netip.Addr) error {
	if !ip.IsValid() {
		return fmt.Errorf("unregister endpoint %s: not an IP address", ip)
	}
	ip = ip.Unmap()
	eps, err := openEndpoints(bpfDir, MapEndpoints)
	if err != nil {
		return fmt.Errorf("unregister endpoint %s: %w", ip, err)
	}
	defer eps.Close()
	pods, err := openEndpoints(bpfDir, MapPods)
	if err != nil {
		return fmt.Errorf("unregister endpoint %s: %w", ip, err)
	}
	defer pods.Close()
	var ep weftEndpoint
	if err := eps.Lookup(addrKey(ip), &ep); err == nil {
		if err := deletePod(pods, ep.HostIfindex, ip); err != nil {
			return fmt.Errorf("unregister endpoint %s: %w", ip, err)
		}
	}
	if err := eps.Delete(addrKey(ip)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unregister endpoint %s: %w", ip, err)
	}
	return nil
}

// deletePod removes ip from the pods map entry of the veth ifindex if the
// entry still names it (the ifindex may already belong to a newer pod), and
// the entry once it names no address.
func deletePod(pods *ebpf.Map, ifindex uint32, ip netip.Addr) error {
	var p weftPod
	fam := familyOf(ip)
	if err := pods.Lookup(ifindex, &p); err != nil || p.Ip[fam] != addrKey(ip) {
		return nil
	}
	p.Ip[fam] = weftAddr{}
	if p.Ip != [weftFamilyFAMILY_MAX]weftAddr{} {
		if err := pods.Put(ifindex, p); err != nil {
			return fmt.Errorf("update pod source of veth %d: %w", ifindex, err)
		}
		return nil
	}
	if err := pods.Delete(ifindex); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete pod source of veth %d: %w", ifindex, err)
	}
	return nil
}

// openEndpoints opens the pinned map name (MapEndpoints or MapPods).
func openEndpoints(bpfDir, name string) (*ebpf.Map, error) {
	m, err := pinnedMap(bpfDir, name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no %s map in %s: weftd's ebpf datapath has not created it "+
			"(is weftd running with the ebpf datapath and this --bpf-dir?)", name, bpfDir)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s map in %s: %w", name, bpfDir, err)
	}
	return m, nil
}

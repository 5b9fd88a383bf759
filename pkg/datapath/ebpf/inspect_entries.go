package ebpf

// Decoded contents of the pinned maps (see inspect.go).

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/weftnet/weft/pkg/datapath"
)

// NodeConfig is the decoded node config map. Its IPv4 and IPv6 fields are
// named as datapath.Node's; a family that is off has them all zero.
type NodeConfig struct {
	// Subnet and IPv6Subnet are this node's pod subnets; zero until weftd
	// has a lease.
	Subnet, IPv6Subnet netip.Prefix
	// Network and IPv6Network are the cluster's pod networks.
	Network, IPv6Network netip.Prefix
	// NodeIP and NodeIPv6 are this node's addresses; both zero means the
	// programs are not ready.
	NodeIP, NodeIPv6 netip.Addr
	// VNI and Port are the VXLAN settings, Port the udp port on a udp
	// node; Port is 0 on a host-gw node.
	VNI, Port int
	// VtepMAC and VtepMACv6 are this node's VTEP MACs (flannel.<VNI>'s
	// and flannel-v6.<VNI>'s), nil on a host-gw node.
	VtepMAC, VtepMACv6 net.HardwareAddr
	// BridgeMAC is the pods' bridge's MAC, nil while it does not exist.
	BridgeMAC net.HardwareAddr
	// UplinkIfindex and BridgeIfindex are interface indexes in the node's
	// network namespace; BridgeIfindex is 0 while the bridge does not exist.
	UplinkIfindex, BridgeIfindex int
	// VXLANIfindex and VXLANIfindexV6 are flannel.<VNI>'s and
	// flannel-v6.<VNI>'s interface indexes (IPv6 GSO packets are sent
	// through the latter); 0 when there is none.
	VXLANIfindex, VXLANIfindexV6 int
	// udp is set when Port is flannel's udp port rather than VXLAN's.
	udp bool
}

// Backend is the node's backend: udp when the config says so, host-gw when
// it has no tunnel port, vxlan otherwise.
func (c NodeConfig) Backend() datapath.Mode {
	switch {
	case c.udp:
		return datapath.ModeUDP
	case c.Port == 0:
		return datapath.ModeHostGW
	}
	return datapath.ModeVXLAN
}

// ReadConfig reads the node config map in bpfDir.
func ReadConfig(bpfDir string) (NodeConfig, error) {
	m, err := openPinned(bpfDir, MapConfig)
	if err != nil {
		return NodeConfig{}, err
	}
	defer m.Close()
	var c weftNodeConfig
	if err := m.Lookup(configKey, &c); err != nil {
		return NodeConfig{}, fmt.Errorf("read map %s: %w", MapConfig, err)
	}
	return decodeConfig(c), nil
}

func decodeConfig(c weftNodeConfig) NodeConfig {
	v4, v6 := c.Family[weftFamilyFAMILY_IPV4], c.Family[weftFamilyFAMILY_IPV6]
	return NodeConfig{
		Subnet:         prefixOf(v4.Subnet, v4.SubnetLen),
		IPv6Subnet:     prefixOf(v6.Subnet, v6.SubnetLen),
		Network:        prefixOf(v4.Network, v4.NetworkLen),
		IPv6Network:    prefixOf(v6.Network, v6.NetworkLen),
		NodeIP:         optionalAddr(v4.NodeIp),
		NodeIPv6:       optionalAddr(v6.NodeIp),
		VNI:            int(c.Vni),
		Port:           int(c.Port),
		VtepMAC:        optionalMAC(v4.VtepMac),
		VtepMACv6:      optionalMAC(v6.VtepMac),
		BridgeMAC:      optionalMAC(c.BridgeMac),
		UplinkIfindex:  int(c.UplinkIfindex),
		BridgeIfindex:  int(c.BridgeIfindex),
		VXLANIfindex:   int(v4.VxlanIfindex),
		VXLANIfindexV6: int(v6.VxlanIfindex),
		udp:            weftMode(c.Mode) == weftModeMODE_UDP,
	}
}

// PeerEntry is one entry of the remote subnets map.
type PeerEntry struct {
	// Subnet is IPv4 or IPv6; NodeIP and VtepMAC are of its family.
	Subnet netip.Prefix
	NodeIP netip.Addr
	// VtepMAC is nil when the entry holds none (host-gw).
	VtepMAC net.HardwareAddr
	// Mode is ModeVXLAN, ModeHostGW or ModeUDP ("mode(<n>)" for a value
	// weft never writes).
	Mode datapath.Mode
}

// ReadPeers returns the remote subnets map in bpfDir, sorted by subnet.
func ReadPeers(bpfDir string) ([]PeerEntry, error) {
	all, err := readAll[weftLpmKey, weftPeer](bpfDir, MapPeers)
	if err != nil {
		return nil, err
	}
	out := make([]PeerEntry, 0, len(all))
	for k, v := range all {
		out = append(out, decodePeer(k, v))
	}
	slices.SortFunc(out, func(a, b PeerEntry) int { return a.Subnet.Compare(b.Subnet) })
	return out, nil
}

// PeerReader looks single subnets up in a pinned remote subnets map, at
// the cost of one kernel lookup each: for tools and tests that poll it.
type PeerReader struct {
	m *ebpf.Map
}

// OpenPeers opens the remote subnets map pinned in bpfDir, read-only.
func OpenPeers(bpfDir string) (*PeerReader, error) {
	m, err := openPinned(bpfDir, MapPeers)
	if err != nil {
		return nil, err
	}
	return &PeerReader{m}, nil
}

// Lookup returns the entry the programs use for subnet: a trie lookup,
// so an entry that covers subnet (the longest) answers too. The entry's
// Subnet is subnet.
func (r *PeerReader) Lookup(subnet netip.Prefix) (PeerEntry, bool, error) {
	var v weftPeer
	k := lpmKey(subnet)
	err := r.m.Lookup(k, &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return PeerEntry{}, false, nil
	}
	if err != nil {
		return PeerEntry{}, false, fmt.Errorf("look up %s in %s: %w", subnet, MapPeers, err)
	}
	return decodePeer(k, v), true, nil
}

// Close releases the map.
func (r *PeerReader) Close() error { return r.m.Close() }

func decodePeer(k weftLpmKey, v weftPeer) PeerEntry {
	p := PeerEntry{Subnet: prefixOfKey(k), NodeIP: addrOf(v.NodeIp), VtepMAC: optionalMAC(v.VtepMac)}
	switch weftMode(v.Mode) {
	case weftModeMODE_VXLAN:
		p.Mode = datapath.ModeVXLAN
	case weftModeMODE_HOST_GW:
		p.Mode = datapath.ModeHostGW
	case weftModeMODE_UDP:
		p.Mode = datapath.ModeUDP
	default:
		p.Mode = datapath.Mode(fmt.Sprintf("mode(%d)", v.Mode))
	}
	return p
}

// KnownNode is one entry of the known nodes map: VXLAN or udp from NodeIP is
// accepted (for inner sources in the subnets the peers map gives it).
type KnownNode struct {
	NodeIP netip.Addr
	// Leases is how many leases name the address.
	Leases int
}

// ReadNodes returns the known nodes map in bpfDir, sorted by node IP (IPv4
// first).
func ReadNodes(bpfDir string) ([]KnownNode, error) {
	all, err := readAll[weftAddr, weftKnownNode](bpfDir, MapNodes)
	if err != nil {
		return nil, err
	}
	out := make([]KnownNode, 0, len(all))
	for ip, n := range all {
		out = append(out, KnownNode{NodeIP: addrOf(ip), Leases: int(n.Leases)})
	}
	slices.SortFunc(out, func(a, b KnownNode) int { return a.NodeIP.Compare(b.NodeIP) })
	return out, nil
}

// ReadEndpoints returns the local pod addresses registered in bpfDir, sorted
// by IP (IPv4 first).
func ReadEndpoints(bpfDir string) ([]Endpoint, error) {
	all, err := readAll[weftAddr, weftEndpoint](bpfDir, MapEndpoints)
	if err != nil {
		return nil, err
	}
	out := make([]Endpoint, 0, len(all))
	for ip, ep := range all {
		out = append(out, Endpoint{IP: addrOf(ip), HostIfindex: int(ep.HostIfindex), MAC: optionalMAC(ep.Mac)})
	}
	slices.SortFunc(out, func(a, b Endpoint) int { return a.IP.Compare(b.IP) })
	return out, nil
}

// Pod is one entry of the pods map: the addresses the pod behind a host
// veth may send from.
type Pod struct {
	HostIfindex int
	// IP and IPv6 are the pod's addresses; zero for a family it has not.
	IP, IPv6 netip.Addr
	MAC      net.HardwareAddr
}

// ReadPods returns the pods map in bpfDir, sorted by host ifindex.
func ReadPods(bpfDir string) ([]Pod, error) {
	all, err := readAll[uint32, weftPod](bpfDir, MapPods)
	if err != nil {
		return nil, err
	}
	out := make([]Pod, 0, len(all))
	for ifindex, p := range all {
		out = append(out, Pod{HostIfindex: int(ifindex), IP: optionalAddr(p.Ip[weftFamilyFAMILY_IPV4]),
			IPv6: optionalAddr(p.Ip[weftFamilyFAMILY_IPV6]), MAC: optionalMAC(p.Mac)})
	}
	slices.SortFunc(out, func(a, b Pod) int { return cmp.Compare(a.HostIfindex, b.HostIfindex) })
	return out, nil
}

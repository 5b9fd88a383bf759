package ebpf

// Read-only views of the state pinned in a pin directory, for weftctl. They
// open the pins read-only, close them again and work while weftd is down.
// Addresses come back decoded: the maps hold __be32 fields as network-order
// bytes (see be32).

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/pkg/datapath"
)

// Names of the pinned maps: their files in the pin directory, and the names
// bpftool shows.
const (
	MapPeers      = weftMapWeftPeers      // remote pod subnets (LPM trie) -> node IP, VTEP MAC, mode
	MapConfig     = weftMapWeftConfig     // this node (one entry)
	MapEndpoints  = weftMapWeftEndpoints  // local pod IP -> host veth, pod MAC
	MapPods       = weftMapWeftPods       // host veth ifindex -> the pod's IP and MAC (source check)
	MapNodes      = weftMapWeftNodes      // known node addresses -> how many leases name them
	MapTraffic    = weftMapWeftTraffic    // per-CPU packets and bytes by backend and direction
	MapDrops      = weftMapWeftDrops      // per-CPU drops by reason
	MapCTRequests = weftMapWeftCtRequests // ring buffer: flows waiting for a liberal conntrack entry
)

// MapNames lists the pinned maps, sorted.
func MapNames() []string {
	names := []string{MapPeers, MapConfig, MapEndpoints, MapPods, MapNodes, MapTraffic, MapDrops, MapCTRequests}
	slices.Sort(names)
	return names
}

// MapInfo describes one pinned map.
type MapInfo struct {
	Name string
	// ID is the kernel's map ID (bpftool map dump id ID).
	ID ebpf.MapID
	// Type is the map type as cilium/ebpf names it, e.g. "LPMTrie".
	Type string
	// Entries is the number of entries; for arrays every index counts, a
	// ring buffer (no keys) has none.
	Entries int
	// MaxEntries is the map's size: entries, or bytes of a ring buffer.
	MaxEntries int
}

// ReadMapInfo describes the pinned map name in bpfDir. An error for a
// missing pin matches os.ErrNotExist.
func ReadMapInfo(bpfDir, name string) (MapInfo, error) {
	m, err := openPinned(bpfDir, name)
	if err != nil {
		return MapInfo{}, err
	}
	defer m.Close()
	info, err := m.Info()
	if err != nil {
		return MapInfo{}, fmt.Errorf("read info of map %s: %w", name, err)
	}
	out := MapInfo{Name: name, Type: info.Type.String(), MaxEntries: int(info.MaxEntries)}
	out.ID, _ = info.ID()
	if info.Type == ebpf.RingBuf {
		return out, nil // no keys to walk
	}
	// Walk the keys only: values of per-CPU maps need a per-CPU buffer.
	// Deletions meanwhile can restart the walk, hence the bound.
	var key any // nil asks for the first key
	for out.Entries < out.MaxEntries {
		next, err := m.NextKeyBytes(key)
		if err != nil {
			return MapInfo{}, fmt.Errorf("count entries of map %s: %w", name, err)
		}
		if next == nil {
			return out, nil
		}
		out.Entries++
		key = next
	}
	return out, nil
}

// openPinned opens the pinned map name in bpfDir read-only.
func openPinned(bpfDir, name string) (*ebpf.Map, error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(bpfDir, name), &ebpf.LoadPinOptions{ReadOnly: true})
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("map %s is not pinned in %s (no ebpf datapath there: wrong --bpf-dir, or the kernel datapath): %w",
			name, bpfDir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open pinned map %s in %s: %w", name, bpfDir, err)
	}
	return m, nil
}

// readAll returns every entry of the pinned map name in bpfDir.
func readAll[K comparable, V any](bpfDir, name string) (map[K]V, error) {
	m, err := openPinned(bpfDir, name)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return dump[K, V](m)
}

// NodeConfig is the decoded node config map.
type NodeConfig struct {
	// Subnet is this node's pod subnet; zero until weftd has a lease.
	Subnet netip.Prefix
	// Network is the cluster's pod network.
	Network netip.Prefix
	// NodeIP is this node's address; zero means the programs are not ready.
	NodeIP netip.Addr
	// VNI and Port are the VXLAN settings; Port is 0 on a host-gw node.
	VNI, Port int
	// VtepMAC is this node's VTEP MAC, nil on a host-gw node.
	VtepMAC net.HardwareAddr
	// BridgeMAC is the pods' bridge's MAC, nil while it does not exist.
	BridgeMAC net.HardwareAddr
	// UplinkIfindex and BridgeIfindex are interface indexes in the node's
	// network namespace; BridgeIfindex is 0 while the bridge does not exist.
	UplinkIfindex, BridgeIfindex int
}

// Backend is the node's backend: host-gw when the config has no VXLAN port.
func (c NodeConfig) Backend() datapath.Mode {
	if c.Port == 0 {
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
	return NodeConfig{
		Subnet:        prefixOf(c.Subnet, c.SubnetLen),
		Network:       prefixOf(c.Network, c.NetworkLen),
		NodeIP:        optionalAddr(c.NodeIp),
		VNI:           int(c.Vni),
		Port:          int(c.Port),
		VtepMAC:       optionalMAC(c.VtepMac),
		BridgeMAC:     optionalMAC(c.BridgeMac),
		UplinkIfindex: int(c.UplinkIfindex),
		BridgeIfindex: int(c.BridgeIfindex),
	}
}

// PeerEntry is one entry of the remote subnets map.
type PeerEntry struct {
	Subnet netip.Prefix
	NodeIP netip.Addr
	// VtepMAC is nil when the entry holds none (host-gw).
	VtepMAC net.HardwareAddr
	// Mode is ModeVXLAN or ModeHostGW ("mode(<n>)" for a value weft never writes).
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
	slices.SortFunc(out, func(a, b PeerEntry) int { return comparePrefix(a.Subnet, b.Subnet) })
	return out, nil
}

func decodePeer(k weftLpmKey, v weftPeer) PeerEntry {
	p := PeerEntry{Subnet: prefixOf(k.Addr, k.Prefixlen), NodeIP: addrOf(v.NodeIp), VtepMAC: optionalMAC(v.VtepMac)}
	switch weftMode(v.Mode) {
	case weftModeMODE_VXLAN:
		p.Mode = datapath.ModeVXLAN
	case weftModeMODE_HOST_GW:
		p.Mode = datapath.ModeHostGW
	default:
		p.Mode = datapath.Mode(fmt.Sprintf("mode(%d)", v.Mode))
	}
	return p
}

// KnownNode is one entry of the known nodes map: VXLAN from NodeIP is
// accepted (for inner sources in the subnets the peers map gives it).
type KnownNode struct {
	NodeIP netip.Addr
	// Leases is how many leases name the address.
	Leases int
}

// ReadNodes returns the known nodes map in bpfDir, sorted by node IP.
func ReadNodes(bpfDir string) ([]KnownNode, error) {
	all, err := readAll[uint32, weftKnownNode](bpfDir, MapNodes)
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

// ReadEndpoints returns the local pods registered in bpfDir, sorted by IP.
func ReadEndpoints(bpfDir string) ([]Endpoint, error) {
	all, err := readAll[uint32, weftEndpoint](bpfDir, MapEndpoints)
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
	IP          netip.Addr
	MAC         net.HardwareAddr
}

// ReadPods returns the pods map in bpfDir, sorted by host ifindex.
func ReadPods(bpfDir string) ([]Pod, error) {
	all, err := readAll[uint32, weftPod](bpfDir, MapPods)
	if err != nil {
		return nil, err
	}
	out := make([]Pod, 0, len(all))
	for ifindex, p := range all {
		out = append(out, Pod{HostIfindex: int(ifindex), IP: addrOf(p.Ip), MAC: optionalMAC(p.Mac)})
	}
	slices.SortFunc(out, func(a, b Pod) int { return cmp.Compare(a.HostIfindex, b.HostIfindex) })
	return out, nil
}

// CPUCount is one CPU's share of a counter.
type CPUCount struct {
	Packets, Bytes uint64
}

// Counter is one slot of a per-CPU counters map (MapTraffic or MapDrops)
// with the labels weftd's metrics give it and the sums over all CPUs.
type Counter struct {
	datapath.Counter
	// Map and Index locate the slot.
	Map   string
	Index int
	// PerCPU are the per-CPU values the sums come from.
	PerCPU []CPUCount
}

// ReadCounters returns the programs' counters in bpfDir, the same set and
// labels as Datapath.Stats without the kernel slow path: traffic by
// backend and direction, then drops by reason, labelled with this node's
// backend.
func ReadCounters(bpfDir string) ([]Counter, error) {
	cfg, err := ReadConfig(bpfDir)
	if err != nil {
		return nil, err
	}
	traffic, err := readPerCPU(bpfDir, MapTraffic)
	if err != nil {
		return nil, err
	}
	drops, err := readPerCPU(bpfDir, MapDrops)
	if err != nil {
		return nil, err
	}
	return labelCounters(cfg.Backend(), traffic, drops), nil
}

// readPerCPU reads every index of a per-CPU traffic array.
func readPerCPU(bpfDir, name string) (map[uint32][]weftTraffic, error) {
	return readAll[uint32, []weftTraffic](bpfDir, name)
}

// Attachment is one of weft's programs attached to an interface hook.
type Attachment struct {
	// Interface is the interface's name: for tcx as the pin records it,
	// for tc as the calling namespace names it.
	Interface string
	// Ifindex is the interface's index in the node's namespace; 0 for a
	// pinned tcx link whose interface is gone (a dead link).
	Ifindex int
	// Hook is "ingress" or "egress".
	Hook string
	// Mode is AttachTCX or AttachTC.
	Mode string
	// Program and ProgramID name the attached program.
	Program   string
	ProgramID ebpf.ProgramID
	// LinkID and Pin are the tcx link's ID and pin file (zero for tc).
	LinkID link.ID
	Pin    string
}

// ReadAttachments lists weft's attachments: the pinned tcx links in bpfDir
// and weft's cls_bpf filters on every interface. The filters are looked up
// in the calling thread's network namespace, which must be the node's
// (ip netns exec NODE weftctl ...).
func ReadAttachments(bpfDir string) ([]Attachment, error) {
	out, err := tcxAttachments(bpfDir)
	if err != nil {
		return nil, err
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	ifindexes := make([]int, 0, len(links))
	for _, l := range links {
		ifindexes = append(ifindexes, l.Attrs().Index)
	}
	tc, err := tcAttachments(ifindexes...)
	if err != nil {
		return nil, err
	}
	return append(out, tc...), nil
}

// tcxAttachments describes the pinned tcx links in bpfDir.
func tcxAttachments(bpfDir string) ([]Attachment, error) {
	pins, err := filepath.Glob(filepath.Join(bpfDir, linkPinPrefix+"*"))
	if err != nil {
		return nil, err
	}
	var out []Attachment
	for _, pin := range pins {
		a, err := tcxAttachment(pin)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func tcxAttachment(pin string) (Attachment, error) {
	// Links cannot be opened read-only; nothing here changes them.
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		return Attachment{}, fmt.Errorf("open pinned link %s: %w", pin, err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return Attachment{}, fmt.Errorf("read pinned link %s: %w", pin, err)
	}
	// The pin is named tcx_<interface>_<hook> (attachment.pin).
	name := strings.TrimPrefix(filepath.Base(pin), linkPinPrefix)
	a := Attachment{Mode: AttachTCX, ProgramID: info.Program, LinkID: info.ID, Pin: pin}
	if i := strings.LastIndexByte(name, '_'); i > 0 {
		a.Interface, a.Hook = name[:i], name[i+1:]
	}
	if tcx := info.TCX(); tcx != nil {
		a.Ifindex = int(tcx.Ifindex)
		switch ebpf.AttachType(tcx.AttachType) {
		case ebpf.AttachTCXIngress:
			a.Hook = ingress.name
		case ebpf.AttachTCXEgress:
			a.Hook = egress.name
		}
	}
	a.Program, err = programName(info.Program)
	return a, err
}

// programName returns the name of the loaded program id.
func programName(id ebpf.ProgramID) (string, error) {
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return "", fmt.Errorf("open program %d: %w", id, err)
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		return "", fmt.Errorf("read program %d: %w", id, err)
	}
	return info.Name, nil
}

// tcAttachments lists weft's cls_bpf filters on the given interfaces of the
// calling namespace; indexes 0 and interfaces that do not exist are skipped.
func tcAttachments(ifindexes ...int) ([]Attachment, error) {
	var out []Attachment
	for _, idx := range ifindexes {
		if idx == 0 {
			continue
		}
		l, err := netlink.LinkByIndex(idx)
		if errors.As(err, new(netlink.LinkNotFoundError)) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("find interface %d: %w", idx, err)
		}
		for _, h := range []hook{ingress, egress} {
			filters, err := weftFilters(l, h)
			if err != nil {
				return nil, err
			}
			for _, f := range filters {
				out = append(out, Attachment{
					Interface: l.Attrs().Name, Ifindex: idx, Hook: h.name, Mode: AttachTC,
					Program: f.Name, ProgramID: ebpf.ProgramID(f.Id),
				})
			}
		}
	}
	return out, nil
}

// prefixOf decodes an address and length pair; zero when both are zero.
func prefixOf(addr, bits uint32) netip.Prefix {
	if addr == 0 && bits == 0 {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(addrOf(addr), int(bits))
}

// optionalAddr decodes an address; 0.0.0.0 (unset) becomes the zero Addr.
func optionalAddr(v uint32) netip.Addr {
	if v == 0 {
		return netip.Addr{}
	}
	return addrOf(v)
}

// optionalMAC returns m, or nil when it is all zeros (unset).
func optionalMAC(m [6]uint8) net.HardwareAddr {
	if m == [6]uint8{} {
		return nil
	}
	return net.HardwareAddr(m[:])
}

// ntohs turns a __be16 read in host order into the port number.
func ntohs(v uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], v)
	return binary.BigEndian.Uint16(b[:])
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), a.Bits()-b.Bits())
}

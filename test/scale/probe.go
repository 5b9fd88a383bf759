package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/test/cluster"
)

// probe reads what weftd has programmed into one datapath. Before weftd has
// created its device or map, everything reads as not programmed.
type probe interface {
	// has reports whether p is programmed (kernel: routed; ebpf: in the
	// map with its node IP).
	has(p peer) (bool, error)
	// reflects reports whether the datapath shows e: its peer programmed
	// with exactly its node IP and VTEP MAC, or gone after a removal.
	reflects(e churnEvent) (bool, error)
	close()
}

// prune removes the programmed peers from want and returns how many are
// left. It stops at the first one missing, so a poll costs one lookup
// until weftd starts programming and each peer is looked up about once in
// all: polling does not take the CPU weftd needs (weftd's order of
// programming does not matter, only when the last one is in).
func prune(p probe, want map[netip.Prefix]peer) (int, error) {
	for subnet, pe := range want {
		ok, err := p.has(pe)
		if err != nil {
			return 0, err
		}
		if !ok {
			break
		}
		delete(want, subnet)
	}
	return len(want), nil
}

func newProbe(datapath string, n *cluster.Node) (probe, error) {
	switch datapath {
	case "kernel":
		h, err := n.NS.Netlink()
		if err != nil {
			return nil, err
		}
		nb, err := newNeighbours(n.NS)
		if err != nil {
			h.Close()
			return nil, err
		}
		return &routeProbe{h: h, nb: nb}, nil
	case "ebpf":
		return &mapProbe{path: filepath.Join(n.BPFDir, peersMap)}, nil
	}
	return nil, fmt.Errorf("datapath %q: use kernel or ebpf", datapath)
}

// vxlanDev is flannel's vxlan device for VNI 1.
const vxlanDev = "flannel.1"

// routeProbe looks up routes in the node's namespace: a peer is programmed
// when its subnet is routed via its .0 address on flannel.1, as the kernel
// datapath does after the peer's fdb and neighbour entries. A churn event
// also looks those up.
type routeProbe struct {
	h     *netlink.Handle
	nb    *neighbours
	index int // flannel.1's ifindex, 0 until it exists
}

func (r *routeProbe) device() (bool, error) {
	if r.index != 0 {
		return true, nil
	}
	l, err := r.h.LinkByName(vxlanDev)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("find %s: %w", vxlanDev, err)
	}
	r.index = l.Attrs().Index
	return true, nil
}

func (r *routeProbe) has(p peer) (bool, error) {
	if ok, err := r.device(); !ok {
		return false, err
	}
	return r.routed(p.Subnet)
}

// reflects checks the route and the neighbour entry of e's subnet's .0
// address and, for a lease in place, the fdb entry of its VTEP MAC. The
// kernel datapath writes fdb, neighbour, route in that order and removes
// them in the same order.
func (r *routeProbe) reflects(e churnEvent) (bool, error) {
	if ok, err := r.device(); !ok {
		return false, err
	}
	routed, err := r.routed(e.peer.Subnet)
	if err != nil {
		return false, err
	}
	mac, found, err := r.nb.neigh(r.index, e.peer.Subnet.Addr())
	if err != nil {
		return false, err
	}
	if e.class == removed {
		return !routed && !found, nil
	}
	if !routed || !found || !bytes.Equal(mac, e.peer.MAC) {
		return false, nil
	}
	dst, found, err := r.nb.fdb(r.index, e.peer.MAC)
	return found && dst == e.peer.NodeIP, err
}

// routed reports whether subnet is routed via its .0 on flannel.1.
func (r *routeProbe) routed(subnet netip.Prefix) (bool, error) {
	routes, err := r.h.RouteGet(subnet.Addr().Next().AsSlice())
	if errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("route get %s: %w", subnet.Addr().Next(), err)
	}
	for _, rt := range routes {
		if rt.LinkIndex == r.index && viaSubnet(rt, subnet) {
			return true, nil
		}
	}
	return false, nil
}

// viaSubnet reports whether rt goes via dst's .0 address, as flannel's do.
func viaSubnet(rt netlink.Route, dst netip.Prefix) bool {
	gw, _ := netip.AddrFromSlice(rt.Gw.To4())
	return gw == dst.Addr()
}

func (r *routeProbe) close() {
	r.h.Close()
	r.nb.close()
}

// peersMap is the eBPF datapath's pinned LPM trie of remote pod subnets
// (bpf/weft.c, weft_bpfel.go: weft_peers).
const peersMap = "weft_peers"

// lpmKey and peerValue mirror struct lpm_key and struct peer of
// headers/weft.h: addresses are 16 bytes in network byte order, IPv4 ones
// mapped (::ffff:a.b.c.d, an IPv4 prefix length + 96). open checks the
// pinned map's sizes against them.
type lpmKey struct {
	Prefixlen uint32
	Addr      [16]byte
}

type peerValue struct {
	NodeIP   [16]byte
	TunnelIP [16]byte
	VtepMAC  [6]byte
	Mode     uint8
	Pad      uint8
}

// mapProbe reads the eBPF datapath's pinned peers map.
type mapProbe struct {
	path string
	m    *ebpf.Map // nil until weftd has pinned it
}

func (m *mapProbe) open() (bool, error) {
	if m.m != nil {
		return true, nil
	}
	pinned, err := ebpf.LoadPinnedMap(m.path, nil)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open pinned map %s: %w", m.path, err)
	}
	key, value := binary.Size(lpmKey{}), binary.Size(peerValue{})
	if int(pinned.KeySize()) != key || int(pinned.ValueSize()) != value {
		pinned.Close()
		return false, fmt.Errorf("%s has %d-byte keys and %d-byte values, the harness's lpmKey and peerValue %d and %d: make them mirror headers/weft.h",
			m.path, pinned.KeySize(), pinned.ValueSize(), key, value)
	}
	m.m = pinned
	return true, nil
}

// lookup returns subnet's entry; none before weftd has pinned the map.
func (m *mapProbe) lookup(subnet netip.Prefix) (peerValue, bool, error) {
	var v peerValue
	if ok, err := m.open(); !ok {
		return v, false, err
	}
	bits := subnet.Bits()
	if subnet.Addr().Is4() {
		bits += 96
	}
	err := m.m.Lookup(lpmKey{Prefixlen: uint32(bits), Addr: subnet.Addr().As16()}, &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return v, false, nil
	}
	if err != nil {
		return v, false, fmt.Errorf("look up %s in %s: %w", subnet, m.path, err)
	}
	return v, true, nil
}

func (m *mapProbe) has(p peer) (bool, error) {
	v, ok, err := m.lookup(p.Subnet)
	return ok && netip.AddrFrom16(v.NodeIP).Unmap() == p.NodeIP, err
}

// reflects looks e's subnet up in the map: weft_peers holds only the /24s
// of selected peers, so a removed one matches no other entry.
func (m *mapProbe) reflects(e churnEvent) (bool, error) {
	v, ok, err := m.lookup(e.peer.Subnet)
	if e.class == removed {
		return !ok, err
	}
	return ok && netip.AddrFrom16(v.NodeIP).Unmap() == e.peer.NodeIP && bytes.Equal(v.VtepMAC[:], e.peer.MAC), err
}

func (m *mapProbe) close() {
	if m.m != nil {
		m.m.Close()
	}
}

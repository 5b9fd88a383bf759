package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"github.com/weftnet/weft/pkg/datapath/ebpf"
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
		return &mapProbe{dir: n.BPFDir}, nil
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

// mapProbe reads the eBPF datapath's pinned peers map.
type mapProbe struct {
	dir   string
	peers *ebpf.PeerReader // nil until weftd has pinned the map
}

// lookup returns subnet's entry; none before weftd has pinned the map.
func (m *mapProbe) lookup(subnet netip.Prefix) (ebpf.PeerEntry, bool, error) {
	if m.peers == nil {
		if _, err := os.Stat(filepath.Join(m.dir, ebpf.MapPeers)); errors.Is(err, os.ErrNotExist) {
			return ebpf.PeerEntry{}, false, nil
		}
		peers, err := ebpf.OpenPeers(m.dir)
		if err != nil {
			return ebpf.PeerEntry{}, false, err
		}
		m.peers = peers
	}
	return m.peers.Lookup(subnet)
}

func (m *mapProbe) has(p peer) (bool, error) {
	v, ok, err := m.lookup(p.Subnet)
	return ok && v.NodeIP == p.NodeIP, err
}

// reflects looks e's subnet up in the map: weft_peers holds only the /24s
// of selected peers, so a removed one matches no other entry.
func (m *mapProbe) reflects(e churnEvent) (bool, error) {
	v, ok, err := m.lookup(e.peer.Subnet)
	if e.class == removed {
		return !ok, err
	}
	return ok && v.NodeIP == e.peer.NodeIP && bytes.Equal(v.VtepMAC, e.peer.MAC), err
}

func (m *mapProbe) close() {
	if m.peers != nil {
		m.peers.Close()
	}
}

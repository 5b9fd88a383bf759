package ebpf

import (
	"errors"
	"net/netip"

	"github.com/weftnet/weft/pkg/datapath"
)

// written is what the remote subnets and known nodes maps hold after the
// last successful Sync or Apply: the remote subnets by LPM key and, per
// node IP or tunnel IP, how many of those subnets it leases. Apply changes
// it in place by the subnets whose selected peer changed and writes only
// the entries that differ, at a cost independent of the number of peers.
type written struct {
	peers mirror[weftLpmKey, weftPeer]
	nodes mirror[weftAddr, weftKnownNode]
}

// desired turns the selected peers into the contents of the remote subnets
// and known nodes maps. A node IP may lease several subnets: VXLAN from it
// is accepted for each (the inner source check finds the subnet's peer), as
// on the kernel datapath.
func desired(selected []datapath.Peer) *written {
	w := &written{
		peers: mirror[weftLpmKey, weftPeer]{have: make(map[weftLpmKey]weftPeer, len(selected))},
		nodes: mirror[weftAddr, weftKnownNode]{have: make(map[weftAddr]weftKnownNode, len(selected))},
	}
	for _, p := range selected {
		w.add(p)
	}
	return w
}

// reconcile makes the maps in objs hold w, reading them back to repair
// drift.
func (w *written) reconcile(objs *weftObjects) error {
	return errors.Join(reconcile(objs.WeftPeers, w.peers.have), reconcile(objs.WeftNodes, w.nodes.have))
}

// change applies delta to w and returns the writes that bring the maps
// along: only entries whose value changed, however often a change touched
// them (a node IP that loses one lease and gains another keeps its entry).
func (w *written) change(delta datapath.Delta) writes {
	w.peers.track()
	w.nodes.track()
	for _, c := range delta.Subnets {
		if c.New.Subnet.IsValid() {
			w.add(c.New)
		} else {
			w.remove(c.Old.Subnet)
		}
	}
	return writes{peers: w.peers.flush(), nodes: w.nodes.flush()}
}

// add records p's remote subnet, replacing the one there, and its lease of
// its node IP and tunnel IP. A wireguard peer gets no entry: its traffic
// must be encrypted, so the programs leave it to the kernel path and its
// wireguard device.
func (w *written) add(p datapath.Peer) {
	w.remove(p.Subnet)
	if p.Mode == datapath.ModeWireGuard {
		return
	}
	v := peerValue(p)
	w.peers.set(lpmKey(p.Subnet), v)
	w.lease(v, 1)
}

// remove forgets the remote subnet sub and the lease it counted.
func (w *written) remove(sub netip.Prefix) {
	key := lpmKey(sub)
	if v, ok := w.peers.have[key]; ok {
		w.peers.del(key)
		w.lease(v, -1)
	}
}

// lease counts by n the lease of v's node IP and, when it has one, its
// tunnel IP; an address left with none is forgotten.
func (w *written) lease(v weftPeer, n int) {
	for _, ip := range []weftAddr{v.NodeIp, v.TunnelIp} {
		if ip == (weftAddr{}) {
			continue
		}
		if leases := int(w.nodes.have[ip].Leases) + n; leases > 0 {
			w.nodes.set(ip, weftKnownNode{Leases: uint32(leases)})
		} else {
			w.nodes.del(ip)
		}
	}
}

// peerValue is the remote subnets map's value of p (of either family: its
// node IP and VTEP MAC are that family's). VXLAN from a node whose
// --public-ip is not its interface's comes from the address its lease names
// as TunnelIP: that address goes in TunnelIp.
func peerValue(p datapath.Peer) weftPeer {
	v := weftPeer{NodeIp: addrKey(p.NodeIP), VtepMac: mac6(p.VtepMAC), Mode: uint8(weftModeMODE_VXLAN)}
	switch p.Mode {
	case datapath.ModeHostGW:
		v.Mode = uint8(weftModeMODE_HOST_GW)
	case datapath.ModeUDP:
		v.Mode = uint8(weftModeMODE_UDP)
	}
	if p.TunnelIP.IsValid() && p.TunnelIP != p.NodeIP {
		v.TunnelIp = addrKey(p.TunnelIP)
	}
	return v
}

// writes are the edits of the remote subnets and known nodes maps.
type writes struct {
	peers edits[weftLpmKey, weftPeer]
	nodes edits[weftAddr, weftKnownNode]
}

// to makes the writes to the maps in objs.
func (x *writes) to(objs *weftObjects) error {
	return errors.Join(x.peers.write(objs.WeftPeers), x.nodes.write(objs.WeftNodes))
}

// mirror is what one map holds, changed in place, and, between track and
// flush, the value each changed key had before.
type mirror[K, V comparable] struct {
	have   map[K]V
	before map[K]prior[V]
}

// prior is a key's value before a change; ok is false if it had none.
type prior[V any] struct {
	v  V
	ok bool
}

// track starts recording the keys changed.
func (m *mirror[K, V]) track() { m.before = map[K]prior[V]{} }

// set makes k hold v.
func (m *mirror[K, V]) set(k K, v V) {
	m.touch(k)
	m.have[k] = v
}

// del removes k.
func (m *mirror[K, V]) del(k K) {
	m.touch(k)
	delete(m.have, k)
}

// touch records k's value before its first change since track.
func (m *mirror[K, V]) touch(k K) {
	if m.before == nil {
		return
	}
	if _, seen := m.before[k]; !seen {
		v, ok := m.have[k]
		m.before[k] = prior[V]{v, ok}
	}
}

// flush returns the edits from the values before track to those now and
// stops recording.
func (m *mirror[K, V]) flush() edits[K, V] {
	var e edits[K, V]
	for k, was := range m.before {
		v, ok := m.have[k]
		e.add(k, was.v, was.ok, v, ok)
	}
	m.before = nil
	return e
}

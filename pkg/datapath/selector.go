package datapath

import (
	"bytes"
	"maps"
	"net/netip"
	"slices"
)

// Selector holds a peer set and what SelectPeers keeps of it, and updates
// both by changes, so that a datapath learns which subnets' peers to write
// without looking at the whole set.
//
// This first implementation recomputes the whole selection on each Update;
// its results are the contract (the same as SelectPeers over the whole set).
type Selector struct {
	node     Node
	own      netip.Prefix
	peers    map[PeerKey]Peer
	order    []PeerKey // keys in the order first given, for duplicates in Reset
	selected map[netip.Prefix]Peer
	modes    map[netip.Addr]Mode
	log      rejections
}

// SubnetChange is a subnet whose selected peer changed: Old is the peer
// programmed before and New the one to program now; a zero Peer (invalid
// Subnet) means none.
type SubnetChange struct {
	Old, New Peer
}

// Delta is how an Update changed the selection.
type Delta struct {
	// Subnets are the subnets whose peer changed, in subnet order.
	Subnets []SubnetChange
	// Rejected are rejections that appeared with this change (each
	// rejection is reported once while it lasts), to be logged.
	Rejected []Rejection
}

// NewSelector returns an empty selector for node, whose own subnet is own
// (invalid while not known).
func NewSelector(node Node, own netip.Prefix) *Selector {
	return &Selector{node: node, own: own, peers: map[PeerKey]Peer{}, selected: map[netip.Prefix]Peer{}, modes: map[netip.Addr]Mode{}}
}

// Reset replaces the peer set with peers, decides every peer's mode again
// (a route lookup per node IP with DirectRouting) and returns the whole
// selection; its Rejected are the rejections not reported before. Of a key
// given twice, the first counts and the second is rejected.
func (s *Selector) Reset(peers []Peer) (Selection, error) {
	s.peers = make(map[PeerKey]Peer, len(peers))
	s.order = s.order[:0]
	for _, p := range peers {
		k := p.Key()
		if _, dup := s.peers[k]; !dup {
			s.order = append(s.order, k)
			s.peers[k] = p
		}
	}
	sel, err := SelectPeers(s.node, s.own, peers, nil)
	s.modes = sel.Modes
	s.selected = make(map[netip.Prefix]Peer, len(sel.Peers))
	for _, p := range sel.Peers {
		s.selected[p.Subnet] = p
	}
	sel.Rejected = s.log.fresh(sel.Rejected)
	return sel, err
}

// Update applies ch to the peer set and returns the subnets whose selected
// peer changed. Modes of node IPs already known are reused. The error joins
// those of peers whose mode could not be decided: they are left out until
// a later Update or Reset decides it.
func (s *Selector) Update(ch Changes) (Delta, error) {
	for _, k := range ch.Removed {
		delete(s.peers, k)
	}
	for _, p := range ch.Set {
		if _, had := s.peers[p.Key()]; !had {
			s.order = append(s.order, p.Key())
		}
		s.peers[p.Key()] = p
	}
	s.order = slices.DeleteFunc(s.order, func(k PeerKey) bool { _, ok := s.peers[k]; return !ok })
	all := make([]Peer, 0, len(s.order))
	for _, k := range s.order {
		all = append(all, s.peers[k])
	}
	sel, err := SelectPeers(s.node, s.own, all, s.modes)
	s.modes = sel.Modes
	next := make(map[netip.Prefix]Peer, len(sel.Peers))
	for _, p := range sel.Peers {
		next[p.Subnet] = p
	}
	var d Delta
	for _, sub := range slices.SortedFunc(maps.Keys(mergeKeys(s.selected, next)), netip.Prefix.Compare) {
		old, now := s.selected[sub], next[sub]
		if !SamePeer(old, now) {
			d.Subnets = append(d.Subnets, SubnetChange{Old: old, New: now})
		}
	}
	s.selected = next
	d.Rejected = s.log.fresh(sel.Rejected)
	return d, err
}

// SetOwn changes this node's own subnet and selects again (a rare event:
// the caller rewrites the whole selection afterwards).
func (s *Selector) SetOwn(own netip.Prefix) error {
	s.own = own
	_, err := s.Update(Changes{})
	return err
}

// Selected returns the selected peers in subnet order.
func (s *Selector) Selected() []Peer {
	return slices.SortedFunc(maps.Values(s.selected), func(a, b Peer) int { return a.Subnet.Compare(b.Subnet) })
}

// SamePeer reports whether a and b program the same state.
func SamePeer(a, b Peer) bool {
	return a.Subnet == b.Subnet && a.NodeIP == b.NodeIP && a.TunnelIP == b.TunnelIP &&
		a.Mode == b.Mode && bytes.Equal(a.VtepMAC, b.VtepMAC)
}

func mergeKeys(a, b map[netip.Prefix]Peer) map[netip.Prefix]struct{} {
	m := make(map[netip.Prefix]struct{}, max(len(a), len(b)))
	for k := range a {
		m[k] = struct{}{}
	}
	for k := range b {
		m[k] = struct{}{}
	}
	return m
}

// rejections remembers which rejections were reported, so that each is
// reported once while it lasts.
type rejections struct {
	reported map[PeerKey]string
}

// fresh records rs as the current rejections of the keys they name and
// returns those not reported before with the same reason.
func (r *rejections) fresh(rs []Rejection) []Rejection {
	now := make(map[PeerKey]string, len(rs))
	var out []Rejection
	for _, x := range rs {
		k := x.Peer.Key()
		now[k] = x.Reason
		if r.reported[k] != x.Reason {
			out = append(out, x)
		}
	}
	r.reported = now
	return out
}

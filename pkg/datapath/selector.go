package datapath

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// Selector is the one peer validation of both datapaths. It holds a peer
// set and which of its peers to program, and updates both by changes at a
// cost that depends on the change, not on the size of the set.
//
// The selection is what one greedy pass over the whole set gives. Peers are
// taken in subnet order (netip.Prefix.Compare, then node IP). A peer with a
// problem (see peerProblem) is rejected; so is one whose subnet an earlier
// peer took, and one whose tunnel identity (VtepMAC in vxlan mode, public
// key in wireguard mode) an earlier peer of another node IP took, so the
// same peer wins every time. The others are selected: peers that share a
// node IP are all kept (with one identity, as a node that leased twice
// has), so every subnet a node leases is routed to it, as flannel's kernel
// datapath does.
//
// Whether a peer is selected depends only on the peers linked to it by a
// chain of shared subnets and shared tunnel identities: its component. An
// Update reruns the pass over the components its changes touch, found
// through the peers indexed by subnet and by identity.
//
// Modes are decided once per node IP (a route lookup with DirectRouting)
// and remembered while a peer has that node IP. A peer whose mode cannot be
// decided is left out, neither selected nor rejected, and tried again on
// every Update.
type Selector struct {
	node Node
	// own are this node's subnets by family (familyIndex); invalid while
	// not known or the family is off.
	own [2]netip.Prefix
	// subnets holds the peers by subnet, each subnet's in node IP order.
	subnets map[netip.Prefix][]entry
	// ids indexes the peers by tunnel identity (see identity): the
	// subnets of the peers that have each, a subnet once per such peer.
	ids map[tunnelID][]netip.Prefix
	// lookup decides a node IP's mode; nil when every peer's mode is
	// node.Backend.
	lookup func(netip.Addr) (Mode, error)
	// modes holds, with lookup, each node IP of the set: how many peers
	// have it and its mode once decided.
	modes map[netip.Addr]nodeMode
	// undecided are the peers whose mode could not be decided.
	undecided map[PeerKey]struct{}
}

// entry is one peer of a Selector's set.
type entry struct {
	Peer // Mode set once decided
	// reason is why the peer is rejected (and was reported); "" if it is not.
	reason   string
	selected bool
}

// nodeMode is what a Selector knows of one node IP.
type nodeMode struct {
	peers int
	mode  Mode // "" until decided
}

// Rejection is a peer a datapath does not program, and why.
type Rejection struct {
	Peer   Peer
	Reason string
}

// Selection is the whole selection of a Selector, as Reset returns it.
type Selection struct {
	// Peers are the peers to program, Mode set, in subnet order
	// (netip.Prefix.Compare, then node IP).
	Peers []Peer
	// Rejected are the rejections not reported before.
	Rejected []Rejection
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

// NewSelector returns an empty selector for node, whose own subnets (one
// per family, IPv4 or IPv6) are own; none while they are not known.
func NewSelector(node Node, own ...netip.Prefix) *Selector {
	s := &Selector{
		node:    node,
		subnets: map[netip.Prefix][]entry{}, ids: map[tunnelID][]netip.Prefix{},
		modes: map[netip.Addr]nodeMode{}, undecided: map[PeerKey]struct{}{},
	}
	if node.Backend == ModeVXLAN && node.DirectRouting {
		s.lookup = func(ip netip.Addr) (Mode, error) { return directMode(node.Uplink, ip) }
	}
	for _, o := range own {
		if o.IsValid() {
			s.own[familyIndex(o.Addr())] = o
		}
	}
	return s
}

// Reset replaces the peer set with peers, decides every peer's mode again
// (a route lookup per node IP with DirectRouting) and returns the whole
// selection; its Rejected are the rejections not reported before. Of a key
// given twice, the first counts and the second is rejected.
func (s *Selector) Reset(peers []Peer) (Selection, error) {
	keep := make(map[PeerKey]struct{}, len(peers))
	for _, p := range peers {
		keep[p.Key()] = struct{}{}
	}
	var gone []PeerKey
	for _, es := range s.subnets {
		for _, e := range es {
			if _, ok := keep[e.Key()]; !ok {
				gone = append(gone, e.Key())
			}
		}
	}
	for ip, m := range s.modes {
		s.modes[ip] = nodeMode{peers: m.peers}
	}
	t := newTouch()
	for _, k := range gone {
		s.remove(t, k)
	}
	var dups []Rejection
	for _, p := range peers {
		if _, first := keep[p.Key()]; !first {
			dups = append(dups, Rejection{p, "another peer has the same subnet"})
			continue
		}
		delete(keep, p.Key())
		s.set(t, p)
	}
	d, err := s.reselect(t, true)
	return Selection{Peers: s.Selected(), Rejected: append(d.Rejected, dups...)}, err
}

// Update applies ch to the peer set and returns the subnets whose selected
// peer changed. Modes of node IPs already known are reused. The error joins
// those of peers whose mode could not be decided: they are left out until
// a later Update or Reset decides it.
func (s *Selector) Update(ch Changes) (Delta, error) {
	t := newTouch()
	for _, k := range ch.Removed {
		s.remove(t, k)
	}
	for _, p := range ch.Set {
		s.set(t, p)
	}
	return s.reselect(t, false)
}

// SetOwn changes this node's own subnet of own's family and selects again
// (a rare event: the caller rewrites the whole selection afterwards). It
// logs the rejections that appear.
func (s *Selector) SetOwn(own netip.Prefix) error {
	s.own[familyIndex(own.Addr())] = own
	d, err := s.reselect(newTouch(), true)
	LogRejections(d.Rejected)
	return err
}

// Selected returns the selected peers in subnet order.
func (s *Selector) Selected() []Peer {
	var out []Peer
	for _, es := range s.subnets {
		if p, ok := selectedOf(es); ok {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b Peer) int { return a.Subnet.Compare(b.Subnet) })
	return out
}

// SamePeer reports whether a and b program the same state.
func SamePeer(a, b Peer) bool {
	return a.Subnet == b.Subnet && a.NodeIP == b.NodeIP && a.TunnelIP == b.TunnelIP &&
		a.Mode == b.Mode && bytes.Equal(a.VtepMAC, b.VtepMAC) && a.PublicKey == b.PublicKey
}

// touch collects what changes to the peer set touched, to select again.
type touch struct {
	// before holds the selected peer (zero: none) of each subnet whose
	// peers changed, from before the first change.
	before map[netip.Prefix]Peer
	// ids are the old and new tunnel identities of the changed peers.
	ids map[tunnelID]struct{}
}

func newTouch() touch {
	return touch{before: map[netip.Prefix]Peer{}, ids: map[tunnelID]struct{}{}}
}

// changing records in t that peer p of subnet sub (zero: none) is about to
// change.
func (s *Selector) changing(t touch, sub netip.Prefix, p Peer) {
	if _, ok := t.before[sub]; !ok {
		t.before[sub], _ = selectedOf(s.subnets[sub])
	}
	if id, ok := s.identity(p); ok {
		t.ids[id] = struct{}{}
	}
}

// find returns where the peer with key k is (or would be) in its subnet's
// peers, and whether it is there.
func (s *Selector) find(k PeerKey) (int, bool) {
	return slices.BinarySearchFunc(s.subnets[k.Subnet], k.NodeIP, func(e entry, ip netip.Addr) int { return e.NodeIP.Compare(ip) })
}

// remove takes the peer with key k out of the set, if it is there.
func (s *Selector) remove(t touch, k PeerKey) {
	i, ok := s.find(k)
	if !ok {
		return
	}
	es := s.subnets[k.Subnet]
	s.changing(t, k.Subnet, es[i].Peer)
	s.unindex(es[i].Peer)
	delete(s.undecided, k)
	if m, ok := s.modes[k.NodeIP]; ok {
		if m.peers--; m.peers == 0 {
			delete(s.modes, k.NodeIP)
		} else {
			s.modes[k.NodeIP] = m
		}
	}
	if es = slices.Delete(es, i, i+1); len(es) == 0 {
		delete(s.subnets, k.Subnet)
	} else {
		s.subnets[k.Subnet] = es
	}
}

// set adds p to the set or replaces the peer of its key; a peer equal to
// the one it replaces changes nothing.
func (s *Selector) set(t touch, p Peer) {
	k := p.Key()
	i, ok := s.find(k)
	es := s.subnets[k.Subnet]
	if ok {
		p.Mode = es[i].Mode // decided by node IP, which is part of the key
		if SamePeer(es[i].Peer, p) {
			return
		}
		s.changing(t, k.Subnet, es[i].Peer)
		s.unindex(es[i].Peer)
		es[i].Peer = p
	} else {
		p.Mode = ""
		s.changing(t, k.Subnet, Peer{}) // before the insert: the subnet's old peer
		s.subnets[k.Subnet] = slices.Insert(es, i, entry{Peer: p})
		if s.lookup != nil {
			m := s.modes[k.NodeIP]
			m.peers++
			s.modes[k.NodeIP] = m
		}
	}
	s.changing(t, k.Subnet, p)
	if id, ok := s.identity(p); ok {
		s.ids[id] = append(s.ids[id], k.Subnet)
	}
}

// unindex takes p out of the identity index.
func (s *Selector) unindex(p Peer) {
	m, ok := s.identity(p)
	if !ok {
		return
	}
	subs := s.ids[m]
	if i := slices.Index(subs, p.Subnet); i >= 0 {
		subs = slices.Delete(subs, i, i+1)
	}
	if len(subs) == 0 {
		delete(s.ids, m)
	} else {
		s.ids[m] = subs
	}
}

// tunnelID is what identifies a node's tunnel endpoint to its peers: a
// vxlan VtepMAC or a wireguard public key, of one family. No two node IPs
// may share one. Endpoints are per family: flannel.<VNI> and
// flannel-v6.<VNI> are two devices with a MAC each, and flannel-wg and
// flannel-wg-v6 two devices with one key (a dual-stack node's two halves
// publish the same key with node IPs of each family).
type tunnelID struct {
	// id holds the MAC (first 6 bytes) or the key.
	id [32]byte
	// family is familyIndex of the peer's subnet.
	family int
}

// identity returns p's tunnel identity as an index key: the VtepMAC on a
// vxlan node (unicast ones only), the decoded public key on a wireguard
// node (valid ones only); others are rejected, and other backends have
// none.
func (s *Selector) identity(p Peer) (tunnelID, bool) {
	id := tunnelID{family: familyIndex(p.Subnet.Addr())}
	switch s.node.Backend {
	case ModeVXLAN:
		if UnicastMAC(p.VtepMAC) {
			copy(id.id[:], p.VtepMAC)
			return id, true
		}
	case ModeWireGuard:
		if key, ok := decodeKey(p.PublicKey); ok {
			id.id = key
			return id, true
		}
	}
	return id, false
}

// reselect runs the greedy pass over the whole set (all) or over the
// components of the subnets and identities t touched and of the undecided
// peers.
func (s *Selector) reselect(t touch, all bool) (Delta, error) {
	var subnets []netip.Prefix
	if all {
		subnets = slices.Collect(maps.Keys(s.subnets))
		for sub := range t.before {
			if _, ok := s.subnets[sub]; !ok {
				subnets = append(subnets, sub)
			}
		}
	} else {
		subnets = s.components(t)
	}
	return s.pass(subnets, t.before)
}

// components returns the subnets linked, through peers that share a subnet
// or a tunnel identity, to those t touched and those of undecided peers.
func (s *Selector) components(t touch) []netip.Prefix {
	seen := map[netip.Prefix]bool{}
	seenID := map[tunnelID]bool{}
	var queue []netip.Prefix
	addSubnet := func(sub netip.Prefix) {
		if !seen[sub] {
			seen[sub] = true
			queue = append(queue, sub)
		}
	}
	addID := func(id tunnelID) {
		if !seenID[id] {
			seenID[id] = true
			for _, sub := range s.ids[id] {
				addSubnet(sub)
			}
		}
	}
	for sub := range t.before {
		addSubnet(sub)
	}
	for k := range s.undecided {
		addSubnet(k.Subnet)
	}
	for id := range t.ids {
		addID(id)
	}
	for i := 0; i < len(queue); i++ {
		for _, e := range s.subnets[queue[i]] {
			if id, ok := s.identity(e.Peer); ok {
				addID(id)
			}
		}
	}
	return queue
}

// pass is the greedy selection over subnets, which must be whole
// components (or all subnets). A subnet's peer before is before[subnet]
// when present, else the one selected now.
func (s *Selector) pass(subnets []netip.Prefix, before map[netip.Prefix]Peer) (Delta, error) {
	slices.SortFunc(subnets, netip.Prefix.Compare)
	var (
		d    Delta
		errs []error
	)
	claims := map[tunnelID]netip.Addr{} // tunnel identity -> node IP
	for _, sub := range subnets {
		es := s.subnets[sub]
		old, ok := before[sub]
		if !ok {
			old, _ = selectedOf(es)
		}
		var now Peer
		for i := range es {
			e := &es[i]
			e.selected = false
			reason := peerProblem(s.node, s.own, e.Peer)
			if reason == "" {
				mode, err := s.mode(e.NodeIP)
				if err != nil {
					errs = append(errs, fmt.Errorf("peer %s: %w", e.Subnet, err))
					s.undecided[e.Key()] = struct{}{}
					e.reason, e.Mode = "", ""
					continue
				}
				delete(s.undecided, e.Key())
				e.Mode = mode
				reason = s.claim(e.Peer, now.Subnet.IsValid(), claims)
			}
			if reason != "" && reason != e.reason {
				d.Rejected = append(d.Rejected, Rejection{e.Peer, reason})
			}
			e.reason = reason
			if reason == "" {
				e.selected, now = true, e.Peer
			}
		}
		if !SamePeer(old, now) {
			d.Subnets = append(d.Subnets, SubnetChange{Old: old, New: now})
		}
	}
	return d, errors.Join(errs...)
}

// claim returns why valid peer p, Mode set, cannot be selected when its
// subnet is taken or not, given the tunnel identities claimed so far; or ""
// after claiming p's identity. Only vxlan and wireguard peers claim one
// (direct routing peers of a vxlan node do not).
func (s *Selector) claim(p Peer, taken bool, claims map[tunnelID]netip.Addr) string {
	if taken {
		return "another peer has the same subnet"
	}
	if p.Mode != ModeVXLAN && p.Mode != ModeWireGuard {
		return ""
	}
	id, _ := s.identity(p)
	if owner, ok := claims[id]; ok && owner != p.NodeIP {
		if p.Mode == ModeWireGuard {
			return "another node IP has the same public key"
		}
		return "another node IP has the same VtepMAC"
	}
	claims[id] = p.NodeIP
	return ""
}

// mode returns the mode of node IP ip, deciding it if it is not known.
func (s *Selector) mode(ip netip.Addr) (Mode, error) {
	if s.lookup == nil {
		return s.node.Backend, nil
	}
	m := s.modes[ip]
	if m.mode == "" {
		mode, err := s.lookup(ip)
		if err != nil {
			return "", err
		}
		m.mode = mode
		s.modes[ip] = m
	}
	return m.mode, nil
}

// selectedOf returns the selected peer among es, if there is one.
func selectedOf(es []entry) (Peer, bool) {
	for _, e := range es {
		if e.selected {
			return e.Peer, true
		}
	}
	return Peer{}, false
}

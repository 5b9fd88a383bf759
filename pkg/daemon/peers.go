package daemon

import (
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/lease"
)

// peerTable is the desired peer set, kept from the lease source's changes
// at a cost that depends on the size of the change, not on the number of
// leases; it tells which peer keys each change touched. A lease makes one
// peer per half (address family) that is enabled here, is not one of our
// own subnets, matches our backend and has valid data; halves it cannot use
// are logged when they arrive and left out. It is the reconciler's
// reconcile.Desired, safe for concurrent use.
type peerTable struct {
	mu      sync.Mutex
	backend string
	// network and network6 are the IPv4 and IPv6 pod networks, invalid
	// when the family is off.
	network, network6 netip.Prefix
	// own holds our subnets (Subnet, IPv6Subnet).
	own lease.Lease
	// leases are the current leases by source key; peers their usable
	// halves by source key and family.
	leases map[string]lease.Lease
	peers  map[halfKey]datapath.Peer
	// holders lists, sorted, the halves whose lease makes one peer key
	// (normally one): the peer is the first holder's.
	holders map[datapath.PeerKey][]halfKey
	// full is set by the first full update: from then on the set is
	// complete.
	full bool
}

// halfKey names one half of the lease under a source key.
type halfKey struct {
	src string
	v6  bool
}

func newPeerTable(backend string, network, network6 netip.Prefix, own lease.Lease) *peerTable {
	return &peerTable{
		backend: backend, network: network, network6: network6, own: own,
		leases: map[string]lease.Lease{}, peers: map[halfKey]datapath.Peer{},
		holders: map[datapath.PeerKey][]halfKey{},
	}
}

// update applies a lease update and returns the keys of the peers it
// added, changed or removed. A full update also removes every key it does
// not name.
func (t *peerTable) update(u lease.Update) []datapath.PeerKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	touched := map[datapath.PeerKey]bool{}
	t.apply(u, touched)
	return slices.Collect(maps.Keys(touched))
}

// apply applies u, recording the peer keys it touches.
func (t *peerTable) apply(u lease.Update, touched map[datapath.PeerKey]bool) {
	if u.Full {
		t.full = true
		named := make(map[string]bool, len(u.Changes))
		for _, c := range u.Changes {
			named[c.Key] = true
		}
		for src := range t.leases {
			if !named[src] {
				t.remove(src, touched)
			}
		}
	}
	for _, c := range u.Changes {
		t.remove(c.Key, touched)
		if !c.Removed {
			t.leases[c.Key] = c.Lease
			t.addLease(c.Key, c.Lease, touched)
		}
	}
}

// addLease adds the usable halves of l, held under source key src.
func (t *peerTable) addLease(src string, l lease.Lease, touched map[datapath.PeerKey]bool) {
	for _, h := range l.Halves() {
		if h.Subnet == t.own.Subnet || h.Subnet == t.own.IPv6Subnet {
			continue
		}
		if p, ok := t.peerOf(l, h); ok {
			t.add(halfKey{src, h.Subnet.Addr().Is6()}, p, touched)
		}
	}
}

// setOwn changes the own subnets: a lease holding a new one stops being a
// peer for it and one holding an old one becomes one. It looks at every
// lease, but an own subnet moves only when another node took it.
func (t *peerTable) setOwn(own lease.Lease) []datapath.PeerKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.own
	if own.Subnet == old.Subnet && own.IPv6Subnet == old.IPv6Subnet {
		return nil
	}
	t.own = lease.Lease{Subnet: own.Subnet, IPv6Subnet: own.IPv6Subnet}
	moved := map[netip.Prefix]bool{}
	for _, p := range []netip.Prefix{old.Subnet, old.IPv6Subnet, own.Subnet, own.IPv6Subnet} {
		if p.IsValid() {
			moved[p] = true
		}
	}
	touched := map[datapath.PeerKey]bool{}
	for src, l := range t.leases {
		if moved[l.Subnet] || moved[l.IPv6Subnet] {
			t.remove(src, touched)
			t.leases[src] = l
			t.addLease(src, l, touched)
		}
	}
	return slices.Collect(maps.Keys(touched))
}

// complete reports whether the set is complete: a full update arrived.
func (t *peerTable) complete() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.full
}

// Peers returns the whole peer set.
func (t *peerTable) Peers() []datapath.Peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]datapath.Peer, 0, len(t.holders))
	for _, h := range t.holders {
		out = append(out, t.peers[h[0]])
	}
	return out
}

// Peer returns the peer with key k: the lease of its first holder.
func (t *peerTable) Peer(k datapath.PeerKey) (datapath.Peer, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok := t.holders[k]
	if !ok {
		return datapath.Peer{}, false
	}
	return t.peers[h[0]], true
}

// Len returns the number of peers.
func (t *peerTable) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.holders)
}

// remove removes source key src's lease and the peers of both its halves.
func (t *peerTable) remove(src string, touched map[datapath.PeerKey]bool) {
	delete(t.leases, src)
	for _, hk := range []halfKey{{src, false}, {src, true}} {
		p, ok := t.peers[hk]
		if !ok {
			continue
		}
		delete(t.peers, hk)
		k := p.Key()
		touched[k] = true
		if h := slices.DeleteFunc(t.holders[k], func(x halfKey) bool { return x == hk }); len(h) > 0 {
			t.holders[k] = h
		} else {
			delete(t.holders, k)
		}
	}
}

func (t *peerTable) add(hk halfKey, p datapath.Peer, touched map[datapath.PeerKey]bool) {
	t.peers[hk] = p
	k := p.Key()
	touched[k] = true
	h := t.holders[k]
	i, _ := slices.BinarySearchFunc(h, hk, func(a, b halfKey) int { return strings.Compare(a.src, b.src) })
	t.holders[k] = slices.Insert(h, i, hk)
}

// peerOf turns half h of lease l into a peer, or logs why it cannot.
func (t *peerTable) peerOf(l lease.Lease, h lease.Half) (datapath.Peer, bool) {
	v6 := h.Subnet.Addr().Is6()
	network, family := t.network, "IPv4"
	if v6 {
		network, family = t.network6, "IPv6"
	}
	log := func() *slog.Logger { return slog.With("subnet", h.Subnet, "peer", h.PublicIP) }
	switch {
	case !network.IsValid():
		log().Debug("ignoring lease half of a family that is off", "family", family)
		return datapath.Peer{}, false
	case !network.Contains(h.Subnet.Addr()) || h.Subnet.Bits() < network.Bits():
		log().Warn("ignoring lease outside the cluster network", "network", network)
		return datapath.Peer{}, false
	case l.Attrs.BackendType != t.backend:
		log().Warn("ignoring lease of another backend type", "backend", l.Attrs.BackendType, "ours", t.backend)
		return datapath.Peer{}, false
	case !h.PublicIP.IsValid() || h.PublicIP.Is6() != v6 || h.PublicIP.Is4In6():
		log().Warn("ignoring lease without a public IP of its subnet's family", "family", family)
		return datapath.Peer{}, false
	}
	p := datapath.Peer{Subnet: h.Subnet, NodeIP: h.PublicIP}
	var err error
	switch datapath.Mode(t.backend) {
	case datapath.ModeVXLAN:
		p.VtepMAC, p.TunnelIP, err = h.VXLAN()
	case datapath.ModeWireGuard:
		p.PublicKey, err = l.WireGuardKey()
	}
	if err != nil {
		log().Warn("ignoring lease with bad backend data", "backend", t.backend, "err", err)
		return datapath.Peer{}, false
	}
	return p, true
}

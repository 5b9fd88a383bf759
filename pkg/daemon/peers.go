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
// leases; it tells which peer keys each change touched. A peer is every
// lease but our own whose backend matches ours and whose data is valid;
// leases it cannot use are logged when they arrive and left out. It is the
// reconciler's reconcile.Desired, safe for concurrent use.
type peerTable struct {
	mu      sync.Mutex
	backend string
	network netip.Prefix
	own     netip.Prefix
	// peers are the usable leases by source key; owns are those skipped
	// because they hold the own subnet (kept for when the own subnet
	// moves).
	peers map[string]datapath.Peer
	owns  map[string]lease.Lease
	// holders lists, sorted, the source keys whose lease makes one peer
	// key (normally one): the peer is the first holder's.
	holders map[datapath.PeerKey][]string
	// full is set by the first full update: from then on the set is
	// complete.
	full bool
}

func newPeerTable(backend string, network, own netip.Prefix) *peerTable {
	return &peerTable{
		backend: backend, network: network, own: own,
		peers: map[string]datapath.Peer{}, owns: map[string]lease.Lease{},
		holders: map[datapath.PeerKey][]string{},
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
		for key := range t.peers {
			if !named[key] {
				t.remove(key, touched)
			}
		}
		for key := range t.owns {
			if !named[key] {
				delete(t.owns, key)
			}
		}
	}
	for _, c := range u.Changes {
		t.remove(c.Key, touched)
		delete(t.owns, c.Key)
		if c.Removed {
			continue
		}
		if c.Lease.Subnet == t.own {
			t.owns[c.Key] = c.Lease
			continue
		}
		if p, ok := t.peerOf(c.Lease); ok {
			t.add(c.Key, p, touched)
		}
	}
}

// setOwn changes the own subnet: the lease holding the new one stops being a
// peer and the one holding the old one becomes one. It looks at every
// lease, but the own subnet moves only when another node took it.
func (t *peerTable) setOwn(own netip.Prefix) []datapath.PeerKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	if own == t.own {
		return nil
	}
	t.own = own
	touched := map[datapath.PeerKey]bool{}
	for key, p := range t.peers {
		if p.Subnet == own {
			t.remove(key, touched)
		}
	}
	var back []lease.Change
	for key, l := range t.owns {
		if l.Subnet != own {
			back = append(back, lease.Change{Key: key, Lease: l})
		}
	}
	t.apply(lease.Update{Changes: back}, touched)
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

func (t *peerTable) remove(key string, touched map[datapath.PeerKey]bool) {
	p, ok := t.peers[key]
	if !ok {
		return
	}
	delete(t.peers, key)
	k := p.Key()
	touched[k] = true
	if h := slices.DeleteFunc(t.holders[k], func(s string) bool { return s == key }); len(h) > 0 {
		t.holders[k] = h
	} else {
		delete(t.holders, k)
	}
}

func (t *peerTable) add(key string, p datapath.Peer, touched map[datapath.PeerKey]bool) {
	t.peers[key] = p
	k := p.Key()
	touched[k] = true
	h := t.holders[k]
	i, _ := slices.BinarySearchFunc(h, key, strings.Compare)
	t.holders[k] = slices.Insert(h, i, key)
}

// peerOf turns a lease into a peer, or logs why it cannot.
func (t *peerTable) peerOf(l lease.Lease) (datapath.Peer, bool) {
	log := func() *slog.Logger { return slog.With("subnet", l.Subnet, "peer", l.Attrs.PublicIP) }
	switch {
	case !t.network.Contains(l.Subnet.Addr()) || l.Subnet.Bits() < t.network.Bits():
		log().Warn("ignoring lease outside the cluster network", "network", t.network)
		return datapath.Peer{}, false
	case l.Attrs.BackendType != t.backend:
		log().Warn("ignoring lease of another backend type", "backend", l.Attrs.BackendType, "ours", t.backend)
		return datapath.Peer{}, false
	case !l.Attrs.PublicIP.Is4():
		log().Warn("ignoring lease without an IPv4 PublicIP")
		return datapath.Peer{}, false
	}
	p := datapath.Peer{Subnet: l.Subnet, NodeIP: l.Attrs.PublicIP}
	var err error
	switch datapath.Mode(t.backend) {
	case datapath.ModeVXLAN:
		p.VtepMAC, p.TunnelIP, err = l.VXLAN()
	case datapath.ModeWireGuard:
		p.PublicKey, err = l.WireGuardKey()
	}
	if err != nil {
		log().Warn("ignoring lease with bad BackendData", "backend", t.backend, "err", err)
		return datapath.Peer{}, false
	}
	return p, true
}

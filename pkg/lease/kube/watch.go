package kube

import (
	"context"
	"hash/maphash"
	"net/netip"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftnet/weft/pkg/lease"
)

// Watch tells update about the leases of all Nodes that have a podCIDR
// and flannel's backend annotations (weft and flannel nodes alike,
// this node included), keyed by Node name, until ctx ends: once the Node
// cache has synced, all of them (Update.Full), then the leases of the Nodes
// that changed, recomputed for those Nodes only. Nodes whose annotations
// cannot be parsed are logged once and left out (removed, if their lease
// was delivered). While the API server is unreachable the last set stands;
// the informer's re-lists reach Watch as changes of single Nodes.
func (m *Manager) Watch(ctx context.Context, update func(lease.Update)) {
	sub := m.nodes.subscribe("")
	defer sub.stop()
	w := newNodeWatch(m)
	for {
		if m.nodes.synced() {
			if u, ok := w.next(sub.changed()); ok {
				update(u)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-sub.wake:
		}
	}
}

// nodeWatch is the state of one Watch call.
type nodeWatch struct {
	m *Manager
	// sent holds, for each Node whose lease was delivered and not removed
	// since, a hash of that lease (leaseHash): enough to tell whether a
	// changed Node changed its lease.
	sent      map[string]uint64
	seed      maphash.Seed
	delivered bool
	// bad holds the problem logged for each Node whose lease is unusable.
	bad map[string]string
}

func newNodeWatch(m *Manager) *nodeWatch {
	return &nodeWatch{m: m, sent: map[string]uint64{}, bad: map[string]string{}, seed: maphash.MakeSeed()}
}

// next returns the first delivery (every lease) or, after it, the changes
// to the leases of the Nodes named, and whether there is anything to
// deliver.
func (w *nodeWatch) next(names map[string]struct{}) (lease.Update, bool) {
	var u lease.Update
	add := func(name string, n *corev1.Node) {
		if c, ok := w.refresh(name, n); ok {
			u.Changes = append(u.Changes, c)
		}
	}
	if !w.delivered {
		// The cache holds every Node: names changed so far are among them.
		for _, n := range w.m.nodes.list() {
			add(n.Name, n)
		}
		w.delivered, u.Full = true, true
		return u, true
	}
	for name := range names {
		n, _ := w.m.nodes.lookup(name)
		add(name, n)
	}
	return u, len(u.Changes) > 0
}

// refresh recomputes the lease of Node name (n, nil when it is gone) and
// returns how it differs from what was delivered, if it does. A problem
// with the lease is logged when it first appears.
func (w *nodeWatch) refresh(name string, n *corev1.Node) (lease.Change, bool) {
	var l lease.Lease
	var ok bool
	var err error
	if n != nil {
		l, ok, err = w.m.keys.leaseOf(n)
	}
	if err == nil {
		delete(w.bad, name)
	} else if w.bad[name] != err.Error() {
		w.m.log.Warn("ignoring unusable lease", "peer", name, "err", err)
		w.bad[name] = err.Error()
	}
	old, had := w.sent[name]
	if !ok {
		if had {
			delete(w.sent, name)
			return lease.Change{Key: name, Removed: true}, true
		}
		return lease.Change{}, false
	}
	if h := leaseHash(w.seed, l); !had || h != old {
		w.sent[name] = h
		return lease.Change{Key: name, Lease: l}, true
	}
	return lease.Change{}, false
}

// leaseHash hashes all of l that Watch delivers (Kubernetes leases have no
// Expiration): equal leases hash alike, different ones differ but for a
// chance of 2^-64.
func leaseHash(seed maphash.Seed, l lease.Lease) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	maphash.WriteComparable(&h, struct {
		subnet, subnet6 netip.Prefix
		ip, ip6         netip.Addr
		backendType     string
		dataLen         int
	}{l.Subnet, l.IPv6Subnet, l.Attrs.PublicIP, addrOf(l.Attrs.PublicIPv6), l.Attrs.BackendType, len(l.Attrs.BackendData)})
	h.Write(l.Attrs.BackendData)
	h.Write(l.Attrs.BackendV6Data)
	return h.Sum64()
}

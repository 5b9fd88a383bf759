package kube

import (
	"context"
	"slices"

	"github.com/weftnet/weft/pkg/lease"
)

// Watch calls update with the leases of all Nodes that have an IPv4 podCIDR
// and flannel's backend annotations (weft and flannel nodes alike, this
// node included) each time that set changes, until ctx ends. Nodes whose
// annotations cannot be parsed are logged once and left out. While the API
// server is unreachable the last set stands.
func (m *Manager) Watch(ctx context.Context, update func(lease.Update)) {
	wake, stop := m.nodes.subscribe("")
	defer stop()
	var last []lease.Lease
	delivered := false
	bad := map[string]string{} // node -> problem already logged
	for {
		if m.nodes.synced() {
			if ls := m.leases(bad); !delivered || !slices.EqualFunc(ls, last, sameLease) {
				u := lease.Update{Full: true}
				for _, l := range ls {
					u.Changes = append(u.Changes, lease.Change{Key: l.Subnet.String() + "|" + l.Attrs.PublicIP.String(), Lease: l})
				}
				update(u)
				last, delivered = ls, true
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		}
	}
}

// leases returns the leases in the Node cache, sorted by subnet. Problems are
// logged when they first appear for a node; bad remembers them.
func (m *Manager) leases(bad map[string]string) []lease.Lease {
	nodes := m.nodes.list()
	seen := make(map[string]bool, len(nodes))
	var ls []lease.Lease
	for _, n := range nodes {
		seen[n.Name] = true
		l, ok, err := m.keys.leaseOf(n)
		if err != nil {
			if bad[n.Name] != err.Error() {
				m.log.Warn("ignoring unusable lease", "peer", n.Name, "err", err)
				bad[n.Name] = err.Error()
			}
			continue
		}
		delete(bad, n.Name)
		if ok {
			ls = append(ls, l)
		}
	}
	for name := range bad {
		if !seen[name] {
			delete(bad, name)
		}
	}
	lease.Sort(ls)
	return ls
}

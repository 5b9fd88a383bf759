package etcd

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/pkg/lease"
)

// ErrNoFreeSubnet is wrapped by Acquire's error when every subnet between
// SubnetMin and SubnetMax is leased.
var ErrNoFreeSubnet = errors.New("no free subnet")

// maxAcquireAttempts bounds how often Acquire starts over after losing a race
// to another writer. Each lost race means someone else got a subnet, so this
// is only reached under pathological churn.
const maxAcquireAttempts = 50

// Acquire obtains this node's lease, a subnet of each enabled family: the
// lease whose PublicIP (or PublicIPv6) is ours and that fits the network
// config (rewritten with attrs and a fresh TTL; a permanent reservation
// stays permanent), else per family hint's subnet if it is a free leasable
// one, else a random free one. A lease of ours that no longer fits (IPv6
// turned on, say) is replaced, its subnets offered first. Every write is a
// transaction conditional on what was read, so two nodes never hold one
// subnet.
func (m *Manager) Acquire(ctx context.Context, attrs lease.Attrs, hint lease.Lease) (lease.Lease, error) {
	l, err := m.acquire(ctx, attrs, hint)
	if err != nil {
		return lease.Lease{}, fmt.Errorf("acquire lease for %s: %w", nodeID(attrs), err)
	}
	return l, nil
}

// nodeID names the node of attrs in logs and errors: its public IPs.
func nodeID(a lease.Attrs) string {
	switch {
	case a.PublicIPv6 == nil:
		return a.PublicIP.String()
	case !a.PublicIP.IsValid():
		return a.PublicIPv6.String()
	}
	return a.PublicIP.String() + "/" + a.PublicIPv6.String()
}

func (m *Manager) acquire(ctx context.Context, attrs lease.Attrs, hint lease.Lease) (lease.Lease, error) {
	cfg, err := m.NetworkConfig(ctx)
	if err != nil {
		return lease.Lease{}, err
	}
	rs, err := newRanges(cfg)
	if err != nil {
		return lease.Lease{}, err
	}
	if attrs, err = familyAttrs(attrs, rs); err != nil {
		return lease.Lease{}, err
	}
	value, err := json.Marshal(attrs)
	if err != nil {
		return lease.Lease{}, fmt.Errorf("encode lease value: %w", err)
	}
	hint = usableHint(hint, rs, attrs)
	for range maxAcquireAttempts {
		l, how, err := m.tryAcquire(ctx, rs, attrs, value, hint)
		if err != nil {
			return lease.Lease{}, err
		}
		if how != "" {
			slog.Info("acquired lease", "subnet", l.String(), "node", nodeID(attrs), "how", how, "expires", l.Expiration)
			return l, nil
		}
		slog.Debug("lost a race for a subnet, retrying", "node", nodeID(attrs))
	}
	return lease.Lease{}, fmt.Errorf("gave up after losing %d races for a subnet to other writers", maxAcquireAttempts)
}

// familyAttrs checks that attrs has a public IP of each enabled family and
// drops those of a family that is off.
func familyAttrs(a lease.Attrs, rs ranges) (lease.Attrs, error) {
	if rs.v4 == nil {
		a.PublicIP = netip.Addr{}
	} else if !a.PublicIP.Is4() {
		return a, fmt.Errorf("public IP %q is not an IPv4 address: set --public-ip or --iface", a.PublicIP)
	}
	if rs.v6 == nil {
		a.PublicIPv6, a.BackendV6Data = nil, nil
	} else if a.PublicIPv6 == nil || !a.PublicIPv6.Is6() || a.PublicIPv6.Is4In6() {
		return a, fmt.Errorf("public IPv6 address %v is not an IPv6 address: set --public-ipv6 or --iface", a.PublicIPv6)
	}
	return a, nil
}

// usableHint drops the halves of hint that are not leasable subnets.
func usableHint(hint lease.Lease, rs ranges, attrs lease.Attrs) lease.Lease {
	for _, h := range []struct {
		r *subnetRange
		p *netip.Prefix
	}{{rs.v4, &hint.Subnet}, {rs.v6, &hint.IPv6Subnet}} {
		if h.p.IsValid() && (h.r == nil || !h.r.contains(*h.p)) {
			slog.Info("previous subnet no longer fits the network config, ignoring it", "subnet", *h.p, "node", nodeID(attrs))
			*h.p = netip.Prefix{}
		}
	}
	return hint
}

// tryAcquire makes one attempt from a fresh listing. It returns how it got
// the lease, or "" if another writer changed the keys in between.
func (m *Manager) tryAcquire(ctx context.Context, rs ranges, attrs lease.Attrs, value []byte, hint lease.Lease) (lease.Lease, string, error) {
	ls, err := m.listTaken(ctx, rs, attrs)
	if err != nil {
		return lease.Lease{}, "", err
	}
	if ls.own != nil {
		l, ok, err := m.update(ctx, ls.own, attrs, value)
		if err != nil {
			return lease.Lease{}, "", fmt.Errorf("subnet %s: %w", ls.own.lease, err)
		}
		if !ok {
			return lease.Lease{}, "", nil
		}
		return l, "existing lease of this node", nil
	}
	if s := ls.stale; s != nil {
		// Our lease of another shape: its subnets are ours to reuse.
		slog.Info("replacing this node's lease that does not fit the network config", "subnet", s.lease.String(), "node", nodeID(attrs))
		hint.Subnet = cmp.Or(hint.Subnet, s.lease.Subnet)
		hint.IPv6Subnet = cmp.Or(hint.IPv6Subnet, s.lease.IPv6Subnet)
		hint = usableHint(hint, rs, attrs)
	}
	want, how, err := ls.pick(rs, hint)
	if err != nil {
		return lease.Lease{}, "", err
	}
	l, ok, err := m.create(ctx, want, attrs, value, ls)
	if err != nil {
		return lease.Lease{}, "", fmt.Errorf("subnet %s: %w", want, err)
	}
	if !ok {
		return lease.Lease{}, "", nil
	}
	return l, how, nil
}

// ownKey is a lease of this node found by listTaken.
type ownKey struct {
	lease lease.Lease
	kv    *mvccpb.KeyValue
}

// listing is what listTaken read.
type listing struct {
	// v4 and v6 are the subnets of each family some key names, valid value
	// or not (our stale lease's excepted).
	v4, v6 map[netip.Prefix]bool
	// own is this node's lease that fits the network config; stale one of
	// this node's that does not.
	own, stale *ownKey
	// rev is the etcd revision of the listing.
	rev int64
}

// listTaken lists the subnet keys. Ours is the first lease whose PublicIP
// or PublicIPv6 is one of attrs'.
func (m *Manager) listTaken(ctx context.Context, rs ranges, attrs lease.Attrs) (listing, error) {
	rctx, cancel := m.request(ctx)
	defer cancel()
	resp, err := m.cli.Get(rctx, m.subnetsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return listing{}, fmt.Errorf("list leases: %w", err)
	}
	ls := listing{v4: map[netip.Prefix]bool{}, v6: map[netip.Prefix]bool{}, rev: resp.Header.Revision}
	for _, kv := range resp.Kvs {
		l, err := m.parseLease(kv)
		if err != nil {
			// A readable key name still blocks its subnets.
			l, err = parseKeyName(string(kv.Key[len(m.subnetsPrefix()):]))
		} else if ls.own == nil && ls.stale == nil && ours(l.Attrs, attrs) {
			if rs.fits(l) {
				ls.own = &ownKey{lease: l, kv: kv}
			} else {
				ls.stale = &ownKey{lease: l, kv: kv}
				continue
			}
		}
		if err != nil {
			continue
		}
		if l.Subnet.IsValid() {
			ls.v4[l.Subnet] = true
		}
		if l.IPv6Subnet.IsValid() {
			ls.v6[l.IPv6Subnet] = true
		}
	}
	return ls, nil
}

// ours reports whether a lease with attrs a is the node's with attrs mine:
// it names one of the node's public IPs.
func ours(a, mine lease.Attrs) bool {
	if mine.PublicIP.IsValid() && a.PublicIP == mine.PublicIP {
		return true
	}
	return mine.PublicIPv6 != nil && a.PublicIPv6 != nil && *a.PublicIPv6 == *mine.PublicIPv6
}

// pick chooses a free subnet of each enabled family: hint's if free, else a
// random one. how says which.
func (ls listing) pick(rs ranges, hint lease.Lease) (lease.Lease, string, error) {
	var l lease.Lease
	var hows []string
	for _, f := range []struct {
		r     *subnetRange
		taken map[netip.Prefix]bool
		hint  netip.Prefix
		dst   *netip.Prefix
	}{{rs.v4, ls.v4, hint.Subnet, &l.Subnet}, {rs.v6, ls.v6, hint.IPv6Subnet, &l.IPv6Subnet}} {
		switch {
		case f.r == nil:
		case f.hint.IsValid() && !f.taken[f.hint]:
			*f.dst = f.hint
			hows = append(hows, "previous subnet")
		default:
			p, free := f.r.randomFree(f.taken)
			if !free {
				return l, "", fmt.Errorf("%w among the %s (%d leased): widen the network or its subnet range in net-conf.json, or remove stale leases", ErrNoFreeSubnet, f.r, len(f.taken))
			}
			*f.dst = p
			hows = append(hows, "free subnet")
		}
	}
	return l, strings.Join(slices.Compact(hows), " and "), nil
}

// create writes a new lease with want's subnets if none of them was taken
// since ls was read, deleting ls's stale lease of ours in the same
// transaction.
func (m *Manager) create(ctx context.Context, want lease.Lease, attrs lease.Attrs, value []byte, ls listing) (lease.Lease, bool, error) {
	key := m.subnetKey(want)
	conds := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}
	if want.Subnet.IsValid() {
		// No lease with this IPv4 subnet, with or without an IPv6 half,
		// appeared since the listing (which saw none but our stale one).
		v4 := m.subnetKey(lease.Lease{Subnet: want.Subnet})
		conds = append(conds, clientv3.Compare(clientv3.CreateRevision(v4), "<", ls.rev+1),
			clientv3.Compare(clientv3.CreateRevision(v4+"&"), "<", ls.rev+1).WithPrefix())
	}
	if want.IPv6Subnet.IsValid() {
		// The IPv6 half ends the key, out of reach of a prefix: no key may
		// have been created since the listing.
		conds = append(conds, clientv3.Compare(clientv3.CreateRevision(m.subnetsPrefix()), "<", ls.rev+1).WithPrefix())
	}
	var also []clientv3.Op
	if s := ls.stale; s != nil {
		conds = append(conds, clientv3.Compare(clientv3.ModRevision(string(s.kv.Key)), "=", s.kv.ModRevision))
		also = append(also, clientv3.OpDelete(string(s.kv.Key)))
	}
	l, ok, err := m.putLeased(ctx, want, attrs, conds, value, also...)
	if ok && ls.stale != nil && ls.stale.kv.Lease != 0 {
		m.revoke(ctx, clientv3.LeaseID(ls.stale.kv.Lease), ls.stale.lease)
	}
	return l, ok, err
}

// update rewrites this node's existing lease if nobody changed it since it
// was read. A key with an etcd lease gets a new one (fresh TTL, the old one
// is revoked); a permanent reservation stays permanent.
func (m *Manager) update(ctx context.Context, own *ownKey, attrs lease.Attrs, value []byte) (lease.Lease, bool, error) {
	unchanged := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(string(own.kv.Key)), "=", own.kv.ModRevision)}
	mine := lease.Lease{Subnet: own.lease.Subnet, IPv6Subnet: own.lease.IPv6Subnet, Attrs: attrs}
	if own.kv.Lease == 0 {
		rctx, cancel := m.request(ctx)
		defer cancel()
		resp, err := m.cli.Txn(rctx).If(unchanged...).Then(clientv3.OpPut(string(own.kv.Key), string(value))).Commit()
		if err != nil {
			return lease.Lease{}, false, fmt.Errorf("update reservation: %w", err)
		}
		return mine, resp.Succeeded, nil
	}
	l, ok, err := m.putLeased(ctx, mine, attrs, unchanged, value)
	if ok {
		m.revoke(ctx, clientv3.LeaseID(own.kv.Lease), own.lease)
	}
	return l, ok, err
}

// putLeased grants an etcd lease of TTL and puts want's key with it (and
// runs also) if conds hold; it revokes the grant again if not.
func (m *Manager) putLeased(ctx context.Context, want lease.Lease, attrs lease.Attrs, conds []clientv3.Cmp, value []byte, also ...clientv3.Op) (lease.Lease, bool, error) {
	rctx, cancel := m.request(ctx)
	defer cancel()
	grant, err := m.cli.Grant(rctx, int64(m.cfg.TTL/time.Second))
	if err != nil {
		return lease.Lease{}, false, fmt.Errorf("grant etcd lease: %w", err)
	}
	granted := time.Now()
	ops := append([]clientv3.Op{clientv3.OpPut(m.subnetKey(want), string(value), clientv3.WithLease(grant.ID))}, also...)
	resp, err := m.cli.Txn(rctx).If(conds...).Then(ops...).Commit()
	if err != nil || !resp.Succeeded {
		m.revoke(ctx, grant.ID, want)
		if err != nil {
			return lease.Lease{}, false, fmt.Errorf("write lease: %w", err)
		}
		return lease.Lease{}, false, nil
	}
	exp := granted.Add(time.Duration(grant.TTL) * time.Second)
	return lease.Lease{Subnet: want.Subnet, IPv6Subnet: want.IPv6Subnet, Attrs: attrs, Expiration: exp}, true, nil
}

// revoke drops an etcd lease no key needs any more; a failure only leaves it
// to expire on its own.
func (m *Manager) revoke(ctx context.Context, id clientv3.LeaseID, l lease.Lease) {
	rctx, cancel := m.request(ctx)
	defer cancel()
	if _, err := m.cli.Revoke(rctx, id); err != nil {
		slog.Debug("revoke unused etcd lease", "subnet", l.String(), "lease", fmt.Sprintf("%x", int64(id)), "err", err)
	}
}

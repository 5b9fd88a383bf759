package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
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

// Acquire obtains this node's lease: the lease whose PublicIP is ours
// (rewritten with attrs and a fresh TTL; a permanent reservation stays
// permanent), else hint if it is a free leasable subnet, else a random free
// one. Every write is a transaction conditional on what was read, so two
// nodes never hold one subnet.
func (m *Manager) Acquire(ctx context.Context, attrs lease.Attrs, hint netip.Prefix) (lease.Lease, error) {
	if !attrs.PublicIP.Is4() {
		return lease.Lease{}, fmt.Errorf("acquire lease: public IP %q is not an IPv4 address: set --public-ip or --iface", attrs.PublicIP)
	}
	l, err := m.acquire(ctx, attrs, hint)
	if err != nil {
		return lease.Lease{}, fmt.Errorf("acquire lease for %s: %w", attrs.PublicIP, err)
	}
	return l, nil
}

func (m *Manager) acquire(ctx context.Context, attrs lease.Attrs, hint netip.Prefix) (lease.Lease, error) {
	cfg, err := m.NetworkConfig(ctx)
	if err != nil {
		return lease.Lease{}, err
	}
	r, err := newSubnetRange(cfg)
	if err != nil {
		return lease.Lease{}, err
	}
	value, err := json.Marshal(attrs)
	if err != nil {
		return lease.Lease{}, fmt.Errorf("encode lease value: %w", err)
	}
	if hint.IsValid() && !r.contains(hint) {
		slog.Info("previous subnet no longer fits the network config, ignoring it", "subnet", hint, "node", attrs.PublicIP, "range", r)
		hint = netip.Prefix{}
	}
	for range maxAcquireAttempts {
		l, how, err := m.tryAcquire(ctx, r, attrs, value, hint)
		if err != nil {
			return lease.Lease{}, err
		}
		if how != "" {
			slog.Info("acquired lease", "subnet", l.Subnet, "node", attrs.PublicIP, "how", how, "expires", l.Expiration)
			return l, nil
		}
		slog.Debug("lost a race for a subnet, retrying", "node", attrs.PublicIP)
	}
	return lease.Lease{}, fmt.Errorf("gave up after losing %d races for a subnet to other writers", maxAcquireAttempts)
}

// tryAcquire makes one attempt from a fresh listing. It returns how it got
// the lease, or "" if another writer changed the key in between.
func (m *Manager) tryAcquire(ctx context.Context, r subnetRange, attrs lease.Attrs, value []byte, hint netip.Prefix) (lease.Lease, string, error) {
	taken, own, err := m.listTaken(ctx, r, attrs.PublicIP)
	if err != nil {
		return lease.Lease{}, "", err
	}
	var (
		l      lease.Lease
		ok     bool
		how    string
		subnet netip.Prefix
	)
	switch {
	case own != nil:
		subnet, how = own.subnet, "existing lease of this node"
		l, ok, err = m.update(ctx, own, attrs, value)
	case hint.IsValid() && !taken[hint]:
		subnet, how = hint, "previous subnet"
		l, ok, err = m.create(ctx, hint, attrs, value)
	default:
		var free bool
		subnet, free = r.randomFree(taken)
		if !free {
			return lease.Lease{}, "", fmt.Errorf("%w among the %s (%d leased): widen Network or SubnetMin..SubnetMax in net-conf.json, or remove stale leases", ErrNoFreeSubnet, r, len(taken))
		}
		how = "free subnet"
		l, ok, err = m.create(ctx, subnet, attrs, value)
	}
	if err != nil {
		return lease.Lease{}, "", fmt.Errorf("subnet %s: %w", subnet, err)
	}
	if !ok {
		return lease.Lease{}, "", nil
	}
	return l, how, nil
}

// ownKey is the existing lease of this node found by listTaken.
type ownKey struct {
	subnet netip.Prefix
	kv     *mvccpb.KeyValue
}

// listTaken lists the subnet keys: every subnet a key names is taken, valid
// value or not; own is the first leasable one whose PublicIP is ours.
func (m *Manager) listTaken(ctx context.Context, r subnetRange, publicIP netip.Addr) (map[netip.Prefix]bool, *ownKey, error) {
	rctx, cancel := m.request(ctx)
	defer cancel()
	resp, err := m.cli.Get(rctx, m.subnetsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, nil, fmt.Errorf("list leases: %w", err)
	}
	taken := make(map[netip.Prefix]bool, len(resp.Kvs))
	var own *ownKey
	for _, kv := range resp.Kvs {
		l, err := m.parseLease(kv)
		if err != nil {
			// A readable key name still blocks its subnet.
			if subnet, kerr := parseKeyName(string(kv.Key[len(m.subnetsPrefix()):])); kerr == nil {
				taken[subnet] = true
			}
			continue
		}
		taken[l.Subnet] = true
		if own == nil && l.Attrs.PublicIP == publicIP && r.contains(l.Subnet) {
			own = &ownKey{subnet: l.Subnet, kv: kv}
		}
	}
	return taken, own, nil
}

// create writes a new lease for subnet if its key does not exist yet.
func (m *Manager) create(ctx context.Context, subnet netip.Prefix, attrs lease.Attrs, value []byte) (lease.Lease, bool, error) {
	key := m.subnetKey(subnet)
	return m.putLeased(ctx, subnet, attrs, clientv3.Compare(clientv3.CreateRevision(key), "=", 0), value)
}

// update rewrites this node's existing lease if nobody changed it since it
// was read. A key with an etcd lease gets a new one (fresh TTL, the old one
// is revoked); a permanent reservation stays permanent.
func (m *Manager) update(ctx context.Context, own *ownKey, attrs lease.Attrs, value []byte) (lease.Lease, bool, error) {
	unchanged := clientv3.Compare(clientv3.ModRevision(string(own.kv.Key)), "=", own.kv.ModRevision)
	if own.kv.Lease == 0 {
		rctx, cancel := m.request(ctx)
		defer cancel()
		resp, err := m.cli.Txn(rctx).If(unchanged).Then(clientv3.OpPut(string(own.kv.Key), string(value))).Commit()
		if err != nil {
			return lease.Lease{}, false, fmt.Errorf("update reservation: %w", err)
		}
		return lease.Lease{Subnet: own.subnet, Attrs: attrs}, resp.Succeeded, nil
	}
	l, ok, err := m.putLeased(ctx, own.subnet, attrs, unchanged, value)
	if ok {
		m.revoke(ctx, clientv3.LeaseID(own.kv.Lease), own.subnet)
	}
	return l, ok, err
}

// putLeased grants an etcd lease of TTL and puts subnet's key with it if
// cond holds; it revokes the grant again if not.
func (m *Manager) putLeased(ctx context.Context, subnet netip.Prefix, attrs lease.Attrs, cond clientv3.Cmp, value []byte) (lease.Lease, bool, error) {
	rctx, cancel := m.request(ctx)
	defer cancel()
	grant, err := m.cli.Grant(rctx, int64(m.cfg.TTL/time.Second))
	if err != nil {
		return lease.Lease{}, false, fmt.Errorf("grant etcd lease: %w", err)
	}
	granted := time.Now()
	resp, err := m.cli.Txn(rctx).If(cond).Then(clientv3.OpPut(m.subnetKey(subnet), string(value), clientv3.WithLease(grant.ID))).Commit()
	if err != nil || !resp.Succeeded {
		m.revoke(ctx, grant.ID, subnet)
		if err != nil {
			return lease.Lease{}, false, fmt.Errorf("write lease: %w", err)
		}
		return lease.Lease{}, false, nil
	}
	exp := granted.Add(time.Duration(grant.TTL) * time.Second)
	return lease.Lease{Subnet: subnet, Attrs: attrs, Expiration: exp}, true, nil
}

// revoke drops an etcd lease no key needs any more; a failure only leaves it
// to expire on its own.
func (m *Manager) revoke(ctx context.Context, id clientv3.LeaseID, subnet netip.Prefix) {
	rctx, cancel := m.request(ctx)
	defer cancel()
	if _, err := m.cli.Revoke(rctx, id); err != nil {
		slog.Debug("revoke unused etcd lease", "subnet", subnet, "lease", fmt.Sprintf("%x", int64(id)), "err", err)
	}
}

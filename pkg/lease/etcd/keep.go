package etcd

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/pkg/backoff"
	"github.com/weftnet/weft/pkg/lease"
)

// Keep holds l until ctx ends. It renews the etcd lease RenewMargin before
// it expires, watches the key so that a deleted or expired lease (or one
// taken over by another node) is reacquired at once (same subnet first), and
// retries failures with backoff up to RetryInterval. It never gives up.
func (m *Manager) Keep(ctx context.Context, l lease.Lease, changed func(lease.Lease)) {
	k := &keeper{m: m, cur: l, changed: changed, retry: m.retryBackoff()}
	k.run(ctx)
}

// keeper is the state of one Keep call.
type keeper struct {
	m       *Manager
	cur     lease.Lease
	changed func(lease.Lease)
	retry   *backoff.Backoff

	// events watches watchedKey (cur's key); nil when no watch runs.
	events     clientv3.WatchChan
	stopWatch  context.CancelFunc
	watchedKey string
	// lastChecked is the etcd revision of the last successful check.
	lastChecked int64
}

func (k *keeper) run(ctx context.Context) {
	defer k.closeWatch()
	for {
		wait := k.check(ctx)
		k.ensureWatch(ctx)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case _, open := <-k.events:
			t.Stop()
			if !open {
				// Check and watch again after a pause, so that a watch
				// that keeps breaking cannot spin.
				k.closeWatch()
				if !backoff.Wait(ctx, k.m.cfg.MinBackoff, nil) {
					return
				}
			}
		}
	}
}

// check looks at the own key and renews or reacquires the lease as needed.
// It returns how long to wait before the next check.
func (k *keeper) check(ctx context.Context) time.Duration {
	if ctx.Err() != nil {
		return 0
	}
	log := k.log()
	key := k.m.subnetKey(k.cur)
	rctx, cancel := k.m.request(ctx)
	resp, err := k.m.cli.Get(rctx, key)
	cancel()
	if err != nil {
		d := k.retry.Next()
		log.Warn("cannot check lease in etcd, retrying", "err", err, "retry_in", d)
		return d
	}
	k.lastChecked = resp.Header.Revision
	if len(resp.Kvs) == 0 {
		log.Warn("lease vanished from etcd (expired or deleted), reacquiring")
		return k.reacquire(ctx)
	}
	kv := resp.Kvs[0]
	if a, err := parseAttrs(kv.Value, k.cur); err != nil || !samePublicIPs(a, k.cur.Attrs) {
		log.Warn("lease key now belongs to another node or is corrupt, reacquiring", "value", string(kv.Value))
		return k.reacquire(ctx)
	}
	if kv.Lease == 0 {
		// Permanent reservation: nothing to renew, the watch reports changes.
		k.cur.Expiration = time.Time{}
		k.retry.Reset()
		return k.m.cfg.TTL
	}
	renewAt := k.cur.Expiration.Add(-k.m.cfg.RenewMargin)
	if d := time.Until(renewAt); d > 0 {
		k.retry.Reset()
		return d
	}
	return k.renew(ctx, clientv3.LeaseID(kv.Lease))
}

// renew refreshes the etcd lease's TTL.
func (k *keeper) renew(ctx context.Context, id clientv3.LeaseID) time.Duration {
	log := k.log()
	rctx, cancel := k.m.request(ctx)
	resp, err := k.m.cli.KeepAliveOnce(rctx, id)
	cancel()
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		log.Warn("etcd lease expired before renewal, reacquiring")
		return k.reacquire(ctx)
	}
	if k.m.cfg.OnRenew != nil {
		k.m.cfg.OnRenew(err)
	}
	if err != nil {
		d := k.retry.Next()
		log.Warn("cannot renew lease, retrying", "err", err, "retry_in", d)
		return d
	}
	k.retry.Reset()
	k.cur.Expiration = time.Now().Add(time.Duration(resp.TTL) * time.Second)
	log.Info("renewed lease", "expires", k.cur.Expiration)
	k.changed(k.cur)
	return time.Until(k.cur.Expiration.Add(-k.m.cfg.RenewMargin))
}

// reacquire gets a lease again, the same subnet first if it is still free.
func (k *keeper) reacquire(ctx context.Context) time.Duration {
	l, err := k.m.Acquire(ctx, k.cur.Attrs, k.cur)
	if err != nil {
		d := k.retry.Next()
		k.log().Error("cannot reacquire lease, retrying", "err", err, "retry_in", d)
		return d
	}
	k.retry.Reset()
	if l.Subnet != k.cur.Subnet || l.IPv6Subnet != k.cur.IPv6Subnet {
		slog.Warn("lease moved to a new subnet", "subnet", l.String(), "previous", k.cur.String(), "node", nodeID(l.Attrs))
	}
	k.cur = l
	k.changed(l)
	// The next check restarts the watch on the (maybe new) key right away.
	return 0
}

// ensureWatch watches the current key from just after the last check, so
// that no change in between is missed.
func (k *keeper) ensureWatch(ctx context.Context) {
	key := k.m.subnetKey(k.cur)
	if k.events != nil && k.watchedKey == key {
		return
	}
	k.closeWatch()
	if k.lastChecked == 0 {
		return // no successful check yet: the timer retries
	}
	wctx, cancel := context.WithCancel(ctx)
	k.events = k.m.cli.Watch(wctx, key, clientv3.WithRev(k.lastChecked+1))
	k.stopWatch, k.watchedKey = cancel, key
}

// log is the logger of the held lease.
func (k *keeper) log() *slog.Logger {
	return slog.With("subnet", k.cur.String(), "node", nodeID(k.cur.Attrs))
}

// samePublicIPs reports whether a and b name the same public IPs.
func samePublicIPs(a, b lease.Attrs) bool {
	return a.PublicIP == b.PublicIP && (a.PublicIPv6 == nil) == (b.PublicIPv6 == nil) &&
		(a.PublicIPv6 == nil || *a.PublicIPv6 == *b.PublicIPv6)
}

func (k *keeper) closeWatch() {
	if k.stopWatch != nil {
		k.stopWatch()
	}
	k.events, k.stopWatch, k.watchedKey = nil, nil, ""
}

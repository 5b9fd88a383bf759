package etcd

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/pkg/lease"
)

// List reads every valid lease once, sorted by subnet, with its Expiration
// (zero for a permanent reservation, whose key has no etcd lease): for
// tools such as weftctl. Unparsable keys are logged and left out, as in
// Watch. It costs one request per lease for the TTLs.
func (m *Manager) List(ctx context.Context) ([]lease.Lease, error) {
	rctx, cancel := m.request(ctx)
	defer cancel()
	resp, err := m.cli.Get(rctx, m.subnetsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	out := make([]lease.Lease, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		l, err := m.parseLease(kv)
		if err != nil {
			slog.Warn("skipping lease that cannot be parsed", "key", string(kv.Key), "err", err)
			continue
		}
		if id := clientv3.LeaseID(kv.Lease); id != clientv3.NoLease {
			ttl, err := m.cli.TimeToLive(rctx, id)
			if err != nil {
				return nil, fmt.Errorf("read the etcd lease of %s: %w", l, err)
			}
			if ttl.TTL >= 0 {
				l.Expiration = time.Now().Add(time.Duration(ttl.TTL) * time.Second).Truncate(time.Second)
			}
		}
		out = append(out, l)
	}
	lease.Sort(out)
	return out, nil
}

package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"

	"github.com/weftnet/weft/pkg/backoff"
	"github.com/weftnet/weft/pkg/lease"
)

// Watch lists the leases, then watches <prefix>/subnets/ from the next
// revision and calls update with the complete set (sorted by subnet) after
// every change, an event burst batched into one call. When the watch breaks
// (compaction, etcd restart) it lists again and delivers the new set if it
// differs. While etcd is unreachable the last set stands and Watch retries
// with backoff. A connection that goes silent is dropped by keepalive (see
// keepAliveTime) and the watch resumes on a new one from the revision it had
// reached. Keys or values it cannot parse are logged and left out.
func (m *Manager) Watch(ctx context.Context, update func(lease.Update)) {
	go m.logConnection(ctx)
	w := &watcher{m: m, update: update}
	retry := m.retryBackoff()
	for ctx.Err() == nil {
		rev, err := w.list(ctx)
		if err != nil {
			d := retry.Next()
			slog.Warn("cannot list leases in etcd, keeping the last set", "err", err, "retry_in", d)
			backoff.Wait(ctx, d, nil)
			continue
		}
		if w.follow(ctx, rev) {
			retry.Reset()
			continue
		}
		// The watch broke before delivering anything: do not spin.
		backoff.Wait(ctx, retry.Next(), nil)
	}
}

// logConnection logs each loss of the connection to etcd and its return,
// until ctx ends.
func (m *Manager) logConnection(ctx context.Context) {
	cc := m.cli.ActiveConnection()
	state, lost := cc.GetState(), false
	for cc.WaitForStateChange(ctx, state) {
		was := state
		state = cc.GetState()
		switch {
		case was == connectivity.Ready && state != connectivity.Ready:
			lost = true
			slog.Warn("lost the connection to etcd (closed, or silent for "+(keepAliveTime+keepAliveTimeout).String()+"), reconnecting; the lease watch resumes where it stopped",
				"endpoints", m.cfg.Endpoints, "state", state.String())
		case lost && state == connectivity.Ready:
			lost = false
			slog.Info("connected to etcd again", "endpoints", m.cfg.Endpoints)
		}
	}
}

// errWatchClosed reports a watch channel closed by the client.
var errWatchClosed = errors.New("watch channel closed")

// watcher is the state of one Watch call.
type watcher struct {
	m      *Manager
	update func(lease.Update)
	// leases are the valid leases by etcd key; raw holds every parsed value
	// so that a rewrite with identical content is not a change.
	leases    map[string]lease.Lease
	raw       map[string]string
	delivered bool
}

// list replaces the set with a fresh listing, delivers it if it changed,
// and returns the listing's revision.
func (w *watcher) list(ctx context.Context) (int64, error) {
	rctx, cancel := w.m.request(ctx)
	defer cancel()
	resp, err := w.m.cli.Get(rctx, w.m.subnetsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("list leases: %w", err)
	}
	old := w.raw
	w.leases = make(map[string]lease.Lease, len(resp.Kvs))
	w.raw = make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		w.put(kv)
	}
	if !w.delivered || !maps.Equal(old, w.raw) {
		w.deliver()
	}
	return resp.Header.Revision, nil
}

// follow applies watch events from rev+1 until the watch breaks. It
// reports whether the watch worked for a while (delivered any response).
func (w *watcher) follow(ctx context.Context, rev int64) bool {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	events := w.m.cli.Watch(wctx, w.m.subnetsPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for progressed := false; ; progressed = true {
		changed, err := w.next(events)
		if changed {
			w.deliver()
		}
		if err != nil {
			if ctx.Err() == nil {
				slog.Warn("lease watch broke, listing again", "err", err)
			}
			return progressed
		}
	}
}

// next applies one watch response and whatever else is already queued (a
// burst becomes one delivery). It reports whether the set changed, and an
// error once the watch is broken.
func (w *watcher) next(events clientv3.WatchChan) (changed bool, err error) {
	resp, open := <-events
	for {
		if !open {
			return changed, errWatchClosed
		}
		if err := resp.Err(); err != nil {
			return changed, err
		}
		changed = w.apply(resp.Events) || changed
		select {
		case resp, open = <-events:
		default:
			return changed, nil
		}
	}
}

// apply updates the set from events and reports whether it changed.
func (w *watcher) apply(events []*clientv3.Event) bool {
	changed := false
	for _, ev := range events {
		key := string(ev.Kv.Key)
		old, had := w.raw[key]
		switch ev.Type {
		case mvccpb.DELETE:
			delete(w.leases, key)
			delete(w.raw, key)
			changed = changed || had
		case mvccpb.PUT:
			delete(w.leases, key)
			delete(w.raw, key)
			w.put(ev.Kv)
			now, has := w.raw[key]
			changed = changed || had != has || old != now
		}
	}
	return changed
}

// put adds kv to the set if it parses; otherwise it logs and skips it.
func (w *watcher) put(kv *mvccpb.KeyValue) {
	l, err := w.m.parseLease(kv)
	if err != nil {
		slog.Warn("skipping lease that cannot be parsed", "key", string(kv.Key), "err", err)
		return
	}
	w.leases[string(kv.Key)] = l
	w.raw[string(kv.Key)] = string(kv.Value)
}

func (w *watcher) deliver() {
	u := lease.Update{Full: true, Changes: make([]lease.Change, 0, len(w.leases))}
	for k, l := range w.leases {
		u.Changes = append(u.Changes, lease.Change{Key: k, Lease: l})
	}
	w.delivered = true
	slog.Debug("lease set changed", "leases", len(u.Changes))
	w.update(u)
}

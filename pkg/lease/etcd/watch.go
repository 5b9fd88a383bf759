package etcd

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"

	"github.com/weftnet/weft/pkg/backoff"
	"github.com/weftnet/weft/pkg/lease"
)

// Watch lists the leases, delivers them all (Update.Full, keyed by etcd
// key), then watches <prefix>/subnets/ from the next revision and delivers
// only the keys that changed, an event burst batched into one Update. A
// rewrite with the same value (a renewal) is no change; a delivered lease
// whose new value cannot be parsed is logged and removed. When the watch
// breaks (compaction, etcd restart) it lists again and delivers what differs
// from what it delivered before, if anything. While etcd is unreachable the
// last set stands and Watch retries with backoff. A connection that goes
// silent is dropped by keepalive (see keepAliveTime) and the watch resumes
// on a new one from the revision it had reached. Keys or values it cannot
// parse are logged and left out. An event costs the same however many
// leases there are.
func (m *Manager) Watch(ctx context.Context, update func(lease.Update)) {
	go m.logConnection(ctx)
	w := newWatcher(m, update)
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
	// sent holds, for each key whose lease was delivered and not removed
	// since, a hash of the value delivered: enough to tell a rewrite with
	// the same value from a change, and to find the keys a re-list no
	// longer shows, without keeping values or leases (the receiver has
	// those). The hash is seeded at random: a changed value passes for the
	// old one with a chance of 2^-64.
	sent      map[string]uint64
	seed      maphash.Seed
	delivered bool
}

func newWatcher(m *Manager, update func(lease.Update)) *watcher {
	return &watcher{m: m, update: update, sent: map[string]uint64{}, seed: maphash.MakeSeed()}
}

// batch collects the changes of one delivery, the last one of each key.
type batch struct {
	changes []lease.Change
	index   map[string]int // key -> position in changes
}

func (b *batch) add(c lease.Change) {
	if i, ok := b.index[c.Key]; ok {
		b.changes[i] = c
		return
	}
	if b.index == nil {
		b.index = map[string]int{}
	}
	b.index[c.Key] = len(b.changes)
	b.changes = append(b.changes, c)
}

// list reads every lease, delivers how the listing differs from what was
// delivered before (everything, the first time), and returns the listing's
// revision.
func (w *watcher) list(ctx context.Context) (int64, error) {
	rctx, cancel := w.m.request(ctx)
	defer cancel()
	resp, err := w.m.cli.Get(rctx, w.m.subnetsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("list leases: %w", err)
	}
	var b batch
	listed := make(map[string]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		listed[w.put(&b, kv)] = true
	}
	for key := range w.sent {
		if !listed[key] {
			w.remove(&b, key)
		}
	}
	w.deliver(b)
	return resp.Header.Revision, nil
}

// follow applies watch events from rev+1 until the watch breaks. It
// reports whether the watch worked for a while (delivered any response).
func (w *watcher) follow(ctx context.Context, rev int64) bool {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	events := w.m.cli.Watch(wctx, w.m.subnetsPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for progressed := false; ; progressed = true {
		b, err := w.next(events)
		w.deliver(b)
		if err != nil {
			if ctx.Err() == nil {
				slog.Warn("lease watch broke, listing again", "err", err)
			}
			return progressed
		}
	}
}

// next applies one watch response and whatever else is already queued (a
// burst becomes one delivery). It returns the changes, and an error once
// the watch is broken.
func (w *watcher) next(events clientv3.WatchChan) (b batch, err error) {
	resp, open := <-events
	for {
		if !open {
			return b, errWatchClosed
		}
		if err := resp.Err(); err != nil {
			return b, err
		}
		w.apply(&b, resp.Events)
		select {
		case resp, open = <-events:
		default:
			return b, nil
		}
	}
}

// apply adds the changes events make to b.
func (w *watcher) apply(b *batch, events []*clientv3.Event) {
	for _, ev := range events {
		switch ev.Type {
		case mvccpb.DELETE:
			w.remove(b, string(ev.Kv.Key))
		case mvccpb.PUT:
			w.put(b, ev.Kv)
		}
	}
}

// put adds kv's lease to b unless it was delivered with this value already.
// A value that cannot be parsed is logged, and removes the key's lease if
// one was delivered. It returns kv's key.
func (w *watcher) put(b *batch, kv *mvccpb.KeyValue) string {
	key := string(kv.Key)
	h := maphash.Bytes(w.seed, kv.Value)
	if old, ok := w.sent[key]; ok && old == h {
		return key
	}
	l, err := w.m.parseLease(kv)
	switch _, sent := w.sent[key]; {
	case err != nil && sent:
		slog.Warn("removing lease whose new value cannot be parsed", "key", key, "err", err)
		w.remove(b, key)
	case err != nil:
		slog.Warn("skipping lease that cannot be parsed", "key", key, "err", err)
	default:
		w.sent[key] = h
		b.add(lease.Change{Key: key, Lease: l})
	}
	return key
}

// remove adds the removal of key's lease to b if one was delivered.
func (w *watcher) remove(b *batch, key string) {
	if _, ok := w.sent[key]; ok {
		delete(w.sent, key)
		b.add(lease.Change{Key: key, Removed: true})
	}
}

// deliver hands b to update: always the first time (as the full set), later
// only if it holds changes.
func (w *watcher) deliver(b batch) {
	full := !w.delivered
	if !full && len(b.changes) == 0 {
		return
	}
	w.delivered = true
	slog.Debug("lease changes", "full", full, "changes", len(b.changes), "leases", len(w.sent))
	w.update(lease.Update{Full: full, Changes: b.changes})
}

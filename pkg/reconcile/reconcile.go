// Package reconcile keeps the datapath equal to the desired set of peers. It
// is level-triggered: it stores the whole desired set, re-applies it on a
// timer (repairing drift such as a route deleted by hand) and after a
// failure, and collects the changes that arrive between passes. A pass
// caused by changes hands the datapath only those (Apply) when it can take
// them; the first pass, the timer's and the one after a failure run the
// full Sync.
package reconcile

import (
	"cmp"
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/weftnet/weft/pkg/datapath"
)

// Reconciler applies the desired peer set to a datapath.
type Reconciler struct {
	dp       datapath.Datapath
	interval time.Duration
	kick     chan struct{}

	mu    sync.Mutex
	peers map[datapath.PeerKey]datapath.Peer
	// pending are the changes since the last pass: the new peer, or
	// removed.
	pending map[datapath.PeerKey]pendingPeer
	have    bool // a desired set arrived: until then Sync would wipe state
	// synced is false until a pass succeeds and after one fails: the next
	// pass must be a full Sync.
	synced   bool
	lastOK   time.Time
	lastErr  error
	observer func(Result)
}

type pendingPeer struct {
	peer    datapath.Peer
	removed bool
}

// Result describes one reconcile pass.
type Result struct {
	Peers int
	// Changes is the number of peers added, changed or removed that the
	// pass applied (0 for a full pass).
	Changes  int
	Duration time.Duration
	// Full is true for the periodic resync (Sync), false for a pass caused
	// by a change (Apply where the datapath has it).
	Full bool
	Err  error
}

// New returns a reconciler that syncs dp every interval and on each change.
func New(dp datapath.Datapath, interval time.Duration) *Reconciler {
	return &Reconciler{
		dp: dp, interval: interval, kick: make(chan struct{}, 1),
		peers: map[datapath.PeerKey]datapath.Peer{}, pending: map[datapath.PeerKey]pendingPeer{},
	}
}

// Observe registers f to be called after every pass (for metrics).
func (r *Reconciler) Observe(f func(Result)) {
	r.mu.Lock()
	r.observer = f
	r.mu.Unlock()
}

// SetPeers replaces the desired peer set and asks for a pass soon. What
// differs from the set before is the next pass's change. Of a key given
// twice, the first counts.
func (r *Reconciler) SetPeers(peers []datapath.Peer) {
	next := make(map[datapath.PeerKey]datapath.Peer, len(peers))
	for _, p := range peers {
		if _, dup := next[p.Key()]; !dup {
			next[p.Key()] = p
		}
	}
	r.mu.Lock()
	for k, p := range next {
		if old, ok := r.peers[k]; !ok || !datapath.SamePeer(old, p) {
			r.pending[k] = pendingPeer{peer: p}
		}
	}
	for k := range r.peers {
		if _, ok := next[k]; !ok {
			r.pending[k] = pendingPeer{removed: true}
		}
	}
	r.peers = next
	r.have = true
	r.mu.Unlock()
	r.Trigger()
}

// Update changes the desired peer set by ch and asks for a pass soon. It
// costs what ch holds, not what the set holds. Before the first SetPeers
// it only records the change.
func (r *Reconciler) Update(ch datapath.Changes) {
	if ch.Empty() {
		return
	}
	r.mu.Lock()
	for _, k := range ch.Removed {
		if _, ok := r.peers[k]; ok {
			delete(r.peers, k)
			r.pending[k] = pendingPeer{removed: true}
		}
	}
	for _, p := range ch.Set {
		r.peers[p.Key()] = p
		r.pending[p.Key()] = pendingPeer{peer: p}
	}
	r.mu.Unlock()
	r.Trigger()
}

// Trigger asks for a pass soon without changing the desired set.
func (r *Reconciler) Trigger() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// LastSuccess returns when the last pass without error ended, and the last
// pass's error.
func (r *Reconciler) LastSuccess() (time.Time, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastOK, r.lastErr
}

// Run reconciles until ctx ends. A failed pass is retried after a short,
// growing delay, capped at the resync interval.
func (r *Reconciler) Run(ctx context.Context) {
	timer := time.NewTimer(r.interval)
	defer timer.Stop()
	retry := time.Duration(0)
	for {
		full := false
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-timer.C:
			full = true
		}
		err := r.pass(ctx, full)
		next := r.interval
		if err != nil && ctx.Err() == nil {
			retry = min(max(2*retry, 200*time.Millisecond), r.interval)
			next = retry
		} else {
			retry = 0
		}
		timer.Reset(next)
	}
}

func (r *Reconciler) pass(ctx context.Context, full bool) error {
	start := time.Now()
	a, canApply := r.dp.(datapath.Applier)
	r.mu.Lock()
	have, observer := r.have, r.observer
	full = full || !r.synced || !canApply
	var (
		peers   []datapath.Peer
		changes datapath.Changes
	)
	if have && full {
		peers = r.sorted()
	} else if have {
		changes = r.takePending()
	}
	if have {
		clear(r.pending)
	}
	n := len(r.peers)
	r.mu.Unlock()

	var err error
	switch {
	case have && full:
		err = r.dp.Sync(ctx, peers)
	case have && !changes.Empty():
		err = a.Apply(ctx, changes)
	}
	if err != nil {
		slog.Warn("datapath sync failed, will retry", "datapath", r.dp.Name(), "peers", n, "err", err)
	}
	res := Result{Peers: n, Changes: len(changes.Set) + len(changes.Removed), Duration: time.Since(start), Full: full, Err: err}
	r.mu.Lock()
	r.lastErr = err
	if have {
		r.synced = err == nil
	}
	if err == nil && have {
		r.lastOK = time.Now()
	}
	r.mu.Unlock()
	if observer != nil {
		observer(res)
	}
	return err
}

// sorted returns the desired set in subnet order. Caller holds r.mu.
func (r *Reconciler) sorted() []datapath.Peer {
	return slices.SortedFunc(maps.Values(r.peers), func(a, b datapath.Peer) int {
		return cmp.Or(a.Subnet.Compare(b.Subnet), a.NodeIP.Compare(b.NodeIP))
	})
}

// takePending returns the pending changes. Caller holds r.mu.
func (r *Reconciler) takePending() datapath.Changes {
	var ch datapath.Changes
	for k, p := range r.pending {
		if p.removed {
			ch.Removed = append(ch.Removed, k)
		} else {
			ch.Set = append(ch.Set, p.peer)
		}
	}
	return ch
}

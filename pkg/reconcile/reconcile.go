// Package reconcile keeps the datapath equal to the desired set of peers. It
// is level-triggered: it re-applies the whole desired set on a timer
// (repairing drift such as a route deleted by hand) and after a failure,
// and collects the keys that changed between passes. A pass caused by
// changes hands the datapath only those peers (Apply) when it can take
// them; the first pass, the timer's and the one after a failure run the
// full Sync.
package reconcile

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/weftnet/weft/pkg/datapath"
)

// Desired is the peer set a Reconciler makes the datapath equal to. Its
// owner tells the Reconciler which keys changed (Changed); the Reconciler
// reads the set from any goroutine, so it must be safe for that.
type Desired interface {
	// Peers returns the whole set.
	Peers() []datapath.Peer
	// Peer returns the peer with key k, if the set has one.
	Peer(k datapath.PeerKey) (datapath.Peer, bool)
	// Len returns the number of peers.
	Len() int
}

// Reconciler applies the desired peer set to a datapath.
type Reconciler struct {
	dp       datapath.Datapath
	desired  Desired
	interval time.Duration
	kick     chan struct{}

	mu sync.Mutex
	// pending are the keys changed since the last pass.
	pending map[datapath.PeerKey]struct{}
	have    bool // the desired set is known: until then Sync would wipe state
	// synced is false until a pass succeeds and after one fails: the next
	// pass must be a full Sync.
	synced   bool
	lastOK   time.Time
	lastErr  error
	observer func(Result)
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

// New returns a reconciler that makes dp equal to desired every interval
// and on each change.
func New(dp datapath.Datapath, desired Desired, interval time.Duration) *Reconciler {
	return &Reconciler{
		dp: dp, desired: desired, interval: interval, kick: make(chan struct{}, 1),
		pending: map[datapath.PeerKey]struct{}{},
	}
}

// Observe registers f to be called after every pass (for metrics).
func (r *Reconciler) Observe(f func(Result)) {
	r.mu.Lock()
	r.observer = f
	r.mu.Unlock()
}

// Changed records that the peers with keys were added, changed or removed
// in the desired set, and asks for a pass soon. The first call also says
// that the desired set is complete: no pass touches the datapath before it.
func (r *Reconciler) Changed(keys ...datapath.PeerKey) {
	r.mu.Lock()
	for _, k := range keys {
		r.pending[k] = struct{}{}
	}
	r.have = true
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
	pending := r.pending
	if have {
		// Keys that change from now on belong to the next pass.
		r.pending = map[datapath.PeerKey]struct{}{}
	}
	r.mu.Unlock()

	var (
		err     error
		changes datapath.Changes
		n       int
	)
	switch {
	case have && full:
		peers := r.desired.Peers()
		n = len(peers)
		err = r.dp.Sync(ctx, peers)
	case have:
		changes = r.changes(pending)
		n = r.desired.Len()
		if !changes.Empty() {
			err = a.Apply(ctx, changes)
		}
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

// changes reads the peers of the changed keys from the desired set: the
// peer, or its removal.
func (r *Reconciler) changes(keys map[datapath.PeerKey]struct{}) datapath.Changes {
	var ch datapath.Changes
	for k := range keys {
		if p, ok := r.desired.Peer(k); ok {
			ch.Set = append(ch.Set, p)
		} else {
			ch.Removed = append(ch.Removed, k)
		}
	}
	return ch
}

// Package reconcile keeps the datapath equal to the desired set of peers. It
// is level-triggered: it stores the whole desired set, re-applies it on a
// timer (repairing drift such as a route deleted by hand) and after every
// change, and it never acts on a single event. A pass caused by a change
// uses the datapath's Apply when it has one (the change against what was
// applied last); the timer's pass always runs the full Sync.
package reconcile

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/weftnet/weft/pkg/datapath"
)

// Reconciler applies the desired peer set to a datapath.
type Reconciler struct {
	dp       datapath.Datapath
	interval time.Duration
	kick     chan struct{}

	mu       sync.Mutex
	peers    []datapath.Peer
	have     bool // a desired set arrived: until then Sync would wipe state
	lastOK   time.Time
	lastErr  error
	observer func(Result)
}

// Result describes one reconcile pass.
type Result struct {
	Peers    int
	Duration time.Duration
	// Full is true for the periodic resync (Sync), false for a pass caused
	// by a change (Apply where the datapath has it).
	Full bool
	Err  error
}

// New returns a reconciler that syncs dp every interval and on each change.
func New(dp datapath.Datapath, interval time.Duration) *Reconciler {
	return &Reconciler{dp: dp, interval: interval, kick: make(chan struct{}, 1)}
}

// Observe registers f to be called after every pass (for metrics).
func (r *Reconciler) Observe(f func(Result)) {
	r.mu.Lock()
	r.observer = f
	r.mu.Unlock()
}

// SetPeers replaces the desired peer set and asks for a pass soon.
func (r *Reconciler) SetPeers(peers []datapath.Peer) {
	r.mu.Lock()
	r.peers = peers
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
	r.mu.Lock()
	peers, have, observer := r.peers, r.have, r.observer
	r.mu.Unlock()

	var err error
	if have {
		if a, ok := r.dp.(datapath.Applier); ok && !full {
			err = a.Apply(ctx, peers)
		} else {
			err = r.dp.Sync(ctx, peers)
		}
		if err != nil {
			slog.Warn("datapath sync failed, will retry", "datapath", r.dp.Name(), "peers", len(peers), "err", err)
		}
	}
	res := Result{Peers: len(peers), Duration: time.Since(start), Full: full, Err: err}
	r.mu.Lock()
	r.lastErr = err
	if err == nil && have {
		r.lastOK = time.Now()
	}
	r.mu.Unlock()
	if observer != nil {
		observer(res)
	}
	return err
}

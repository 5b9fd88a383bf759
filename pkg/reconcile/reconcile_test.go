package reconcile

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/datapath"
)

// fakeDP records Sync calls; it fails the first failures calls.
type fakeDP struct {
	mu       sync.Mutex
	syncs    [][]datapath.Peer
	failures int
}

func (f *fakeDP) Name() string { return "fake" }
func (f *fakeDP) Setup(context.Context, datapath.Node) (datapath.Info, error) {
	return datapath.Info{}, nil
}
func (f *fakeDP) SetSubnet(context.Context, netip.Prefix) error { return nil }
func (f *fakeDP) Stats() ([]datapath.Counter, error)            { return nil, nil }
func (f *fakeDP) Close() error                                  { return nil }
func (f *fakeDP) Cleanup(context.Context) error                 { return nil }
func (f *fakeDP) Sync(_ context.Context, p []datapath.Peer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncs = append(f.syncs, p)
	if f.failures > 0 {
		f.failures--
		return errors.New("injected")
	}
	return nil
}

func (f *fakeDP) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.syncs)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func peer(s string) datapath.Peer { return datapath.Peer{Subnet: netip.MustParsePrefix(s)} }

// desiredSet is a Desired held in a map.
type desiredSet struct {
	mu    sync.Mutex
	peers map[datapath.PeerKey]datapath.Peer
}

// set replaces the set with peers and returns the keys that changed.
func (d *desiredSet) set(peers ...datapath.Peer) []datapath.PeerKey {
	d.mu.Lock()
	defer d.mu.Unlock()
	next := map[datapath.PeerKey]datapath.Peer{}
	var changed []datapath.PeerKey
	for _, p := range peers {
		next[p.Key()] = p
		if old, ok := d.peers[p.Key()]; !ok || !datapath.SamePeer(old, p) {
			changed = append(changed, p.Key())
		}
	}
	for k := range d.peers {
		if _, ok := next[k]; !ok {
			changed = append(changed, k)
		}
	}
	d.peers = next
	return changed
}

func (d *desiredSet) Peers() []datapath.Peer {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.SortedFunc(maps.Values(d.peers), func(a, b datapath.Peer) int { return a.Subnet.Compare(b.Subnet) })
}

func (d *desiredSet) Peer(k datapath.PeerKey) (datapath.Peer, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.peers[k]
	return p, ok
}

func (d *desiredSet) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.peers)
}

func TestNoSyncBeforeDesiredSet(t *testing.T) {
	dp := &fakeDP{}
	r := New(dp, &desiredSet{}, 10*time.Millisecond)
	results := observeAndRun(t, r)
	// Passes run on the timer, but without a desired set Sync must not run:
	// an empty Sync would wipe the state a previous weftd left.
	for range 3 {
		if res := <-results; !res.Full || res.Err != nil {
			t.Fatalf("pass %+v, want a timer pass without error", res)
		}
	}
	if n := dp.count(); n != 0 {
		t.Fatalf("Sync ran %d times before any desired set", n)
	}
	if ok, _ := r.LastSuccess(); !ok.IsZero() {
		t.Fatal("LastSuccess set without a sync")
	}
}

// observeAndRun runs r until t ends and returns its pass results.
func observeAndRun(t *testing.T, r *Reconciler) <-chan Result {
	results := make(chan Result, 100)
	r.Observe(func(res Result) { results <- res })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go r.Run(ctx)
	return results
}

func TestSyncOnChangeAndResync(t *testing.T) {
	dp := &fakeDP{}
	ds := &desiredSet{}
	r := New(dp, ds, 50*time.Millisecond)
	results := observeAndRun(t, r)

	r.Changed(ds.set(peer("10.244.2.0/24"))...)
	res := <-results
	if res.Peers != 1 || res.Err != nil {
		t.Fatalf("first pass %+v", res)
	}
	// Periodic resync re-applies the same set without any event.
	waitFor(t, "a resync", func() bool { return dp.count() >= 3 })
	dp.mu.Lock()
	last := dp.syncs[len(dp.syncs)-1]
	dp.mu.Unlock()
	if len(last) != 1 || last[0].Subnet.String() != "10.244.2.0/24" {
		t.Fatalf("resync applied %+v", last)
	}
	if ok, err := r.LastSuccess(); ok.IsZero() || err != nil {
		t.Fatalf("LastSuccess = %v, %v", ok, err)
	}
}

func TestFailedPassRetriedBeforeInterval(t *testing.T) {
	dp := &fakeDP{failures: 2}
	r := New(dp, &desiredSet{}, time.Hour) // only retries can cause a second pass
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	r.Changed()
	waitFor(t, "two retries after failures", func() bool { return dp.count() >= 3 })
	waitFor(t, "success recorded", func() bool {
		ok, err := r.LastSuccess()
		return !ok.IsZero() && err == nil
	})
}

// applyDP is a fakeDP that can also Apply; it records the changes.
type applyDP struct {
	fakeDP
	applies     []datapath.Changes
	applyFailed bool // fail the next Apply
}

func (a *applyDP) Apply(_ context.Context, ch datapath.Changes) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.applies = append(a.applies, ch)
	if a.applyFailed {
		a.applyFailed = false
		return errors.New("injected")
	}
	return nil
}

func TestChangesApplyTimerSyncs(t *testing.T) {
	dp := &applyDP{}
	ds := &desiredSet{}
	r := New(dp, ds, 100*time.Millisecond)
	results := observeAndRun(t, r)
	r.Changed(ds.set(peer("10.244.2.0/24"), peer("10.244.3.0/24"))...)
	if res := <-results; !res.Full || res.Err != nil {
		t.Fatalf("first pass %+v: the first pass must be a full Sync", res)
	}
	// A change after a successful pass reaches the datapath as a change.
	r.Changed(ds.set(peer("10.244.3.0/24"), peer("10.244.4.0/24"))...)
	if res := <-results; res.Full || res.Changes != 2 || res.Peers != 2 {
		t.Fatalf("pass after a change %+v, want an Apply of 2 changes to 2 peers", res)
	}
	// The next pass without a change is the timer's: a full Sync of the
	// whole desired set.
	if res := <-results; !res.Full {
		t.Fatal("the periodic pass must be full")
	}
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if len(dp.applies) != 1 || len(dp.syncs) != 2 {
		t.Fatalf("applies %d syncs %d, want 1 and 2", len(dp.applies), len(dp.syncs))
	}
	ch := dp.applies[0]
	if len(ch.Set) != 1 || ch.Set[0].Subnet.String() != "10.244.4.0/24" || len(ch.Removed) != 1 || ch.Removed[0].Subnet.String() != "10.244.2.0/24" {
		t.Fatalf("Apply got %+v", ch)
	}
	if last := dp.syncs[1]; len(last) != 2 || last[0].Subnet.String() != "10.244.3.0/24" || last[1].Subnet.String() != "10.244.4.0/24" {
		t.Fatalf("resync applied %+v, want 10.244.3.0/24 and 10.244.4.0/24", last)
	}
}

// TestFailedApplyFollowedBySync: after a failed pass the next one is a full
// Sync, so the changes the failed pass consumed are not lost.
func TestFailedApplyFollowedBySync(t *testing.T) {
	dp := &applyDP{}
	ds := &desiredSet{}
	r := New(dp, ds, time.Hour)
	results := observeAndRun(t, r)
	r.Changed(ds.set(peer("10.244.2.0/24"))...)
	if res := <-results; !res.Full || res.Err != nil {
		t.Fatalf("first pass %+v", res)
	}
	dp.mu.Lock()
	dp.applyFailed = true
	dp.mu.Unlock()
	r.Changed(ds.set(peer("10.244.2.0/24"), peer("10.244.3.0/24"))...)
	if res := <-results; res.Full || res.Changes != 1 || res.Err == nil {
		t.Fatalf("pass %+v, want a failed Apply of 1 change", res)
	}
	// The retry needs no new change: it is a full Sync of the whole set.
	if res := <-results; !res.Full || res.Err != nil || res.Peers != 2 {
		t.Fatalf("retry %+v, want a successful full Sync of 2 peers", res)
	}
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if last := dp.syncs[len(dp.syncs)-1]; len(last) != 2 {
		t.Fatalf("retry synced %+v, want both peers", last)
	}
}

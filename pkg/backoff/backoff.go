// Package backoff paces retries: delays that double up to a cap, waits that
// end with a context, a log throttle so that a failure that persists is one
// line a minute, and Retry, which combines the three.
package backoff

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Defaults of Backoff's zero fields and of Throttle's.
const (
	DefaultMin   = time.Second
	DefaultMax   = 30 * time.Second
	DefaultEvery = time.Minute
)

// Backoff yields retry delays that double from Min up to Max. The zero value
// uses DefaultMin and DefaultMax.
type Backoff struct {
	// Min is the first delay; Max caps the delays.
	Min, Max time.Duration
	cur      time.Duration
}

// Next returns the delay before the next retry.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = DefaultMin
	}
	if hi <= 0 {
		hi = DefaultMax
	}
	b.cur = min(max(2*b.cur, lo), hi)
	return b.cur
}

// Reset starts the delays again from Min, after a success.
func (b *Backoff) Reset() { b.cur = 0 }

// Wait waits d, or less if wake receives, or until ctx ends. It reports
// whether ctx is still live. wake may be nil.
func Wait(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-wake:
	case <-t.C:
	}
	return ctx.Err() == nil
}

// Throttle lets a message through when it differs from the previous one or
// Every (zero: DefaultEvery) has passed since that one went through. It is
// safe for concurrent use.
type Throttle struct {
	Every time.Duration
	mu    sync.Mutex
	last  string
	at    time.Time
}

// Allow reports whether msg, at time now, should be logged.
func (t *Throttle) Allow(msg string, now time.Time) bool {
	every := t.Every
	if every <= 0 {
		every = DefaultEvery
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if msg == t.last && now.Sub(t.at) < every {
		return false
	}
	t.last, t.at = msg, now
	return true
}

// Options say how Retry paces and reports its attempts.
type Options struct {
	// What names the operation in the default report ("acquire lease").
	What string
	// Backoff paces the attempts (zero value: 1 s, 2 s, ... 30 s).
	Backoff Backoff
	// Wake, if not nil, starts the next attempt at once when it receives.
	Wake <-chan struct{}
	// Report is told of a failure and the wait before the next attempt, for
	// each failure whose message differs from the previous one and for a
	// repeated one once a minute. nil: an Error line "<What> failed,
	// retrying" in slog's default logger.
	Report func(err error, wait time.Duration)
}

// Retry runs f until it returns nil or ctx ends. On ctx's end it returns
// ctx's error, naming the last failure.
func Retry(ctx context.Context, o Options, f func() error) error {
	report := o.Report
	if report == nil {
		report = func(err error, wait time.Duration) {
			slog.Error(o.What+" failed, retrying", "err", err, "retry_in", wait)
		}
	}
	var logged Throttle
	for {
		err := f()
		if err == nil {
			return nil
		}
		wait := o.Backoff.Next()
		if logged.Allow(err.Error(), time.Now()) {
			report(err, wait)
		}
		if !Wait(ctx, wait, o.Wake) {
			return fmt.Errorf("%w (last problem: %v)", ctx.Err(), err)
		}
	}
}

package kube

import (
	"sync"
	"time"
)

// logEvery is how often a problem that persists is logged again.
const logEvery = time.Minute

// throttle lets a message through when it differs from the previous one or
// logEvery has passed, so a persistent problem is one line a minute.
type throttle struct {
	mu   sync.Mutex
	last string
	at   time.Time
}

func (t *throttle) allow(msg string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if msg == t.last && now.Sub(t.at) < logEvery {
		return false
	}
	t.last, t.at = msg, now
	return true
}

// backoff yields retry delays that double from minDelay up to maxDelay.
type backoff struct{ d time.Duration }

const (
	minDelay = time.Second
	maxDelay = 30 * time.Second
)

func (b *backoff) next() time.Duration {
	b.d = min(max(2*b.d, minDelay), maxDelay)
	return b.d
}

func (b *backoff) reset() { b.d = 0 }

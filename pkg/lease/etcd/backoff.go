package etcd

import (
	"context"
	"time"
)

// backoff doubles a retry delay from min up to max.
type backoff struct {
	min, max, cur time.Duration
}

func (m *Manager) newBackoff() *backoff {
	return &backoff{min: m.cfg.MinBackoff, max: m.cfg.RetryInterval}
}

// next returns the delay before the next retry.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

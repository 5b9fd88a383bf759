package daemon

import (
	"context"
	"log/slog"
	"time"
)

// Retry runs f until it succeeds or ctx ends, waiting 1 s, 2 s, ... up to
// 30 s between attempts. It logs each failure whose message differs from the
// previous one, and a repeated one at most once a minute, so an outage is
// visible without flooding the log.
func Retry(ctx context.Context, what string, f func() error) error {
	wait := time.Second
	var lastMsg string
	var lastLog time.Time
	for {
		err := f()
		if err == nil {
			return nil
		}
		if msg := err.Error(); msg != lastMsg || time.Since(lastLog) > time.Minute {
			slog.Error(what+" failed, retrying", "err", err, "retry_in", wait)
			lastMsg, lastLog = msg, time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

package cluster

import (
	"context"
	"fmt"
	"time"
)

// pollInterval is how often Eventually re-checks a condition.
const pollInterval = 100 * time.Millisecond

// Eventually calls cond until it returns nil, the timeout passes or ctx ends;
// then it returns cond's last error, naming what was awaited.
func Eventually(ctx context.Context, timeout time.Duration, what string, cond func() error) error {
	return EventuallyEvery(ctx, timeout, pollInterval, what, cond)
}

// EventuallyEvery is Eventually re-checking every interval (for conditions
// that cost more than a local read, e.g. API server lists).
func EventuallyEvery(ctx context.Context, timeout, interval time.Duration, what string, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not reached within %v: %w", what, timeout, err)
		case <-tick.C:
		}
	}
}

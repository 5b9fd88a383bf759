package cluster

import (
	"errors"
	"sync"
)

// ErrClosed is returned by Undo.Add once the harness is closed.
var ErrClosed = errors.New("cluster is closed")

// Undo is a harness's teardown: the undo step of everything it created, run
// in reverse order by Close. The zero value is ready to use.
type Undo struct {
	mu     sync.Mutex
	closed bool
	steps  []func() error
}

// Add runs create and remembers undo for Close, also when create fails
// part way (every undo tolerates what its create left). It fails without
// running create once Close has begun, so a Close from a signal handler
// cannot race with a resource being created.
func (u *Undo) Add(create, undo func() error) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return ErrClosed
	}
	err := create()
	u.steps = append(u.steps, undo)
	return err
}

// Close runs every undo step, last added first, and joins their errors. It
// is safe to call more than once: later calls do nothing.
func (u *Undo) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil
	}
	u.closed = true
	var errs []error
	for i := len(u.steps) - 1; i >= 0; i-- {
		if err := u.steps[i](); err != nil {
			errs = append(errs, err)
		}
	}
	u.steps = nil
	return errors.Join(errs...)
}

package ebpf

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// inNS runs f on an OS thread inside d.ns: interface lookups, tcx attach
// (ifindexes are per namespace), netlink and the kernel slow path all act in
// the namespace of the calling thread.
func (d *Datapath) inNS(f func() error) error {
	if !d.ns.IsOpen() {
		return errors.New("ebpf datapath is closed")
	}
	runtime.LockOSThread()
	cur, err := netns.Get()
	if err == nil {
		same := cur.Equal(d.ns)
		cur.Close()
		if same {
			defer runtime.UnlockOSThread()
			return f()
		}
	}
	runtime.UnlockOSThread()

	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it changed namespace, so the runtime
		// discards it when this goroutine ends.
		runtime.LockOSThread()
		if err := netns.Set(d.ns); err != nil {
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

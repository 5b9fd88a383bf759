package ebpf

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/vishvananda/netlink"
)

// watch starts (once) a goroutine that re-attaches and syncs the endpoint
// maps as soon as an interface (the bridge, the uplink, a pod's veth, any
// other entrance) appears, changes or goes, instead of waiting for the
// next Sync.
func (d *Datapath) watch() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopWatch != nil {
		return nil
	}
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	ns := d.ns
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		Namespace: &ns,
		ErrorCallback: func(err error) {
			select {
			case <-done:
				return // closing the subscription fails its receive
			default:
			}
			slog.Warn("link watch failed; Sync keeps attaching", "err", err)
		},
	})
	if err != nil {
		return fmt.Errorf("watch links: %w", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for u := range updates {
			d.relink(u.Attrs().Name)
		}
	}()
	d.stopWatch = func() {
		close(done)
		wg.Wait()
	}
	return nil
}

// relink refreshes the node config, endpoint maps and attachments after a
// link event.
func (d *Datapath) relink(name string) {
	err := d.inNS(func() error {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.objs == nil {
			return nil
		}
		if err := d.refreshLinks(); err != nil {
			return err
		}
		return errors.Join(d.syncEndpoints(), d.swapIn(false))
	})
	if err != nil {
		slog.Warn("re-attach after link change failed; the next Sync retries", "link", name, "err", err)
	}
}

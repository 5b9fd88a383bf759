package ebpf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
)

// Cleanup detaches the programs (pinned tcx links and weft's tc filters on
// every interface of the namespace), removes the pins and, after a Setup,
// the kernel slow path's state. It works without Setup, for `weftd --cleanup`.
func (d *Datapath) Cleanup(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.inNS(func() error {
		d.mu.Lock()
		setUp := d.objs != nil
		d.last = nil
		d.mu.Unlock()
		var errs []error
		if setUp {
			if err := d.slow.Cleanup(ctx); err != nil {
				errs = append(errs, fmt.Errorf("kernel slow path: %w", err))
			}
		}
		errs = append(errs, d.detachEverything(), d.removePins())
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("cleanup: %w", err)
		}
		slog.Info("ebpf datapath removed", "bpf_dir", d.opts.BPFDir)
		return nil
	})
}

// detachEverything unpins (detaching) all pinned links and deletes weft's tc
// filters in the namespace.
func (d *Datapath) detachEverything() error {
	var errs []error
	pins, err := filepath.Glob(filepath.Join(d.opts.BPFDir, linkPinPrefix+"*"))
	if err != nil {
		return err
	}
	for _, p := range pins {
		errs = append(errs, detachTCX(p))
	}
	links, err := netlink.LinkList()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list links: %w", err))...)
	}
	for _, l := range links {
		for _, h := range []hook{ingress, egress} {
			filters, err := weftFilters(l, h)
			errs = append(errs, err)
			for _, f := range filters {
				errs = append(errs, netlink.FilterDel(f))
			}
		}
	}
	return errors.Join(errs...)
}

// removePins removes the pinned maps and, if then empty, the pin directory.
func (d *Datapath) removePins() error {
	spec, err := loadWeft()
	if err != nil {
		return err
	}
	var errs []error
	for name, ms := range spec.Maps {
		if ms.Pinning != ebpf.PinByName {
			continue
		}
		err := os.Remove(filepath.Join(d.opts.BPFDir, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	// Fails (harmlessly) while other files remain or a bpffs is mounted there.
	_ = os.Remove(d.opts.BPFDir)
	return errors.Join(errs...)
}

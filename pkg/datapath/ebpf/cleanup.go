package ebpf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// namePrefix starts the name of every program and map weft loads (and so of
// its pinned maps and its tc filters): what marks kernel objects as weft's.
const namePrefix = "weft_"

// hooks are the tc attach points weft uses.
var hooks = []hook{ingress, egress}

// Cleanup detaches every weft program in the namespace (tcx links, wherever
// they are pinned, and tc filters, on every interface), removes the pins
// weft created in BPFDir and, after a Setup, the kernel slow path's state.
// Without Setup it removes only what an earlier ebpf run left, as for
// `weftd --cleanup` and for a node that comes up on the kernel datapath: it
// loads no program, so it works where the ebpf datapath no longer can.
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
		detached, err := detachEverything()
		errs = append(errs, err)
		pins, err := removePins(d.opts.BPFDir)
		errs = append(errs, err, removeTracking())
		if len(detached)+len(pins) == 0 {
			slog.Info("no eBPF datapath programs or pins to remove", "bpf_dir", d.opts.BPFDir)
		} else {
			slog.Info("eBPF datapath removed", "bpf_dir", d.opts.BPFDir, "detached", detached, "pins", pins)
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("cleanup: %w", err)
		}
		return nil
	})
}

// ReadNamespaceAttachments lists every weft program attached in the calling
// thread's network namespace, on any interface and whatever attached it:
// tcx links whose program's name starts with "weft_" (Pin is empty: they
// are found through their interface, pinned or not) and weft's cls_bpf
// filters. Unlike ReadAttachments it needs neither pins nor node config, so
// it also finds what a removed pin directory left attached.
func ReadNamespaceAttachments() ([]Attachment, error) {
	found, err := namespaceAttachments()
	out := make([]Attachment, len(found))
	for i, a := range found {
		out[i] = a.Attachment
	}
	return out, err
}

// String describes a for logs, e.g. "weft_uplink_ingress on eth0 ingress (tcx)".
func (a Attachment) String() string {
	return fmt.Sprintf("%s on %s %s (%s)", a.Program, a.Interface, a.Hook, a.Mode)
}

// attached is a weft program found on an interface hook, and how to detach it.
type attached struct {
	Attachment
	detach func() error
}

// namespaceAttachments finds every weft program attached in the calling
// thread's network namespace (see ReadNamespaceAttachments).
func namespaceAttachments() ([]attached, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []attached
	var errs []error
	for _, l := range links {
		tcx, err := tcxAttached(l)
		errs = append(errs, err)
		tc, err := tcAttached(l)
		errs = append(errs, err)
		out = append(append(out, tcx...), tc...)
	}
	return out, errors.Join(errs...)
}

// tcxAttached lists the tcx links on l whose program is weft's.
func tcxAttached(l netlink.Link) ([]attached, error) {
	var out []attached
	for _, h := range hooks {
		res, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: h.tcx})
		switch {
		case errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EINVAL):
			return nil, nil // a kernel without tcx
		case errors.Is(err, unix.ENODEV):
			return out, nil // the interface went away
		case err != nil:
			return out, fmt.Errorf("query tcx programs of %s %s: %w", l.Attrs().Name, h.name, err)
		}
		for _, p := range res.Programs {
			id, ok := p.LinkID()
			if !ok {
				continue // attached without a link, which weft never does
			}
			name, err := programName(p.ID)
			if errors.Is(err, os.ErrNotExist) {
				continue // detached meanwhile
			}
			if err != nil {
				return out, err
			}
			if !strings.HasPrefix(name, namePrefix) {
				continue
			}
			out = append(out, attached{
				Attachment: Attachment{Interface: l.Attrs().Name, Ifindex: l.Attrs().Index, Hook: h.name,
					Mode: AttachTCX, Program: name, ProgramID: p.ID, LinkID: id},
				detach: func() error { return detachLink(id) },
			})
		}
	}
	return out, nil
}

// detachLink detaches the link id, pinned or not; a link already gone is
// no error.
func detachLink(id link.ID) error {
	l, err := link.NewFromID(id)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open link %d: %w", id, err)
	}
	defer l.Close()
	if err := l.Detach(); err != nil {
		return fmt.Errorf("detach link %d: %w", id, err)
	}
	return nil
}

// tcAttached lists weft's cls_bpf filters on l.
func tcAttached(l netlink.Link) ([]attached, error) {
	var out []attached
	for _, h := range hooks {
		filters, err := weftFilters(l, h)
		if err != nil {
			return out, err
		}
		for _, f := range filters {
			out = append(out, attached{
				Attachment: Attachment{Interface: l.Attrs().Name, Ifindex: l.Attrs().Index, Hook: h.name,
					Mode: AttachTC, Program: f.Name, ProgramID: ebpf.ProgramID(f.Id)},
				detach: func() error {
					if err := netlink.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
						return fmt.Errorf("delete tc filter: %w", err)
					}
					return nil
				},
			})
		}
	}
	return out, nil
}

// detachEverything detaches every weft program in the calling thread's
// namespace and returns what it detached.
func detachEverything() ([]string, error) {
	found, err := namespaceAttachments()
	errs := []error{err}
	var done []string
	for _, a := range found {
		if err := a.detach(); err != nil {
			errs = append(errs, fmt.Errorf("detach %s: %w", a, err))
			continue
		}
		done = append(done, a.String())
	}
	return done, errors.Join(errs...)
}

// removePins removes the pins weft created in dir (maps named weft_*, tcx
// links tcx_*, whichever weft version pinned them) and, if then empty, dir.
// Other files stay. It returns the names it removed.
func removePins(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pin directory: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !(strings.HasPrefix(name, namePrefix) || strings.HasPrefix(name, linkPinPrefix)) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove pin: %w", err))
			continue
		}
		removed = append(removed, name)
	}
	// Fails (harmlessly) while other files remain or a bpffs is mounted there.
	_ = os.Remove(dir)
	return removed, errors.Join(errs...)
}

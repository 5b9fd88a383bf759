package ebpf

import (
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

// hook is a tc attach point of an interface.
type hook struct {
	name     string
	tcx      ebpf.AttachType
	tcParent uint32
}

var (
	ingress = hook{"ingress", ebpf.AttachTCXIngress, netlink.HANDLE_MIN_INGRESS}
	egress  = hook{"egress", ebpf.AttachTCXEgress, netlink.HANDLE_MIN_EGRESS}
)

// Identity of weft's cls_bpf filters in tc mode.
const (
	tcPriority = 1
	tcHandle   = 0x7765
	// linkPinPrefix starts the names of pinned tcx links in the pin directory.
	linkPinPrefix = "tcx_"
)

// attachment is one program on one interface hook.
type attachment struct {
	iface string
	hook  hook
	prog  *ebpf.Program
	// name is the program's name, also the tc filter's name.
	name string
}

// pin is the file a tcx attachment's link is pinned as.
func (a attachment) pin(dir string) string {
	return filepath.Join(dir, linkPinPrefix+a.iface+"_"+a.hook.name)
}

// attachments lists what must be attached for d.node: the ingress of every
// pod veth on the bridge (pod traffic leaves for remote pods there, before
// the bridge and netfilter), the bridge's (for veths not attached yet), and
// the ingress of every other interface but vxlan devices, the uplink first:
// VXLAN is validated wherever it enters the node. Caller holds d.mu, in d.ns.
func (d *Datapath) attachments() ([]attachment, error) {
	out := []attachment{
		{d.node.Uplink, ingress, d.objs.WeftUplinkIngress, weftProgWeftUplinkIngress},
		{d.opts.Bridge, ingress, d.objs.WeftPodIngress, weftProgWeftPodIngress},
	}
	links, err := netlink.LinkList()
	if err != nil {
		return out, fmt.Errorf("list links: %w", err)
	}
	bridge := int(d.cfg.BridgeIfindex)
	for _, l := range links {
		a := l.Attrs()
		switch {
		case a.Name == d.node.Uplink || a.Name == d.opts.Bridge || l.Type() == "vxlan":
		case bridge != 0 && a.MasterIndex == bridge && l.Type() == "veth":
			out = append(out, attachment{a.Name, ingress, d.objs.WeftVethIngress, weftProgWeftVethIngress})
		default:
			out = append(out, attachment{a.Name, ingress, d.objs.WeftUplinkIngress, weftProgWeftUplinkIngress})
		}
	}
	return out, nil
}

// attachMode names the attach mode in use.
func (d *Datapath) attachMode() string {
	if d.tc {
		return AttachTC
	}
	return AttachTCX
}

// attachAll makes every attachment current: attached to the interface's
// present ifindex and running this process's program, and detaches pinned
// links no attachment owns (a pod's veth or the uplink went away). A missing
// bridge is not an error (it comes with the first pod). Caller holds d.mu,
// in d.ns.
func (d *Datapath) attachAll() error {
	all, err := d.attachments()
	errs := []error{err}
	for _, a := range all {
		if err := d.attach(a); err != nil {
			errs = append(errs, fmt.Errorf("attach %s to %s %s: %w", a.name, a.iface, a.hook.name, err))
		}
	}
	if err == nil { // a partial list would detach live veths
		errs = append(errs, d.removeStaleLinks(all))
	}
	return errors.Join(errs...)
}

func (d *Datapath) attach(a attachment) error {
	l, err := optionalLink(a.iface)
	if err != nil {
		return err
	}
	if l == nil {
		if a.iface == d.node.Uplink {
			return fmt.Errorf("uplink %q not found (set --iface to an existing interface)", a.iface)
		}
		return detachTCX(a.pin(d.opts.BPFDir)) // a pin left for a deleted interface is dead
	}
	if !d.tc {
		err := d.attachTCX(a, l.Attrs().Index)
		if !errors.Is(err, ebpf.ErrNotSupported) || d.opts.Attach == AttachTCX {
			if err == nil {
				err = deleteTCFilter(l, a)
			}
			return err
		}
		slog.Info("kernel has no tcx: attaching with clsact and cls_bpf instead", "reason", err)
		d.tc = true
	}
	if err := attachTC(a, l); err != nil {
		return err
	}
	return detachTCX(a.pin(d.opts.BPFDir))
}

// attachTCX adopts a's pinned tcx link when it is attached to ifindex,
// replacing its program if it is not a.prog, or else attaches and pins anew.
func (d *Datapath) attachTCX(a attachment, ifindex int) error {
	path := a.pin(d.opts.BPFDir)
	want, err := programID(a.prog)
	if err != nil {
		return err
	}
	old, err := link.LoadPinnedLink(path, nil)
	switch {
	case err == nil:
		defer old.Close()
		info, err := old.Info()
		if err != nil {
			return fmt.Errorf("read pinned link %s: %w", path, err)
		}
		if tcx := info.TCX(); tcx != nil && int(tcx.Ifindex) == ifindex {
			if info.Program == want {
				return nil
			}
			if err := old.Update(a.prog); err != nil {
				return fmt.Errorf("replace program of pinned link %s: %w", path, err)
			}
			slog.Info("replaced program in place", "program", a.name, "interface", a.iface, "hook", a.hook.name)
			return nil
		}
		// The interface was deleted (and maybe recreated): the link is dead.
		if err := old.Unpin(); err != nil {
			return fmt.Errorf("unpin dead link %s: %w", path, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("open pinned link %s: %w", path, err)
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: a.prog, Attach: a.hook.tcx})
	if err != nil {
		return err
	}
	defer l.Close()
	if err := l.Pin(path); err != nil {
		return fmt.Errorf("pin link: %w", err) // closing l detaches again
	}
	slog.Info("attached", "program", a.name, "interface", a.iface, "hook", a.hook.name, "mode", AttachTCX)
	return nil
}

// detachTCX removes the pinned tcx link at path, if any, which detaches it.
func detachTCX(path string) error {
	l, err := link.LoadPinnedLink(path, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open pinned link %s: %w", path, err)
	}
	defer l.Close()
	if err := l.Unpin(); err != nil {
		return fmt.Errorf("unpin link %s: %w", path, err)
	}
	return nil
}

// attachTC makes a.prog weft's direct-action cls_bpf filter on l's clsact
// hook, replacing an older program atomically.
func attachTC(a attachment, l netlink.Link) error {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: l.Attrs().Index,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
	if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add clsact qdisc: %w", err)
	}
	want, err := programID(a.prog)
	if err != nil {
		return err
	}
	current, err := weftFilters(l, a.hook)
	if err != nil {
		return err
	}
	for _, f := range current {
		if f.Name == a.name && ebpf.ProgramID(f.Id) == want {
			return nil
		}
	}
	filter := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: l.Attrs().Index,
			Parent:    a.hook.tcParent,
			Handle:    tcHandle,
			Protocol:  unix.ETH_P_ALL,
			Priority:  tcPriority,
		},
		Fd:           a.prog.FD(),
		Name:         a.name,
		DirectAction: true,
	}
	if err := netlink.FilterReplace(filter); err != nil {
		return fmt.Errorf("replace cls_bpf filter: %w", err)
	}
	slog.Info("attached", "program", a.name, "interface", a.iface, "hook", a.hook.name, "mode", AttachTC)
	return nil
}

// weftFilters lists weft's cls_bpf filters on l's hook.
func weftFilters(l netlink.Link, h hook) ([]*netlink.BpfFilter, error) {
	filters, err := netlink.FilterList(l, h.tcParent)
	if errors.Is(err, unix.EINVAL) {
		return nil, nil // no clsact qdisc
	}
	if err != nil {
		return nil, fmt.Errorf("list tc filters of %s: %w", l.Attrs().Name, err)
	}
	var out []*netlink.BpfFilter
	for _, f := range filters {
		if bf, ok := f.(*netlink.BpfFilter); ok && strings.HasPrefix(bf.Name, namePrefix) {
			out = append(out, bf)
		}
	}
	return out, nil
}

// deleteTCFilter removes weft's cls_bpf filter for a from l, if any.
func deleteTCFilter(l netlink.Link, a attachment) error {
	filters, err := weftFilters(l, a.hook)
	if err != nil {
		return err
	}
	for _, f := range filters {
		if f.Name != a.name {
			continue
		}
		if err := netlink.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("delete tc filter %s on %s: %w", f.Name, a.iface, err)
		}
	}
	return nil
}

// removeStaleLinks detaches pinned tcx links that no attachment in all
// owns (e.g. the uplink changed, a pod was deleted).
func (d *Datapath) removeStaleLinks(all []attachment) error {
	want := map[string]bool{}
	for _, a := range all {
		want[a.pin(d.opts.BPFDir)] = true
	}
	pins, err := filepath.Glob(filepath.Join(d.opts.BPFDir, linkPinPrefix+"*"))
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range pins {
		if !want[p] {
			slog.Info("detaching a link the configuration no longer has", "pin", p)
			errs = append(errs, detachTCX(p))
		}
	}
	return errors.Join(errs...)
}

// programID returns the kernel's ID of p.
func programID(p *ebpf.Program) (ebpf.ProgramID, error) {
	info, err := p.Info()
	if err != nil {
		return 0, fmt.Errorf("read program info: %w", err)
	}
	id, ok := info.ID()
	if !ok {
		return 0, errors.New("kernel does not report program IDs")
	}
	return id, nil
}

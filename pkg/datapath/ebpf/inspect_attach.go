package ebpf

// weft's tc attachments as weftctl reads them (see inspect.go).

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
)

// Attachment is one of weft's programs attached to an interface hook.
type Attachment struct {
	// Interface is the interface's name: for tcx as the pin records it,
	// for tc as the calling namespace names it.
	Interface string
	// Ifindex is the interface's index in the node's namespace; 0 for a
	// pinned tcx link whose interface is gone (a dead link).
	Ifindex int
	// Hook is "ingress" or "egress".
	Hook string
	// Mode is AttachTCX or AttachTC.
	Mode string
	// Program and ProgramID name the attached program.
	Program   string
	ProgramID ebpf.ProgramID
	// LinkID and Pin are the tcx link's ID and pin file (zero for tc).
	LinkID link.ID
	Pin    string
}

// ReadAttachments lists weft's attachments: the pinned tcx links in bpfDir
// and weft's cls_bpf filters on every interface. The filters are looked up
// in the calling thread's network namespace, which must be the node's
// (ip netns exec NODE weftctl ...).
func ReadAttachments(bpfDir string) ([]Attachment, error) {
	out, err := tcxAttachments(bpfDir)
	if err != nil {
		return nil, err
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		tc, err := tcAttached(l)
		if err != nil {
			return nil, err
		}
		for _, a := range tc {
			out = append(out, a.Attachment)
		}
	}
	return out, nil
}

// tcxAttachments describes the pinned tcx links in bpfDir.
func tcxAttachments(bpfDir string) ([]Attachment, error) {
	pins, err := filepath.Glob(filepath.Join(bpfDir, linkPinPrefix+"*"))
	if err != nil {
		return nil, err
	}
	var out []Attachment
	for _, pin := range pins {
		a, err := tcxAttachment(pin)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func tcxAttachment(pin string) (Attachment, error) {
	// Links cannot be opened read-only; nothing here changes them.
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		return Attachment{}, fmt.Errorf("open pinned link %s: %w", pin, err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return Attachment{}, fmt.Errorf("read pinned link %s: %w", pin, err)
	}
	// The pin is named tcx_<interface>_<hook> (attachment.pin).
	name := strings.TrimPrefix(filepath.Base(pin), linkPinPrefix)
	a := Attachment{Mode: AttachTCX, ProgramID: info.Program, LinkID: info.ID, Pin: pin}
	if i := strings.LastIndexByte(name, '_'); i > 0 {
		a.Interface, a.Hook = name[:i], name[i+1:]
	}
	if tcx := info.TCX(); tcx != nil {
		a.Ifindex = int(tcx.Ifindex)
		switch ebpf.AttachType(tcx.AttachType) {
		case ebpf.AttachTCXIngress:
			a.Hook = ingress.name
		case ebpf.AttachTCXEgress:
			a.Hook = egress.name
		}
	}
	a.Program, err = programName(info.Program)
	return a, err
}

// programName returns the name of the loaded program id.
func programName(id ebpf.ProgramID) (string, error) {
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return "", fmt.Errorf("open program %d: %w", id, err)
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		return "", fmt.Errorf("read program %d: %w", id, err)
	}
	return info.Name, nil
}

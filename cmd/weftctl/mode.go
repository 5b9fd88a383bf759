package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/weftnet/weft/pkg/datapath/ebpf"
	"github.com/weftnet/weft/pkg/subnetfile"
)

// Datapath modes status reports.
const (
	modeEBPF   = "ebpf"
	modeKernel = "kernel"
)

// modeInfo is the datapath a node runs, derived from the state weftd left.
type modeInfo struct {
	Mode string `json:"mode"`
	// Attach is how the programs are attached: tcx, tc, "tcx+tc" or none.
	Attach string `json:"attach,omitempty"`
	Reason string `json:"reason"`
}

// modeState is what decideMode looks at.
type modeState struct {
	bpfDir string
	// env is the subnet file, nil when it cannot be read.
	env *subnetfile.Env
	// pinned is true when the node config map is pinned in bpfDir.
	pinned      bool
	attachments []ebpf.Attachment
	// supported is ebpf.Supported, asked only when nothing is pinned.
	supported func() error
}

// decideMode derives the datapath mode and why from the node's state: pins
// with live attachments mean ebpf; no pins mean kernel, with the reason the
// eBPF datapath is not in use.
func decideMode(s modeState) modeInfo {
	if !s.pinned {
		m := modeInfo{Mode: modeKernel}
		switch {
		case s.env != nil && s.env.BPFDir != "" && s.env.BPFDir != s.bpfDir:
			m.Mode = modeEBPF
			m.Reason = fmt.Sprintf("the subnet file announces the ebpf datapath with pins in %s, but nothing is pinned in %s: pass --bpf-dir %s",
				s.env.BPFDir, s.bpfDir, s.env.BPFDir)
		case s.env != nil && s.env.BPFDir != "":
			m.Reason = fmt.Sprintf("the subnet file announces the ebpf datapath, but nothing is pinned in %s: weftd --cleanup ran, or the bpffs was unmounted", s.bpfDir)
		default:
			if err := s.supported(); err != nil {
				m.Reason = err.Error()
			} else {
				m.Reason = "eBPF supported but not in use: Backend.Datapath is kernel or weftd has not started"
			}
		}
		return m
	}
	m := modeInfo{Mode: modeEBPF}
	var alive, dead int
	var modes []string
	for _, a := range s.attachments {
		if a.Ifindex == 0 {
			dead++
			continue
		}
		alive++
		if !slices.Contains(modes, a.Mode) {
			modes = append(modes, a.Mode)
		}
	}
	slices.Sort(modes)
	m.Attach = strings.Join(modes, "+")
	var why []string
	if alive == 0 {
		m.Attach = "none"
		why = append(why, fmt.Sprintf("maps are pinned in %s but no program is attached: weftd has not finished its setup, "+
			"or an interface was recreated and weftd (is it running?) has not re-attached yet", s.bpfDir))
	} else {
		why = append(why, fmt.Sprintf("maps pinned in %s, %d program attachments", s.bpfDir, alive))
	}
	if dead > 0 {
		why = append(why, fmt.Sprintf("%d pinned links are dead (their interface is gone; weftd removes them)", dead))
	}
	switch {
	case s.env == nil:
		why = append(why, "no subnet file: weftd has no lease yet")
	case s.env.BPFDir == "":
		why = append(why, "but the subnet file does not announce the ebpf datapath: the pins are left over from an earlier run "+
			"(weftd --cleanup removes them) or weftd now runs the kernel datapath")
	case s.env.BPFDir != s.bpfDir:
		why = append(why, fmt.Sprintf("but the subnet file names the pin directory %s", s.env.BPFDir))
	}
	m.Reason = strings.Join(why, "; ")
	return m
}

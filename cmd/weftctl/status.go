package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/weftnet/weft/pkg/datapath/ebpf"
	"github.com/weftnet/weft/pkg/subnetfile"
)

var statusCommand = command{
	name:     "status",
	synopsis: "[-o table|json] [--bpf-dir DIR] [--subnet-file F]",
	summary:  "show this node's lease, datapath mode and why, program attachments and counters",
	jsonDoc: `  {"lease": {"subnet_file", "network", "subnet", "mtu", "ip_masq", "bpf_dir"} or null,
   "lease_error": why the subnet file is unreadable (omitted when it is read),
   "datapath": {"mode": "ebpf"|"kernel", "attach": "tcx"|"tc"|"none" (ebpf only), "reason"},
   "bpf_dir",
   "node": the node config map (see 'weftctl maps -h', weft_config) or null,
   "maps": [{"name", "id", "type", "entries", "max_entries"}],
   "attachments": [{"interface", "ifindex", "hook", "mode", "program", "program_id", "link_id", "pin", "state"}],
   "counters": [{"backend", "direction", "reason", "packets", "bytes"}]}
  "state" is "attached", or "dead" for a pinned tcx link whose interface is gone.
`,
	flags: func(fs *flag.FlagSet) runFunc {
		out := outputFlag(fs)
		bpfDir := bpfDirFlag(fs)
		subnetFile := subnetFileFlag(fs)
		return func(_ context.Context, stdout io.Writer, _ []string) error {
			r, err := readStatus(*bpfDir, *subnetFile, ebpf.Supported)
			if err != nil {
				return err
			}
			return render(stdout, *out, r)
		}
	},
}

type statusReport struct {
	Lease       *leaseJSON       `json:"lease"`
	LeaseError  string           `json:"lease_error,omitempty"`
	Datapath    modeInfo         `json:"datapath"`
	BPFDir      string           `json:"bpf_dir"`
	Node        *configJSON      `json:"node"`
	Maps        []mapJSON        `json:"maps"`
	Attachments []attachmentJSON `json:"attachments"`
	Counters    []counterJSON    `json:"counters"`
}

// leaseJSON is the subnet file: the lease weftd holds.
type leaseJSON struct {
	SubnetFile string `json:"subnet_file"`
	Network    string `json:"network"`
	Subnet     string `json:"subnet"`
	MTU        int    `json:"mtu"`
	IPMasq     bool   `json:"ip_masq"`
	BPFDir     string `json:"bpf_dir"`
}

type mapJSON struct {
	Name       string `json:"name"`
	ID         uint32 `json:"id"`
	Type       string `json:"type"`
	Entries    int    `json:"entries"`
	MaxEntries int    `json:"max_entries"`
}

type attachmentJSON struct {
	Interface string `json:"interface"`
	Ifindex   int    `json:"ifindex"`
	Hook      string `json:"hook"`
	Mode      string `json:"mode"`
	Program   string `json:"program"`
	ProgramID uint32 `json:"program_id"`
	LinkID    uint32 `json:"link_id"`
	Pin       string `json:"pin"`
	State     string `json:"state"`
}

// readStatus gathers the node's state; supported is ebpf.Supported.
func readStatus(bpfDir, subnetFile string, supported func() error) (*statusReport, error) {
	r := &statusReport{BPFDir: bpfDir, Maps: []mapJSON{}, Attachments: []attachmentJSON{}}
	state := modeState{bpfDir: bpfDir, supported: supported}
	env, err := subnetfile.Read(subnetFile)
	if err != nil {
		r.LeaseError = err.Error()
	} else {
		state.env = &env
		r.Lease = &leaseJSON{SubnetFile: subnetFile, Network: str(env.Network), Subnet: str(env.Subnet),
			MTU: env.MTU, IPMasq: env.IPMasq, BPFDir: env.BPFDir}
	}
	cfg, err := ebpf.ReadConfig(bpfDir)
	switch {
	case err == nil:
		state.pinned = true
		c := configRow(cfg)
		r.Node = &c
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	if state.pinned {
		maps, err := listMaps(bpfDir)
		if err != nil {
			return nil, err
		}
		r.Maps = maps.Maps
	}
	if state.attachments, err = ebpf.ReadAttachments(bpfDir); err != nil {
		return nil, err
	}
	for _, a := range state.attachments {
		r.Attachments = append(r.Attachments, attachmentRow(a))
	}
	r.Datapath = decideMode(state)
	if r.Counters, err = readCounters(bpfDir); err != nil {
		return nil, err
	}
	return r, nil
}

func attachmentRow(a ebpf.Attachment) attachmentJSON {
	state := "attached"
	if a.Ifindex == 0 {
		state = "dead"
	}
	return attachmentJSON{Interface: a.Interface, Ifindex: a.Ifindex, Hook: a.Hook, Mode: a.Mode, Program: a.Program,
		ProgramID: uint32(a.ProgramID), LinkID: uint32(a.LinkID), Pin: a.Pin, State: state}
}

func (r *statusReport) writeTable(w io.Writer) error {
	if r.Lease != nil {
		fmt.Fprintf(w, "Lease:     %s of %s, MTU %d, ip-masq %t (%s)\n",
			r.Lease.Subnet, r.Lease.Network, r.Lease.MTU, r.Lease.IPMasq, r.Lease.SubnetFile)
	} else {
		fmt.Fprintf(w, "Lease:     none: %s\n", r.LeaseError)
	}
	mode := r.Datapath.Mode
	if r.Datapath.Attach != "" {
		mode += ", attached with " + r.Datapath.Attach
	}
	fmt.Fprintf(w, "Datapath:  %s\nWhy:       %s\n", mode, r.Datapath.Reason)
	if n := r.Node; n != nil {
		for _, f := range n.families() {
			fmt.Fprintf(w, "Node:      %s, backend %s", dash(f[2]), n.Backend)
			if n.Port != 0 {
				fmt.Fprintf(w, ", VNI %d, port %d, VTEP MAC %s", n.VNI, n.Port, dash(f[3]))
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "Uplink:    %s\nBridge:    %s, MAC %s\n", ifaceStr(n.UplinkIfindex), ifaceStr(n.BridgeIfindex), dash(n.BridgeMAC))
	}
	if len(r.Maps) > 0 {
		fmt.Fprintf(w, "\nMaps in %s:\n", r.BPFDir)
		rows := make([][]string, 0, len(r.Maps))
		for _, m := range r.Maps {
			rows = append(rows, []string{m.Name, strconv.Itoa(int(m.ID)), m.Type, fmt.Sprintf("%d/%d", m.Entries, m.MaxEntries)})
		}
		if err := writeTable(w, []string{"NAME", "ID", "TYPE", "ENTRIES"}, rows); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "\nAttachments:")
	if len(r.Attachments) == 0 {
		fmt.Fprintln(w, "  none")
	} else if err := writeAttachments(w, r.Attachments); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nCounters (non-zero; all with 'weftctl counters'):")
	var nonZero []counterJSON
	for _, c := range r.Counters {
		if c.Packets != 0 || c.Bytes != 0 {
			nonZero = append(nonZero, c)
		}
	}
	if len(nonZero) == 0 {
		fmt.Fprintln(w, "  none")
		return nil
	}
	return writeCounters(w, nonZero)
}

func writeAttachments(w io.Writer, as []attachmentJSON) error {
	rows := make([][]string, 0, len(as))
	for _, a := range as {
		link := "-"
		if a.LinkID != 0 {
			link = strconv.Itoa(int(a.LinkID))
		}
		state := a.State
		if here := ifname(a.Ifindex); a.Ifindex != 0 && here != a.Interface {
			state += fmt.Sprintf(" (ifindex %d is %q in this netns: run weftctl in the node's netns)", a.Ifindex, here)
		}
		rows = append(rows, []string{a.Interface, strconv.Itoa(a.Ifindex), a.Hook, a.Mode, a.Program,
			strconv.Itoa(int(a.ProgramID)), link, state})
	}
	return writeTable(w, []string{"INTERFACE", "IFINDEX", "HOOK", "MODE", "PROGRAM", "PROG ID", "LINK ID", "STATE"}, rows)
}

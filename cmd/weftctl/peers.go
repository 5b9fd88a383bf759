package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/datapath/ebpf"
	"github.com/weftnet/weft/pkg/subnetfile"
)

var peersCommand = command{
	name: "peers",
	synopsis: "[-o table|json] [--bpf-dir DIR] [--subnet-file F] " +
		"[--etcd-endpoints URLS [--etcd-prefix P] | --kube-subnet-mgr [--kubeconfig-file F]]",
	summary: "compare the remote subnets in the eBPF maps with the lease source " +
		"(given by --etcd-endpoints or --kube-subnet-mgr; without one, the maps alone)",
	jsonDoc: `  {"bpf_dir", "lease_source": "" without one, "own_subnet", "own_ipv6_subnet" ("" when the
   family is off), "note" (omitted when empty),
   "peers": [{"subnet", "map": {"node_ip", "vtep_mac", "mode"} or null,
              "lease": {"node_ip", "vtep_mac", "backend"} or null,
              "status": "ok"|"mismatch"|"own"|"unchecked",
              "mismatch": ["missing-in-map"|"missing-in-leases"|"node-ip"|"vtep-mac", ...]}]}
  "own" is this node's lease (never in the map); "unchecked" means one side is not
  available (no lease source, or no maps: the kernel datapath). A dual-stack lease
  gives a row per subnet, compared with its family's side (PublicIPv6 and
  BackendV6Data for the IPv6 subnet). The VTEP MAC is compared for vxlan entries only.
`,
	flags: func(fs *flag.FlagSet) runFunc {
		out := outputFlag(fs)
		bpfDir := bpfDirFlag(fs)
		subnetFile := subnetFileFlag(fs)
		src := leaseSourceFlags(fs)
		return func(ctx context.Context, stdout io.Writer, _ []string) error {
			r, err := readPeers(ctx, *bpfDir, *subnetFile, src)
			if err != nil {
				return err
			}
			return render(stdout, *out, r)
		}
	},
}

// Peer statuses and mismatches.
const (
	statusOK        = "ok"
	statusMismatch  = "mismatch"
	statusOwn       = "own"
	statusUnchecked = "unchecked"

	mismatchMissingInMap    = "missing-in-map"
	mismatchMissingInLeases = "missing-in-leases"
	mismatchNodeIP          = "node-ip"
	mismatchVtepMAC         = "vtep-mac"
)

type peersReport struct {
	BPFDir        string        `json:"bpf_dir"`
	LeaseSource   string        `json:"lease_source"`
	OwnSubnet     string        `json:"own_subnet"`
	OwnIPv6Subnet string        `json:"own_ipv6_subnet"`
	Note          string        `json:"note,omitempty"`
	Peers         []peerRowJSON `json:"peers"`
}

type peerMapJSON struct {
	NodeIP  string `json:"node_ip"`
	VtepMAC string `json:"vtep_mac"`
	Mode    string `json:"mode"`
}

type peerLeaseJSON struct {
	NodeIP  string `json:"node_ip"`
	VtepMAC string `json:"vtep_mac"`
	Backend string `json:"backend"`
}

type peerRowJSON struct {
	Subnet   string         `json:"subnet"`
	Map      *peerMapJSON   `json:"map"`
	Lease    *peerLeaseJSON `json:"lease"`
	Status   string         `json:"status"`
	Mismatch []string       `json:"mismatch,omitempty"`
}

// readPeers reads the maps and, if one is given, the lease source.
func readPeers(ctx context.Context, bpfDir, subnetFile string, src *leaseSource) (*peersReport, error) {
	r := &peersReport{BPFDir: bpfDir}
	var own, own6 netip.Prefix
	entries, err := ebpf.ReadPeers(bpfDir)
	haveMaps := err == nil
	switch {
	case errors.Is(err, os.ErrNotExist) && !src.chosen():
		return nil, fmt.Errorf("%w; give a lease source (--etcd-endpoints or --kube-subnet-mgr) to see the leases", err)
	case errors.Is(err, os.ErrNotExist):
		r.Note = fmt.Sprintf("no eBPF maps in %s (the kernel datapath?): showing the leases only", bpfDir)
	case err != nil:
		return nil, err
	}
	if cfg, err := ebpf.ReadConfig(bpfDir); err == nil {
		own, own6 = cfg.Subnet, cfg.IPv6Subnet
	}
	if env, err := subnetfile.Read(subnetFile); err == nil && !own.IsValid() && !own6.IsValid() {
		own, own6 = env.Subnet, env.IPv6Subnet
	}
	r.OwnSubnet, r.OwnIPv6Subnet = str(own), str(own6)
	var leases []leaseEntry
	if src.chosen() {
		if leases, err = src.list(ctx); err != nil {
			return nil, err
		}
		r.LeaseSource = src.String()
	}
	r.Peers = comparePeers(entries, haveMaps, leases, src.chosen(), own, own6)
	return r, nil
}

// comparePeers joins the map entries and the leases' halves (one per
// family) by subnet and marks where they differ. haveMaps and haveLeases
// say whether each side was read; own are this node's subnets.
func comparePeers(entries []ebpf.PeerEntry, haveMaps bool, leases []leaseEntry, haveLeases bool, own ...netip.Prefix) []peerRowJSON {
	rows := map[netip.Prefix]*peerRowJSON{}
	row := func(p netip.Prefix) *peerRowJSON {
		if rows[p] == nil {
			rows[p] = &peerRowJSON{Subnet: p.String()}
		}
		return rows[p]
	}
	for _, e := range entries {
		row(e.Subnet).Map = &peerMapJSON{NodeIP: str(e.NodeIP), VtepMAC: macStr(e.VtepMAC), Mode: string(e.Mode)}
	}
	for _, l := range leases {
		for _, h := range l.Halves() {
			row(h.Subnet).Lease = &peerLeaseJSON{NodeIP: str(h.PublicIP), VtepMAC: halfMAC(l.Attrs.BackendType, h),
				Backend: l.Attrs.BackendType}
		}
	}
	out := make([]peerRowJSON, 0, len(rows))
	for _, p := range slices.SortedFunc(maps.Keys(rows), netip.Prefix.Compare) {
		r := rows[p]
		switch {
		case slices.Contains(own, p):
			r.Status = statusOwn
		case !haveMaps || !haveLeases:
			r.Status = statusUnchecked
		case r.Map == nil:
			r.Mismatch = []string{mismatchMissingInMap}
		case r.Lease == nil:
			r.Mismatch = []string{mismatchMissingInLeases}
		default:
			if r.Map.NodeIP != r.Lease.NodeIP {
				r.Mismatch = append(r.Mismatch, mismatchNodeIP)
			}
			if r.Map.Mode == string(datapath.ModeVXLAN) && r.Map.VtepMAC != r.Lease.VtepMAC {
				r.Mismatch = append(r.Mismatch, mismatchVtepMAC)
			}
		}
		if r.Status == "" {
			r.Status = statusOK
			if len(r.Mismatch) > 0 {
				r.Status = statusMismatch
			}
		}
		out = append(out, *r)
	}
	return out
}

func (r *peersReport) writeTable(w io.Writer) error {
	src := r.LeaseSource
	if src == "" {
		src = "none (give --etcd-endpoints or --kube-subnet-mgr to compare)"
	}
	fmt.Fprintf(w, "Maps in %s, leases from %s\n", r.BPFDir, src)
	if r.Note != "" {
		fmt.Fprintf(w, "Note: %s\n", r.Note)
	}
	rows := make([][]string, 0, len(r.Peers))
	for _, p := range r.Peers {
		row := []string{p.Subnet, "-", "-", "-", "-", "-", "-", p.Status}
		if m := p.Map; m != nil {
			row[1], row[2], row[3] = m.NodeIP, dash(m.VtepMAC), m.Mode
		}
		if l := p.Lease; l != nil {
			row[4], row[5], row[6] = l.NodeIP, dash(l.VtepMAC), dash(l.Backend)
		}
		if len(p.Mismatch) > 0 {
			row[7] = "! " + strings.ReplaceAll(strings.Join(p.Mismatch, ", "), "-", " ")
			if p.Mismatch[0] != mismatchMissingInMap && p.Mismatch[0] != mismatchMissingInLeases {
				row[7] += " differ"
			}
		}
		rows = append(rows, row)
	}
	return writeTable(w, []string{"SUBNET", "MAP NODE IP", "MAP VTEP MAC", "MAP MODE",
		"LEASE NODE IP", "LEASE VTEP MAC", "LEASE BACKEND", "STATUS"}, rows)
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/weftnet/weft/pkg/datapath/ebpf"
)

var mapsCommand = command{
	name:       "maps",
	synopsis:   "[-o table|json] [--bpf-dir DIR] [list | dump NAME]",
	summary:    "list the pinned eBPF maps, or dump one decoded (addresses and MACs as text)",
	positional: true,
	jsonDoc: `  list: {"maps": [{"name", "id", "type", "entries", "max_entries"}]}
  dump: {"map": NAME, "entries": [...]}, entries by map:
    weft_config:     {"subnet", "network", "node_ip", "vtep_mac", "ipv6_subnet", "ipv6_network",
                      "node_ipv6", "vtep_mac_v6", "backend", "vni", "port", "bridge_mac",
                      "uplink_ifindex", "bridge_ifindex", "vxlan_ifindex", "vxlan_ifindex_v6"}
                     (a family that is off: ""; no vxlan device: ifindex 0)
    weft_peers:      {"subnet", "node_ip", "vtep_mac", "mode"}
    weft_nodes:      {"node_ip", "leases"}
    weft_endpoints:  {"ip", "host_ifindex", "mac"}
    weft_pods:       {"host_ifindex", "ip", "ipv6", "mac"}
    weft_traffic,
    weft_drops:      {"index", "backend", "direction", "reason", "packets", "bytes",
                      "per_cpu": [{"packets", "bytes"}]}
    weft_ct_requests is a ring buffer (weftd consumes it): it has nothing to dump.
  weft_peers, weft_nodes and weft_endpoints hold both families' entries.
  Unset values are "" (addresses, MACs) or 0. NAME may omit the "weft_" prefix.
`,
	flags: func(fs *flag.FlagSet) runFunc {
		out := outputFlag(fs)
		bpfDir := bpfDirFlag(fs)
		return func(_ context.Context, stdout io.Writer, args []string) error {
			switch {
			case len(args) == 0 || len(args) == 1 && args[0] == "list":
				r, err := listMaps(*bpfDir)
				if err != nil {
					return err
				}
				return render(stdout, *out, r)
			case len(args) == 2 && args[0] == "dump":
				r, err := dumpMap(*bpfDir, args[1])
				if err != nil {
					return err
				}
				return render(stdout, *out, r)
			}
			return usageError(fmt.Sprintf("unexpected arguments %q: use 'maps list' or 'maps dump NAME'", args))
		}
	},
}

type mapsReport struct {
	Maps []mapJSON `json:"maps"`
}

func listMaps(bpfDir string) (mapsReport, error) {
	r := mapsReport{Maps: []mapJSON{}}
	for _, name := range ebpf.MapNames() {
		info, err := ebpf.ReadMapInfo(bpfDir, name)
		if err != nil {
			return r, err
		}
		r.Maps = append(r.Maps, mapJSON{Name: info.Name, ID: uint32(info.ID), Type: info.Type,
			Entries: info.Entries, MaxEntries: info.MaxEntries})
	}
	return r, nil
}

func (r mapsReport) writeTable(w io.Writer) error {
	rows := make([][]string, 0, len(r.Maps))
	for _, m := range r.Maps {
		rows = append(rows, []string{m.Name, strconv.Itoa(int(m.ID)), m.Type, strconv.Itoa(m.Entries), strconv.Itoa(m.MaxEntries)})
	}
	return writeTable(w, []string{"NAME", "ID", "TYPE", "ENTRIES", "MAX ENTRIES"}, rows)
}

// dumpReport is one map's decoded entries: typed for JSON, as rows for the table.
type dumpReport struct {
	Map     string `json:"map"`
	Entries any    `json:"entries"`
	header  []string
	rows    [][]string
}

func (d dumpReport) writeTable(w io.Writer) error { return writeTable(w, d.header, d.rows) }

type configJSON struct {
	Subnet        string `json:"subnet"`
	Network       string `json:"network"`
	NodeIP        string `json:"node_ip"`
	VtepMAC       string `json:"vtep_mac"`
	IPv6Subnet    string `json:"ipv6_subnet"`
	IPv6Network   string `json:"ipv6_network"`
	NodeIPv6      string `json:"node_ipv6"`
	VtepMACv6     string `json:"vtep_mac_v6"`
	Backend       string `json:"backend"`
	VNI           int    `json:"vni"`
	Port          int    `json:"port"`
	BridgeMAC     string `json:"bridge_mac"`
	UplinkIfindex int    `json:"uplink_ifindex"`
	BridgeIfindex int    `json:"bridge_ifindex"`
	// VXLANIfindex and VXLANIfindexV6: flannel.<VNI> and flannel-v6.<VNI>.
	VXLANIfindex   int `json:"vxlan_ifindex"`
	VXLANIfindexV6 int `json:"vxlan_ifindex_v6"`
}

func configRow(c ebpf.NodeConfig) configJSON {
	return configJSON{Subnet: str(c.Subnet), Network: str(c.Network), NodeIP: str(c.NodeIP), VtepMAC: macStr(c.VtepMAC),
		IPv6Subnet: str(c.IPv6Subnet), IPv6Network: str(c.IPv6Network), NodeIPv6: str(c.NodeIPv6), VtepMACv6: macStr(c.VtepMACv6),
		Backend: string(c.Backend()), VNI: c.VNI, Port: c.Port, BridgeMAC: macStr(c.BridgeMAC),
		UplinkIfindex: c.UplinkIfindex, BridgeIfindex: c.BridgeIfindex,
		VXLANIfindex: c.VXLANIfindex, VXLANIfindexV6: c.VXLANIfindexV6}
}

// families are j's per-family columns (subnet, network, node IP, VTEP
// MAC, vxlan device): IPv4's, then IPv6's if it is on; IPv4's alone
// (dashes) when neither is.
func (j configJSON) families() [][5]string {
	var out [][5]string
	if j.NodeIP != "" || j.NodeIPv6 == "" {
		out = append(out, [5]string{j.Subnet, j.Network, j.NodeIP, j.VtepMAC, ifaceStr(j.VXLANIfindex)})
	}
	if j.NodeIPv6 != "" {
		out = append(out, [5]string{j.IPv6Subnet, j.IPv6Network, j.NodeIPv6, j.VtepMACv6, ifaceStr(j.VXLANIfindexV6)})
	}
	return out
}

type peerEntryJSON struct {
	Subnet  string `json:"subnet"`
	NodeIP  string `json:"node_ip"`
	VtepMAC string `json:"vtep_mac"`
	Mode    string `json:"mode"`
}

type knownNodeJSON struct {
	NodeIP string `json:"node_ip"`
	Leases int    `json:"leases"`
}

type endpointJSON struct {
	IP          string `json:"ip"`
	HostIfindex int    `json:"host_ifindex"`
	MAC         string `json:"mac"`
}

type cpuJSON struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

type slotJSON struct {
	Index int `json:"index"`
	counterJSON
	PerCPU []cpuJSON `json:"per_cpu"`
}

type podJSON struct {
	HostIfindex int    `json:"host_ifindex"`
	IP          string `json:"ip"`
	IPv6        string `json:"ipv6"`
	MAC         string `json:"mac"`
}

// mapName resolves NAME of 'maps dump NAME' ("peers" or "weft_peers").
func mapName(name string) (string, error) {
	names := ebpf.MapNames()
	for _, n := range []string{name, "weft_" + name} {
		if slices.Contains(names, n) {
			return n, nil
		}
	}
	return "", usageError(fmt.Sprintf("no map %q: use one of %s", name, strings.Join(names, ", ")))
}

// dumpMap reads and decodes the pinned map name.
func dumpMap(bpfDir, name string) (dumpReport, error) {
	name, err := mapName(name)
	if err != nil {
		return dumpReport{}, err
	}
	d := dumpReport{Map: name}
	switch name {
	case ebpf.MapConfig:
		c, err := ebpf.ReadConfig(bpfDir)
		if err != nil {
			return d, err
		}
		j := configRow(c)
		d.Entries = []configJSON{j}
		d.header = []string{"SUBNET", "NETWORK", "NODE IP", "BACKEND", "VNI", "PORT", "VTEP MAC", "VXLAN DEVICE", "UPLINK", "BRIDGE", "BRIDGE MAC"}
		for _, f := range j.families() { // one row per family
			d.rows = append(d.rows, []string{dash(f[0]), dash(f[1]), dash(f[2]), j.Backend, strconv.Itoa(j.VNI), strconv.Itoa(j.Port),
				dash(f[3]), f[4], ifaceStr(j.UplinkIfindex), ifaceStr(j.BridgeIfindex), dash(j.BridgeMAC)})
		}
	case ebpf.MapPeers:
		ps, err := ebpf.ReadPeers(bpfDir)
		if err != nil {
			return d, err
		}
		entries := []peerEntryJSON{}
		for _, p := range ps {
			j := peerEntryJSON{Subnet: str(p.Subnet), NodeIP: str(p.NodeIP), VtepMAC: macStr(p.VtepMAC), Mode: string(p.Mode)}
			entries = append(entries, j)
			d.rows = append(d.rows, []string{j.Subnet, j.NodeIP, dash(j.VtepMAC), j.Mode})
		}
		d.Entries, d.header = entries, []string{"SUBNET", "NODE IP", "VTEP MAC", "MODE"}
	case ebpf.MapNodes:
		ns, err := ebpf.ReadNodes(bpfDir)
		if err != nil {
			return d, err
		}
		entries := []knownNodeJSON{}
		for _, n := range ns {
			j := knownNodeJSON{NodeIP: str(n.NodeIP), Leases: n.Leases}
			entries = append(entries, j)
			d.rows = append(d.rows, []string{j.NodeIP, strconv.Itoa(j.Leases)})
		}
		d.Entries, d.header = entries, []string{"NODE IP", "LEASES"}
	case ebpf.MapEndpoints:
		eps, err := ebpf.ReadEndpoints(bpfDir)
		if err != nil {
			return d, err
		}
		entries := []endpointJSON{}
		for _, ep := range eps {
			j := endpointJSON{IP: str(ep.IP), HostIfindex: ep.HostIfindex, MAC: macStr(ep.MAC)}
			entries = append(entries, j)
			d.rows = append(d.rows, []string{j.IP, ifaceStr(j.HostIfindex), dash(j.MAC)})
		}
		d.Entries, d.header = entries, []string{"POD IP", "HOST VETH", "POD MAC"}
	case ebpf.MapTraffic, ebpf.MapDrops:
		cs, err := ebpf.ReadCounters(bpfDir)
		if err != nil {
			return d, err
		}
		entries := []slotJSON{}
		for _, c := range cs {
			if c.Map != name {
				continue
			}
			j := slotJSON{Index: c.Index, counterJSON: counterJSON{Backend: c.Backend, Direction: c.Direction, Reason: c.Reason,
				Packets: c.Packets, Bytes: c.Bytes}, PerCPU: []cpuJSON{}}
			var perCPU []string
			for _, p := range c.PerCPU {
				j.PerCPU = append(j.PerCPU, cpuJSON(p))
				perCPU = append(perCPU, strconv.FormatUint(p.Packets, 10))
			}
			entries = append(entries, j)
			d.rows = append(d.rows, []string{strconv.Itoa(j.Index), j.Backend, dash(j.Direction), dash(j.Reason),
				strconv.FormatUint(j.Packets, 10), strconv.FormatUint(j.Bytes, 10), strings.Join(perCPU, " ")})
		}
		d.Entries = entries
		d.header = []string{"INDEX", "BACKEND", "DIRECTION", "DROP REASON", "PACKETS", "BYTES", "PACKETS PER CPU"}
	case ebpf.MapPods:
		ps, err := ebpf.ReadPods(bpfDir)
		if err != nil {
			return d, err
		}
		entries := []podJSON{}
		for _, p := range ps {
			j := podJSON{HostIfindex: p.HostIfindex, IP: str(p.IP), IPv6: str(p.IPv6), MAC: macStr(p.MAC)}
			entries = append(entries, j)
			d.rows = append(d.rows, []string{ifaceStr(j.HostIfindex), dash(j.IP), dash(j.IPv6), dash(j.MAC)})
		}
		d.Entries, d.header = entries, []string{"HOST VETH", "POD IP", "POD IPV6", "POD MAC"}
	case ebpf.MapCTRequests:
		return d, usageError(name + " is a ring buffer that weftd consumes: it has nothing to dump")
	}
	return d, nil
}

package ebpf

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/test/testns"
)

func TestDecodeConfig(t *testing.T) {
	vtep := net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 1}
	vtep6 := net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 6}
	c := decodeConfig(weftNodeConfig{
		Family: [2]weftFamilyConfig{
			familyConfig(netip.MustParseAddr("192.168.50.1"), netip.MustParsePrefix("10.244.1.0/24"),
				netip.MustParsePrefix("10.244.0.0/16"), vtep),
			familyConfig(netip.MustParseAddr("fd00:50::1"), netip.MustParsePrefix("fd10:244:0:1::/64"),
				netip.MustParsePrefix("fd10:244::/56"), vtep6),
		},
		Vni: 1, Port: 8472, UplinkIfindex: 2,
	})
	want := NodeConfig{
		Subnet: netip.MustParsePrefix("10.244.1.0/24"), Network: netip.MustParsePrefix("10.244.0.0/16"),
		NodeIP:     netip.MustParseAddr("192.168.50.1"),
		IPv6Subnet: netip.MustParsePrefix("fd10:244:0:1::/64"), IPv6Network: netip.MustParsePrefix("fd10:244::/56"),
		NodeIPv6: netip.MustParseAddr("fd00:50::1"), VNI: 1, Port: 8472, VtepMAC: vtep, VtepMACv6: vtep6, UplinkIfindex: 2,
	}
	if fmt.Sprint(c) != fmt.Sprint(want) {
		t.Errorf("decoded %+v, want %+v", c, want)
	}
	if c.BridgeMAC != nil || c.Backend() != datapath.ModeVXLAN {
		t.Errorf("bridge MAC %v (want nil), backend %s (want vxlan)", c.BridgeMAC, c.Backend())
	}
	empty := decodeConfig(weftNodeConfig{})
	if empty.Subnet.IsValid() || empty.NodeIP.IsValid() || empty.VtepMAC != nil || empty.Backend() != datapath.ModeHostGW {
		t.Errorf("zero config decoded to %+v, want unset fields and host-gw", empty)
	}
}

func TestDecodePeer(t *testing.T) {
	key := lpmKey(netip.MustParsePrefix("10.244.7.0/24"))
	for _, tt := range []struct {
		v    weftPeer
		want PeerEntry
	}{
		{weftPeer{NodeIp: addrKey(netip.MustParseAddr("10.0.0.7")), VtepMac: [6]uint8{2, 0, 0, 0, 0, 7}, Mode: uint8(weftModeMODE_VXLAN)},
			PeerEntry{netip.MustParsePrefix("10.244.7.0/24"), netip.MustParseAddr("10.0.0.7"), net.HardwareAddr{2, 0, 0, 0, 0, 7}, datapath.ModeVXLAN}},
		{weftPeer{NodeIp: addrKey(netip.MustParseAddr("10.0.0.7")), Mode: uint8(weftModeMODE_HOST_GW)},
			PeerEntry{netip.MustParsePrefix("10.244.7.0/24"), netip.MustParseAddr("10.0.0.7"), nil, datapath.ModeHostGW}},
		{weftPeer{NodeIp: addrKey(netip.MustParseAddr("10.0.0.7")), Mode: 9},
			PeerEntry{netip.MustParsePrefix("10.244.7.0/24"), netip.MustParseAddr("10.0.0.7"), nil, "mode(9)"}},
	} {
		got := decodePeer(key, tt.v)
		if got.Subnet != tt.want.Subnet || got.NodeIP != tt.want.NodeIP || got.Mode != tt.want.Mode ||
			got.VtepMAC.String() != tt.want.VtepMAC.String() {
			t.Errorf("decodePeer(%+v) = %+v, want %+v", tt.v, got, tt.want)
		}
	}
}

func TestNtohs(t *testing.T) {
	if got := ntohs(htons(8472)); got != 8472 {
		t.Errorf("ntohs(htons(8472)) = %d", got)
	}
}

func TestReadMissingPins(t *testing.T) {
	dir := t.TempDir()
	for name, read := range map[string]func() error{
		"config":    func() error { _, err := ReadConfig(dir); return err },
		"peers":     func() error { _, err := ReadPeers(dir); return err },
		"counters":  func() error { _, err := ReadCounters(dir); return err },
		"map info":  func() error { _, err := ReadMapInfo(dir, MapNodes); return err },
		"endpoints": func() error { _, err := ReadEndpoints(dir); return err },
		"pods":      func() error { _, err := ReadPods(dir); return err },
	} {
		if err := read(); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s of an empty dir: %v, want an error matching os.ErrNotExist", name, err)
		}
	}
	if a, err := ReadAttachments(dir); err != nil || len(a) != 0 {
		t.Errorf("attachments of an empty dir: %v, %v; want none", a, err)
	}
}

// TestInspectTCX reads a live vxlan datapath attached with tcx.
func TestInspectTCX(t *testing.T) {
	nodes := syncedNodes(t, datapath.ModeVXLAN, AttachTCX)
	n, other := nodes[0], nodes[1]
	ep := n.endpoint(t)
	n.register(t)
	other.register(t)
	waitPing(t, n.pod, other.podIP)
	tcpTransfer(t, n, other, fastPathTransfer) // the fast path counts it (pings take the kernel path)

	cfg, err := ReadConfig(n.bpfDir)
	must(t, err)
	uplink, bridge, vxlan := ifindex(t, n.ns, "eth0"), ifindex(t, n.ns, "cni0"), ifindex(t, n.ns, "flannel.1")
	if cfg.Subnet != n.subnet || cfg.Network != n.node.Network || cfg.NodeIP != n.node.NodeIP ||
		cfg.VNI != 1 || cfg.Port != 8472 || cfg.VtepMAC.String() != n.info.VtepMAC.String() ||
		cfg.UplinkIfindex != uplink || cfg.BridgeIfindex != bridge || cfg.BridgeMAC == nil ||
		cfg.VXLANIfindex != vxlan || cfg.VXLANIfindexV6 != 0 {
		t.Errorf("config %+v; want subnet %s, node %s, VTEP %s, uplink %d, bridge %d, vxlan device %d, none for IPv6",
			cfg, n.subnet, n.node.NodeIP, n.info.VtepMAC, uplink, bridge, vxlan)
	}
	peers, err := ReadPeers(n.bpfDir)
	must(t, err)
	if len(peers) != 1 || peers[0].Subnet != other.subnet || peers[0].NodeIP != other.node.NodeIP ||
		peers[0].VtepMAC.String() != other.info.VtepMAC.String() || peers[0].Mode != datapath.ModeVXLAN {
		t.Errorf("peers %+v; want %s via %s (%s, vxlan)", peers, other.subnet, other.node.NodeIP, other.info.VtepMAC)
	}
	requireBpftoolDecodes(t, filepath.Join(n.bpfDir, MapPeers), "node_ip", "vtep_mac")
	requireBpftoolDecodes(t, filepath.Join(n.bpfDir, MapConfig), "vxlan_ifindex")
	reader, err := OpenPeers(n.bpfDir)
	must(t, err)
	defer reader.Close()
	if e, ok, err := reader.Lookup(other.subnet); err != nil || !ok || e.NodeIP != other.node.NodeIP || e.Mode != datapath.ModeVXLAN {
		t.Errorf("Lookup(%s) = %+v, %v, %v; want its entry", other.subnet, e, ok, err)
	}
	if e, ok, err := reader.Lookup(netip.MustParsePrefix("10.99.0.0/24")); err != nil || ok {
		t.Errorf("Lookup of a subnet without entry = %+v, %v, %v", e, ok, err)
	}
	known, err := ReadNodes(n.bpfDir)
	must(t, err)
	if want := []KnownNode{{other.node.NodeIP, 1}}; !slices.Equal(known, want) {
		t.Errorf("known nodes %+v, want %+v", known, want)
	}
	eps, err := ReadEndpoints(n.bpfDir)
	must(t, err)
	if len(eps) != 1 || eps[0].IP != ep.IP || eps[0].HostIfindex != ep.HostIfindex || eps[0].MAC.String() != ep.MAC.String() {
		t.Errorf("endpoints %+v, want %+v", eps, ep)
	}
	pods, err := ReadPods(n.bpfDir)
	must(t, err)
	if len(pods) != 1 || pods[0].HostIfindex != ep.HostIfindex || pods[0].IP != ep.IP || pods[0].MAC.String() != ep.MAC.String() {
		t.Errorf("pods %+v, want %+v", pods, ep)
	}
	checkCounters(t, n)
	infos := map[string]MapInfo{}
	for _, name := range MapNames() {
		info, err := ReadMapInfo(n.bpfDir, name)
		must(t, err)
		infos[name] = info
	}
	if info := infos[MapPeers]; info.Entries != 1 || info.Type != "LPMTrie" || info.ID == 0 {
		t.Errorf("map info %+v, want 1 entry of an LPM trie with an ID", info)
	}
	if info := infos[MapPods]; info.Entries != 1 || info.Type != "Hash" || info.ID == 0 {
		t.Errorf("map info %+v, want 1 entry of a hash with an ID", info)
	}
	if info := infos[MapCTRequests]; info.Entries != 0 || info.Type != "RingBuf" || info.ID == 0 {
		t.Errorf("map info %+v, want an empty ring buffer with an ID", info)
	}

	dp := n.dp.(*Datapath)
	// Every interface but the bridge, its veths and the vxlan device gets
	// the uplink's program: VXLAN is validated wherever it enters.
	want := []Attachment{
		{Interface: "cni0", Ifindex: bridge, Hook: "ingress", Program: weftProgWeftPodIngress, ProgramID: progID(t, dp, weftProgWeftPodIngress)},
		{Interface: "eth0", Ifindex: uplink, Hook: "ingress", Program: weftProgWeftUplinkIngress, ProgramID: progID(t, dp, weftProgWeftUplinkIngress)},
		{Interface: "lo", Ifindex: 1, Hook: "ingress", Program: weftProgWeftUplinkIngress, ProgramID: progID(t, dp, weftProgWeftUplinkIngress)},
		{Interface: "vethpod", Ifindex: ep.HostIfindex, Hook: "ingress", Program: weftProgWeftVethIngress, ProgramID: progID(t, dp, weftProgWeftVethIngress)},
	}
	got := attachments(t, n)
	if len(got) != len(want) {
		t.Fatalf("attachments %+v, want %d", got, len(want))
	}
	for i, a := range got {
		w := want[i]
		w.Mode, w.Pin, w.LinkID = AttachTCX, a.Pin, a.LinkID
		if a != w || a.LinkID == 0 || a.Pin == "" {
			t.Errorf("attachment %+v, want %+v with a link ID and pin", a, w)
		}
	}
}

// TestInspectTCHostGW reads a live host-gw datapath attached with tc.
func TestInspectTCHostGW(t *testing.T) {
	nodes := runningNodes(t, datapath.ModeHostGW, AttachTC)
	n, other := nodes[0], nodes[1]
	tcpTransfer(t, n, other, fastPathTransfer)

	cfg, err := ReadConfig(n.bpfDir)
	must(t, err)
	if cfg.Backend() != datapath.ModeHostGW || cfg.VtepMAC != nil || cfg.Port != 0 {
		t.Errorf("config %+v, want host-gw without VTEP MAC and port", cfg)
	}
	peers, err := ReadPeers(n.bpfDir)
	must(t, err)
	if len(peers) != 1 || peers[0].Subnet != other.subnet || peers[0].NodeIP != other.node.NodeIP || peers[0].Mode != datapath.ModeHostGW {
		t.Errorf("peers %+v, want %s via %s (host-gw)", peers, other.subnet, other.node.NodeIP)
	}
	counters := checkCounters(t, n)
	if c := counters[len(counters)-1]; c.Backend != BackendHostGW || c.Reason == "" {
		t.Errorf("last counter %+v, want a drop counter labelled %s", c, BackendHostGW)
	}
	dp := n.dp.(*Datapath)
	uplink, bridge := ifindex(t, n.ns, "eth0"), ifindex(t, n.ns, "cni0")
	want := []Attachment{
		{Interface: "lo", Ifindex: 1, Hook: "ingress", Mode: AttachTC, Program: weftProgWeftUplinkIngress, ProgramID: progID(t, dp, weftProgWeftUplinkIngress)},
		{Interface: "eth0", Ifindex: uplink, Hook: "ingress", Mode: AttachTC, Program: weftProgWeftUplinkIngress, ProgramID: progID(t, dp, weftProgWeftUplinkIngress)},
		{Interface: "cni0", Ifindex: bridge, Hook: "ingress", Mode: AttachTC, Program: weftProgWeftPodIngress, ProgramID: progID(t, dp, weftProgWeftPodIngress)},
		{Interface: "vethpod", Ifindex: ifindex(t, n.ns, "vethpod"), Hook: "ingress", Mode: AttachTC, Program: weftProgWeftVethIngress, ProgramID: progID(t, dp, weftProgWeftVethIngress)},
	}
	if got := attachments(t, n); !slices.Equal(got, want) {
		t.Errorf("attachments\n%+v\nwant\n%+v", got, want)
	}
}

// checkCounters compares ReadCounters with the datapath's Stats after a
// transfer on the fast path and returns them.
func checkCounters(t *testing.T, n *testNode) []Counter {
	t.Helper()
	got, err := ReadCounters(n.bpfDir)
	must(t, err)
	stats, err := n.dp.Stats()
	must(t, err)
	if len(got) != len(trafficCounters)+len(dropReasons) || len(stats) < len(got) {
		t.Fatalf("%d counters, %d stats; want %d counters", len(got), len(stats), len(trafficCounters)+len(dropReasons))
	}
	var tx uint64
	for i, c := range got {
		s := stats[i]
		// Stats was read later: counts only grow.
		if c.Backend != s.Backend || c.Direction != s.Direction || c.Reason != s.Reason || c.Packets > s.Packets || len(c.PerCPU) == 0 {
			t.Errorf("counter %d: %+v, Stats has %+v", i, c, s)
		}
		if c.Direction == "tx" {
			tx += c.Packets
		}
	}
	if tx == 0 {
		t.Errorf("no transmitted packets counted after a transfer: %+v", got)
	}
	return got
}

// attachments reads the attachments inside n's namespace.
func attachments(t *testing.T, n *testNode) []Attachment {
	t.Helper()
	var got []Attachment
	must(t, n.ns.Do(func() error {
		var err error
		got, err = ReadAttachments(n.bpfDir)
		return err
	}))
	return got
}

// ifindex is the index of the interface name in ns.
func ifindex(t testing.TB, ns *testns.NS, name string) int {
	t.Helper()
	var idx int
	must(t, ns.Do(func() error {
		l, err := netlink.LinkByName(name)
		if err == nil {
			idx = l.Attrs().Index
		}
		return err
	}))
	return idx
}

// progID is the ID of dp's loaded program name.
func progID(t *testing.T, dp *Datapath, name string) ebpf.ProgramID {
	t.Helper()
	dp.mu.Lock()
	defer dp.mu.Unlock()
	progs := map[string]*ebpf.Program{
		weftProgWeftPodIngress:    dp.objs.WeftPodIngress,
		weftProgWeftUplinkIngress: dp.objs.WeftUplinkIngress,
		weftProgWeftVethIngress:   dp.objs.WeftVethIngress,
	}
	id, err := programID(progs[name])
	must(t, err)
	return id
}

// TestWithoutHandoff: packets the programs handed to flannel-v6.<VNI> leave
// the kernel path's vxlan tx counter, never below zero, and nothing else.
func TestWithoutHandoff(t *testing.T) {
	slow := []datapath.Counter{
		{Backend: "vxlan-kernel", Direction: "rx", Packets: 10, Bytes: 1000},
		{Backend: "vxlan-kernel", Direction: "tx", Packets: 10, Bytes: 1000},
		{Backend: "vxlan-kernel", Reason: "device_tx_dropped", Packets: 3},
	}
	got := withoutHandoff(slices.Clone(slow), 4, 600)
	want := slices.Clone(slow)
	want[1].Packets, want[1].Bytes = 6, 400
	if !slices.Equal(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	got = withoutHandoff(slices.Clone(slow), 20, 5000)
	want[1].Packets, want[1].Bytes = 0, 0
	if !slices.Equal(got, want) {
		t.Errorf("more handed than the device counted: got %+v, want %+v", got, want)
	}
}

// requireBpftoolDecodes requires that `bpftool map dump pinned path` prints
// the entries decoded with the map's BTF ("formatted", with fields named
// as in headers/weft.h), as an operator reads them.
func requireBpftoolDecodes(t *testing.T, path string, fields ...string) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "bpftool", "-j", "map", "dump", "pinned", path).Output()
	if err != nil {
		t.Fatalf("bpftool map dump pinned %s: %v", path, err)
	}
	var entries []struct {
		Formatted map[string]any `json:"formatted"`
	}
	if err := json.Unmarshal(out, &entries); err != nil || len(entries) == 0 {
		t.Fatalf("bpftool map dump pinned %s: %v, %d entries:\n%s", path, err, len(entries), out)
	}
	for _, f := range fields {
		if !strings.Contains(fmt.Sprint(entries[0].Formatted), f+":") {
			t.Errorf("bpftool dump of %s does not decode %s with BTF:\n%s", path, f, out)
		}
	}
}

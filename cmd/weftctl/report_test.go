package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/datapath/ebpf"
	"github.com/weftnet/weft/pkg/lease"
	"github.com/weftnet/weft/pkg/subnetfile"
)

func TestDecideMode(t *testing.T) {
	const dir = "/sys/fs/bpf/weft"
	ebpfEnv := &subnetfile.Env{BPFDir: dir}
	attached := []ebpf.Attachment{{Ifindex: 2, Mode: ebpf.AttachTCX}, {Ifindex: 4, Mode: ebpf.AttachTCX}}
	unsupported := func() error { return errors.New("ebpf datapath unsupported: kernel too old") }
	supported := func() error { return nil }
	tests := []struct {
		name               string
		s                  modeState
		mode, attach, want string
	}{
		{"attached", modeState{env: ebpfEnv, pinned: true, attachments: attached}, "ebpf", "tcx", "2 program attachments"},
		{"mixed", modeState{env: ebpfEnv, pinned: true, attachments: append(attached, ebpf.Attachment{Ifindex: 2, Mode: ebpf.AttachTC})},
			"ebpf", "tc+tcx", "3 program attachments"},
		{"not attached", modeState{env: ebpfEnv, pinned: true}, "ebpf", "none", "no program is attached"},
		{"dead link", modeState{env: ebpfEnv, pinned: true, attachments: []ebpf.Attachment{{Mode: ebpf.AttachTCX}}},
			"ebpf", "none", "1 pinned links are dead"},
		{"stale pins", modeState{env: &subnetfile.Env{}, pinned: true, attachments: attached}, "ebpf", "tcx", "weftd --cleanup removes them"},
		{"no subnet file", modeState{pinned: true, attachments: attached}, "ebpf", "tcx", "no subnet file"},
		{"unsupported", modeState{supported: unsupported}, "kernel", "", "kernel too old"},
		{"supported, unused", modeState{env: &subnetfile.Env{}, supported: supported}, "kernel", "",
			"eBPF supported but not in use: Backend.Datapath is kernel or weftd has not started"},
		{"other pin dir", modeState{env: &subnetfile.Env{BPFDir: "/elsewhere"}, supported: supported}, "ebpf", "", "pass --bpf-dir /elsewhere"},
		{"pins gone", modeState{env: ebpfEnv, supported: supported}, "kernel", "", "nothing is pinned"},
	}
	for _, tt := range tests {
		tt.s.bpfDir = dir
		m := decideMode(tt.s)
		if m.Mode != tt.mode || m.Attach != tt.attach || !strings.Contains(m.Reason, tt.want) {
			t.Errorf("%s: %+v, want mode %s, attach %q, reason containing %q", tt.name, m, tt.mode, tt.attach, tt.want)
		}
	}
}

func vxlanLease(subnet, ip, mac string) leaseEntry {
	data, _ := json.Marshal(lease.VXLANData{VNI: 1, VtepMAC: mac})
	return leaseEntry{Lease: lease.Lease{Subnet: netip.MustParsePrefix(subnet),
		Attrs: lease.Attrs{PublicIP: netip.MustParseAddr(ip), BackendType: "vxlan", BackendData: data}}}
}

// dualLease is vxlanLease with an IPv6 half.
func dualLease(subnet, ip, mac, subnet6, ip6, mac6 string) leaseEntry {
	l := vxlanLease(subnet, ip, mac)
	data, _ := json.Marshal(lease.VXLANData{VNI: 1, VtepMAC: mac6})
	pub6 := netip.MustParseAddr(ip6)
	l.IPv6Subnet, l.Attrs.PublicIPv6, l.Attrs.BackendV6Data = netip.MustParsePrefix(subnet6), &pub6, data
	return l
}

func entry(subnet, ip, mac string, mode datapath.Mode) ebpf.PeerEntry {
	hw, _ := net.ParseMAC(mac)
	return ebpf.PeerEntry{Subnet: netip.MustParsePrefix(subnet), NodeIP: netip.MustParseAddr(ip), VtepMAC: hw, Mode: mode}
}

func TestComparePeers(t *testing.T) {
	own := netip.MustParsePrefix("10.244.1.0/24")
	entries := []ebpf.PeerEntry{
		entry("10.244.2.0/24", "10.0.0.2", "02:00:00:00:00:02", datapath.ModeVXLAN),
		entry("10.244.3.0/24", "10.0.0.3", "02:00:00:00:00:03", datapath.ModeVXLAN),
		entry("10.244.4.0/24", "10.0.0.4", "02:00:00:00:00:04", datapath.ModeVXLAN),
		entry("10.244.5.0/24", "10.0.0.5", "", datapath.ModeHostGW),
		entry("10.244.10.0/24", "10.0.0.10", "02:00:00:00:00:10", datapath.ModeVXLAN),
	}
	leases := []leaseEntry{
		vxlanLease("10.244.1.0/24", "10.0.0.1", "02:00:00:00:00:01"),
		vxlanLease("10.244.2.0/24", "10.0.0.2", "02:00:00:00:00:02"),
		vxlanLease("10.244.3.0/24", "10.0.0.33", "02:00:00:00:00:33"),
		vxlanLease("10.244.4.0/24", "10.0.0.4", "02:00:00:00:00:44"),
		// DirectRouting: host-gw in the map, the MAC is not compared.
		vxlanLease("10.244.5.0/24", "10.0.0.5", "02:00:00:00:00:05"),
		vxlanLease("10.244.6.0/24", "10.0.0.6", "02:00:00:00:00:06"),
	}
	got := comparePeers(entries, true, leases, true, own)
	want := map[string][]string{
		"10.244.1.0/24":  {statusOwn},
		"10.244.2.0/24":  {statusOK},
		"10.244.3.0/24":  {statusMismatch, mismatchNodeIP, mismatchVtepMAC},
		"10.244.4.0/24":  {statusMismatch, mismatchVtepMAC},
		"10.244.5.0/24":  {statusOK},
		"10.244.6.0/24":  {statusMismatch, mismatchMissingInMap},
		"10.244.10.0/24": {statusMismatch, mismatchMissingInLeases},
	}
	var order []string
	for _, r := range got {
		order = append(order, r.Subnet)
		if w := want[r.Subnet]; !slices.Equal(append([]string{r.Status}, r.Mismatch...), w) {
			t.Errorf("%s: %s %v, want %v", r.Subnet, r.Status, r.Mismatch, w)
		}
	}
	if wantOrder := []string{"10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24", "10.244.4.0/24",
		"10.244.5.0/24", "10.244.6.0/24", "10.244.10.0/24"}; !slices.Equal(order, wantOrder) {
		t.Errorf("order %v, want %v", order, wantOrder)
	}
	for _, r := range comparePeers(entries, true, nil, false, own) {
		if r.Status != statusUnchecked || r.Lease != nil || r.Map == nil {
			t.Errorf("maps only: %+v, want unchecked map rows", r)
		}
	}
	for _, r := range comparePeers(nil, false, leases, true, own) {
		if want := statusUnchecked; r.Subnet != own.String() && r.Status != want {
			t.Errorf("leases only: %+v, want %s", r, want)
		}
	}
}

// TestComparePeersIPv6: a dual-stack lease's IPv6 subnet is compared with
// its PublicIPv6 and BackendV6Data's VTEP MAC.
func TestComparePeersIPv6(t *testing.T) {
	entries := []ebpf.PeerEntry{
		entry("10.244.2.0/24", "10.0.0.2", "02:00:00:00:00:02", datapath.ModeVXLAN),
		entry("fd10:244:0:2::/64", "fd00::2", "02:00:00:00:06:02", datapath.ModeVXLAN),
		entry("10.244.3.0/24", "10.0.0.3", "02:00:00:00:00:03", datapath.ModeVXLAN),
		entry("fd10:244:0:3::/64", "fd00::3", "02:00:00:00:00:03", datapath.ModeVXLAN),
	}
	leases := []leaseEntry{
		dualLease("10.244.1.0/24", "10.0.0.1", "02:00:00:00:00:01", "fd10:244:0:1::/64", "fd00::1", "02:00:00:00:06:01"),
		dualLease("10.244.2.0/24", "10.0.0.2", "02:00:00:00:00:02", "fd10:244:0:2::/64", "fd00::2", "02:00:00:00:06:02"),
		// The v6 half has its own MAC; the map holds the IPv4 one.
		dualLease("10.244.3.0/24", "10.0.0.3", "02:00:00:00:00:03", "fd10:244:0:3::/64", "fd00::33", "02:00:00:00:06:03"),
	}
	want := map[string][]string{
		"10.244.1.0/24":     {statusOwn},
		"fd10:244:0:1::/64": {statusOwn},
		"10.244.2.0/24":     {statusOK},
		"fd10:244:0:2::/64": {statusOK},
		"10.244.3.0/24":     {statusOK},
		"fd10:244:0:3::/64": {statusMismatch, mismatchNodeIP, mismatchVtepMAC},
	}
	got := comparePeers(entries, true, leases, true, netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd10:244:0:1::/64"))
	if len(got) != len(want) {
		t.Errorf("%d rows, want %d: %+v", len(got), len(want), got)
	}
	for _, r := range got {
		if w := want[r.Subnet]; !slices.Equal(append([]string{r.Status}, r.Mismatch...), w) {
			t.Errorf("%s: %s %v, want %v", r.Subnet, r.Status, r.Mismatch, w)
		}
	}
}

func TestPeersTable(t *testing.T) {
	r := &peersReport{BPFDir: "/sys/fs/bpf/weft", LeaseSource: "etcd http://127.0.0.1:2379, prefix /coreos.com/network",
		Peers: comparePeers(
			[]ebpf.PeerEntry{entry("10.244.3.0/24", "10.0.0.3", "02:00:00:00:00:03", datapath.ModeVXLAN)}, true,
			[]leaseEntry{vxlanLease("10.244.3.0/24", "10.0.0.33", "02:00:00:00:00:03"), vxlanLease("10.244.9.0/24", "10.0.0.9", "02:00:00:00:00:09")},
			true, netip.Prefix{})}
	var b bytes.Buffer
	if err := render(&b, formatTable, r); err != nil {
		t.Fatal(err)
	}
	want := `Maps in /sys/fs/bpf/weft, leases from etcd http://127.0.0.1:2379, prefix /coreos.com/network
SUBNET         MAP NODE IP  MAP VTEP MAC       MAP MODE  LEASE NODE IP  LEASE VTEP MAC     LEASE BACKEND  STATUS
10.244.3.0/24  10.0.0.3     02:00:00:00:00:03  vxlan     10.0.0.33      02:00:00:00:00:03  vxlan          ! node ip differ
10.244.9.0/24  -            -                  -         10.0.0.9       02:00:00:00:00:09  vxlan          ! missing in map
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	if err := render(&b, formatJSON, r); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"bpf_dir"`, `"lease_source"`, `"own_subnet"`, `"peers"`, `"subnet": "10.244.3.0/24"`,
		`"map": {`, `"node_ip": "10.0.0.3"`, `"vtep_mac"`, `"mode": "vxlan"`, `"lease": {`, `"backend": "vxlan"`,
		`"status": "mismatch"`, `"mismatch": [`, `"node-ip"`, `"map": null`, `"missing-in-map"`} {
		if !strings.Contains(b.String(), field) {
			t.Errorf("JSON lacks %s:\n%s", field, b.String())
		}
	}
}

func TestRates(t *testing.T) {
	prev := []counterJSON{{Backend: "vxlan-ebpf", Direction: "tx", Packets: 100, Bytes: 10000}, {Backend: "vxlan-ebpf", Reason: "malformed", Packets: 7}}
	cur := []counterJSON{{Backend: "vxlan-ebpf", Direction: "tx", Packets: 300, Bytes: 30000}, {Backend: "vxlan-ebpf", Reason: "malformed", Packets: 2},
		{Backend: "vxlan-kernel", Direction: "rx", Packets: 4, Bytes: 40}}
	got := rates(prev, cur, 2*time.Second)
	want := [][2]float64{{100, 10000}, {1, 0}, {2, 20}} // a counter that went down counts from zero
	for i, r := range got {
		if r.PacketsPerSecond != want[i][0] || r.BytesPerSecond != want[i][1] {
			t.Errorf("rate %d: %+v, want %v", i, r, want[i])
		}
	}
}

func TestWatchCounters(t *testing.T) {
	n := uint64(0)
	read := func() ([]counterJSON, error) {
		n += 10
		return []counterJSON{{Backend: "vxlan-ebpf", Direction: "tx", Packets: n}}, nil
	}
	first, _ := read()
	var b bytes.Buffer
	if err := watchCounters(context.Background(), &b, formatJSON, read, first, time.Millisecond, 3); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d samples, want 3:\n%s", len(lines), b.String())
	}
	for _, l := range lines {
		var s sampleReport
		if err := json.Unmarshal([]byte(l), &s); err != nil || len(s.Counters) != 1 || s.Counters[0].PacketsPerSecond <= 0 ||
			s.IntervalSeconds <= 0 || !strings.Contains(l, `"packets_per_second"`) {
			t.Errorf("sample %s: %v", l, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b.Reset()
	if err := watchCounters(ctx, &b, formatTable, read, first, time.Hour, 0); err != nil || b.Len() != 0 {
		t.Errorf("cancelled watch: %v, printed %q", err, b.String())
	}
}

func TestMapName(t *testing.T) {
	for in, want := range map[string]string{"peers": "weft_peers", "weft_peers": "weft_peers", "pods": "weft_pods",
		"ct_requests": "weft_ct_requests", "nodes": "weft_nodes"} {
		if got, err := mapName(in); got != want || err != nil {
			t.Errorf("mapName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := mapName("routes"); err == nil || !strings.Contains(err.Error(), "weft_config") {
		t.Errorf("mapName(routes): %v, want the list of maps", err)
	}
	if _, err := mapName("stackflows"); err == nil {
		t.Error("mapName(stackflows) found the map weft no longer has")
	}
}

func TestExpiry(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	later := now.Add(90 * time.Minute)
	for _, tt := range []struct {
		l    leaseRowJSON
		want string
	}{
		{leaseRowJSON{Permanent: true}, "permanent"},
		{leaseRowJSON{}, "-"},
		{leaseRowJSON{Expires: &later}, "2026-01-01T01:30:00Z (in 1h30m0s)"},
	} {
		if got := expiry(tt.l, now); got != tt.want {
			t.Errorf("expiry(%+v) = %q, want %q", tt.l, got, tt.want)
		}
	}
}

// TestLeaseRows: a dual-stack lease is two rows, each with its half's
// public IP and VTEP MAC; an IPv6-only lease one.
func TestLeaseRows(t *testing.T) {
	dual := dualLease("10.244.2.0/24", "10.0.0.2", "02:00:00:00:00:02", "fd10:244:0:2::/64", "fd00::2", "02:00:00:00:06:02")
	v6only := dualLease("10.244.3.0/24", "10.0.0.3", "02:00:00:00:00:03", "fd10:244:0:3::/64", "fd00::3", "02:00:00:00:06:03")
	v6only.Subnet, v6only.Attrs.PublicIP, v6only.Attrs.BackendData = netip.Prefix{}, netip.Addr{}, nil
	var got []string
	for _, l := range []leaseEntry{dual, v6only} {
		for _, r := range leaseRows(l) {
			got = append(got, r.Subnet+" "+r.PublicIP+" "+r.VtepMAC)
		}
	}
	want := []string{
		"10.244.2.0/24 10.0.0.2 02:00:00:00:00:02",
		"fd10:244:0:2::/64 fd00::2 02:00:00:00:06:02",
		"fd10:244:0:3::/64 fd00::3 02:00:00:00:06:03",
	}
	if !slices.Equal(got, want) {
		t.Errorf("rows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

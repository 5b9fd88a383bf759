package main

import (
	"context"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/lease"
	"github.com/weftnet/weft/test/cluster"
	"github.com/weftnet/weft/test/testns"
)

// liveNode runs the built weftctl inside one node of a live cluster.
type liveNode struct {
	bin  string
	node *cluster.Node
	etcd string
}

// run runs weftctl with args (and the node's --bpf-dir/--subnet-file where
// the command takes them) and returns its stdout; it fails t on an error.
func (l liveNode) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := l.try(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (l liveNode) try(args ...string) (string, error) {
	out, _, err := l.node.RunWeftctl(context.Background(), l.bin, args...)
	return out, err
}

// json runs weftctl with -o json appended and decodes its output into v.
func (l liveNode) json(t *testing.T, v any, args ...string) {
	t.Helper()
	out := l.run(t, append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("weftctl %s: bad JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestLiveCluster checks weftctl's output against a two-node namespace
// cluster running weftd with the ebpf datapath, then again with weftd down
// and the leases changed behind its back.
func TestLiveCluster(t *testing.T) {
	testns.RequireRoot(t) // before building the binaries
	ctx := context.Background()
	dir := t.TempDir()
	bins, err := cluster.Build(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := cluster.BuildCommand(ctx, dir, "weftctl")
	if err != nil {
		t.Fatal(err)
	}
	c := cluster.Start(t, cluster.Options{Binaries: bins, Nodes: 2, NetConf: cluster.NetConf("vxlan", "ebpf", false)})
	var pods []*cluster.Pod
	for _, n := range c.Nodes {
		if err := n.WaitReady(ctx, time.Minute); err != nil {
			t.Fatal(err)
		}
		p, err := n.AddPod(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, p)
	}
	if err := pods[0].NS.WaitReach(ctx, pods[1].IP, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// TCP both ways: the fast path carries it once conntrack has the flow
	// established (pings take the kernel path).
	echo, err := pods[1].NS.ServeEcho(5201)
	must(t, err)
	t.Cleanup(func() { echo.Close() })
	must(t, pods[0].NS.EchoRoundTrip(ctx, netip.AddrPortFrom(pods[1].IP, 5201), 4<<20))
	n1, n2 := c.Nodes[0], c.Nodes[1]
	s1, err := n1.Subnet()
	must(t, err)
	s2, err := n2.Subnet()
	must(t, err)
	leases, err := c.Etcd.Leases(ctx)
	must(t, err)
	mac2 := vtepMAC(t, leases[s2])
	w := liveNode{bin: bin, node: n1, etcd: c.Etcd.Endpoint}

	t.Run("status", func(t *testing.T) {
		var st statusReport
		w.json(t, &st, "status")
		if st.Datapath.Mode != "ebpf" || st.Datapath.Attach != "tcx" || st.Lease == nil || st.Lease.Subnet != s1.String() ||
			st.Node == nil || st.Node.NodeIP != n1.IP.String() || st.Node.Backend != "vxlan" || st.Node.VtepMAC != vtepMAC(t, leases[s1]) {
			t.Errorf("status: %+v (node %+v)", st, st.Node)
		}
		var hooks []string
		for _, a := range st.Attachments {
			if a.ProgramID == 0 || a.LinkID == 0 || a.State != "attached" || a.Mode != "tcx" {
				t.Errorf("attachment %+v: want attached with tcx, program and link IDs", a)
			}
			hooks = append(hooks, a.Interface+" "+a.Hook+" "+a.Program)
		}
		// Every interface but the bridge, its veths and flannel.1 gets the
		// uplink's program; the node's pod veth sorts last (tcx_veth<hash>_ingress).
		want := []string{"cni0 ingress weft_pod_ingress", "eth0 ingress weft_uplink_ingress", "lo ingress weft_uplink_ingress"}
		if len(hooks) != len(want)+1 || !slices.Equal(hooks[:len(want)], want) ||
			!strings.HasPrefix(hooks[len(want)], "veth") || !strings.HasSuffix(hooks[len(want)], " ingress weft_veth_ingress") {
			t.Errorf("attachments %q, want %q and the pod veth's ingress weft_veth_ingress", hooks, want)
		}
		if p := counterOf(st.Counters, "vxlan-ebpf", "tx"); p == 0 {
			t.Errorf("no vxlan-ebpf tx packets after a TCP echo: %+v", st.Counters)
		}
		table := w.run(t, "status")
		for _, want := range []string{"Datapath:  ebpf, attached with tcx", s1.String(), "weft_uplink_ingress", "eth0", "vxlan-ebpf"} {
			if !strings.Contains(table, want) {
				t.Errorf("status table lacks %q:\n%s", want, table)
			}
		}
		t.Logf("weftctl status:\n%s", table)
	})

	t.Run("peers", func(t *testing.T) {
		var pr peersReport
		w.json(t, &pr, "peers", "--etcd-endpoints", w.etcd)
		want := []peerRowJSON{
			{Subnet: s1.String(), Lease: &peerLeaseJSON{NodeIP: n1.IP.String(), VtepMAC: vtepMAC(t, leases[s1]), Backend: "vxlan"}, Status: statusOwn},
			{Subnet: s2.String(), Map: &peerMapJSON{NodeIP: n2.IP.String(), VtepMAC: mac2, Mode: "vxlan"},
				Lease: &peerLeaseJSON{NodeIP: n2.IP.String(), VtepMAC: mac2, Backend: "vxlan"}, Status: statusOK},
		}
		if s2.Addr().Less(s1.Addr()) {
			want[0], want[1] = want[1], want[0]
		}
		if got, exp := mustJSON(t, pr.Peers), mustJSON(t, want); got != exp {
			t.Errorf("peers\n%s\nwant\n%s", got, exp)
		}
		table := w.run(t, "peers", "--etcd-endpoints", w.etcd)
		if !strings.Contains(table, s2.String()) || !strings.Contains(table, mac2) || !strings.Contains(table, " ok") {
			t.Errorf("peers table:\n%s", table)
		}
		t.Logf("weftctl peers:\n%s", table)
	})

	t.Run("maps", func(t *testing.T) {
		var d struct {
			Map     string          `json:"map"`
			Entries []peerEntryJSON `json:"entries"`
		}
		w.json(t, &d, "maps", "dump", "weft_peers")
		if want := []peerEntryJSON{{s2.String(), n2.IP.String(), mac2, "vxlan"}}; d.Map != "weft_peers" || !slices.Equal(d.Entries, want) {
			t.Errorf("maps dump weft_peers: %+v, want %+v", d, want)
		}
		table := w.run(t, "maps", "dump", "endpoints")
		if !strings.Contains(table, pods[0].IP.String()) {
			t.Errorf("endpoints dump lacks pod %s:\n%s", pods[0].IP, table)
		}
		var nodes struct {
			Entries []knownNodeJSON `json:"entries"`
		}
		w.json(t, &nodes, "maps", "dump", "nodes")
		if want := []knownNodeJSON{{NodeIP: n2.IP.String(), Leases: 1}}; !slices.Equal(nodes.Entries, want) {
			t.Errorf("maps dump nodes: %+v, want %+v", nodes.Entries, want)
		}
		// The pods map holds what the endpoints map holds, keyed by veth.
		var eps struct {
			Entries []endpointJSON `json:"entries"`
		}
		var pds struct {
			Entries []podJSON `json:"entries"`
		}
		w.json(t, &eps, "maps", "dump", "endpoints")
		w.json(t, &pds, "maps", "dump", "pods")
		if len(eps.Entries) != 1 || len(pds.Entries) != 1 || eps.Entries[0].IP != pods[0].IP.String() ||
			pds.Entries[0] != (podJSON{HostIfindex: eps.Entries[0].HostIfindex, IP: eps.Entries[0].IP, MAC: eps.Entries[0].MAC}) {
			t.Errorf("maps dump pods: %+v; want the pod of endpoints %+v", pds.Entries, eps.Entries)
		}
		if out, err := w.try("maps", "dump", "ct_requests"); err == nil ||
			!strings.Contains(err.Error(), "weft_ct_requests is a ring buffer that weftd consumes: it has nothing to dump") {
			t.Errorf("maps dump ct_requests: %q, %v; want a refusal", out, err)
		}
		var list mapsReport
		w.json(t, &list, "maps", "list")
		var names []string
		for _, m := range list.Maps {
			names = append(names, m.Name)
			if m.ID == 0 {
				t.Errorf("map %+v has no ID", m)
			}
		}
		if want := []string{"weft_config", "weft_ct_requests", "weft_drops", "weft_endpoints", "weft_nodes", "weft_peers",
			"weft_pods", "weft_traffic"}; !slices.Equal(names, want) {
			t.Errorf("maps list: %q, want %q", names, want)
		}
		for _, m := range []string{"config", "peers", "nodes", "pods", "traffic", "drops"} {
			t.Logf("weftctl maps dump %s:\n%s", m, w.run(t, "maps", "dump", m))
		}
		t.Logf("weftctl maps:\n%s", w.run(t, "maps"))
	})

	t.Run("counters", func(t *testing.T) {
		var cr countersReport
		w.json(t, &cr, "counters")
		if counterOf(cr.Counters, "vxlan-ebpf", "tx") == 0 || counterOf(cr.Counters, "vxlan-ebpf", "rx") == 0 {
			t.Errorf("counters %+v: want vxlan-ebpf traffic both ways", cr.Counters)
		}
		out := w.run(t, "counters", "--watch", "--interval", "200ms", "--count", "2", "-o", "json")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		for _, l := range lines {
			var s sampleReport
			if err := json.Unmarshal([]byte(l), &s); err != nil || s.IntervalSeconds <= 0 || len(s.Counters) != len(cr.Counters) {
				t.Errorf("watch sample %q: %v", l, err)
			}
		}
		if len(lines) != 2 {
			t.Errorf("--count 2 printed %d samples:\n%s", len(lines), out)
		}
		t.Logf("weftctl counters:\n%s", w.run(t, "counters"))
	})

	t.Run("leases", func(t *testing.T) {
		var lr leasesReport
		w.json(t, &lr, "leases", "--etcd-endpoints", w.etcd)
		if len(lr.Leases) != 2 {
			t.Fatalf("leases %+v, want 2", lr.Leases)
		}
		for _, l := range lr.Leases {
			want := n1.IP.String()
			if l.Subnet == s2.String() {
				want = n2.IP.String()
			}
			if l.PublicIP != want || l.Backend != "vxlan" || l.VtepMAC == "" || l.Permanent || l.Expires == nil ||
				time.Until(*l.Expires) <= 0 || time.Until(*l.Expires) > 24*time.Hour {
				t.Errorf("lease %+v: want node %s, vxlan, expiring within 24h", l, want)
			}
		}
		t.Logf("weftctl leases:\n%s", w.run(t, "leases", "--etcd-endpoints", w.etcd))
	})

	t.Run("weftd down, leases changed", func(t *testing.T) {
		for _, n := range c.Nodes {
			must(t, n.StopWeftd(syscall.SIGTERM))
		}
		moved := leases[s2]
		moved.PublicIP = netip.MustParseAddr("10.250.0.99")
		moved.BackendData = json.RawMessage(`{"VNI":1,"VtepMAC":"02:00:00:00:00:99"}`)
		stray := netip.MustParsePrefix("10.244.99.0/24")
		for subnet, a := range map[netip.Prefix]lease.Attrs{s2: moved, stray: moved} {
			b, err := json.Marshal(a)
			must(t, err)
			must(t, c.Etcd.Put(ctx, cluster.SubnetKey(subnet), string(b)))
		}
		var st statusReport
		w.json(t, &st, "status")
		if st.Datapath.Mode != "ebpf" || len(st.Attachments) != 4 {
			t.Errorf("status with weftd down: %+v", st)
		}
		var pr peersReport
		w.json(t, &pr, "peers", "--etcd-endpoints", w.etcd)
		got := map[string][]string{}
		for _, p := range pr.Peers {
			got[p.Subnet] = p.Mismatch
		}
		if !slices.Equal(got[s2.String()], []string{mismatchNodeIP, mismatchVtepMAC}) ||
			!slices.Equal(got[stray.String()], []string{mismatchMissingInMap}) {
			t.Errorf("mismatches %v, want node-ip and vtep-mac for %s, missing-in-map for %s", got, s2, stray)
		}
		table := w.run(t, "peers", "--etcd-endpoints", w.etcd)
		if !strings.Contains(table, "! node ip, vtep mac differ") || !strings.Contains(table, "! missing in map") {
			t.Errorf("peers table lacks the mismatch markers:\n%s", table)
		}
		t.Logf("weftctl peers after the lease changes:\n%s", table)
		var lr leasesReport
		w.json(t, &lr, "leases", "--etcd-endpoints", w.etcd)
		for _, l := range lr.Leases {
			if l.Subnet == stray.String() && (!l.Permanent || l.Expires != nil) {
				t.Errorf("lease without etcd lease %+v: want permanent", l)
			}
		}
	})
}

// vtepMAC is the VTEP MAC of a vxlan lease's attrs.
func vtepMAC(t *testing.T, a lease.Attrs) string {
	t.Helper()
	mac, err := lease.Lease{Attrs: a}.VtepMAC()
	must(t, err)
	return mac.String()
}

func counterOf(cs []counterJSON, backend, direction string) uint64 {
	for _, c := range cs {
		if c.Backend == backend && c.Direction == direction {
			return c.Packets
		}
	}
	return 0
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	must(t, err)
	return string(b)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

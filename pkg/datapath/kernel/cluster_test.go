package kernel_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/datapath/kernel"
	"github.com/weftnet/weft/test/testns"
)

// The test underlay: a router namespace with two bridged segments,
//
//	segment A 192.168.10.0/24 (router .254): node 1 (.1), node 2 (.2)
//	segment B 192.168.20.0/24 (router .254): node 3 (.3)
//
// Node i owns pod subnet 10.244.i.0/24 and has a pod namespace behind a veth
// (node side 10.244.i.1, pod 10.244.i.10), like a CNI bridge would give it.
var testNetwork = netip.MustParsePrefix("10.244.0.0/16")

// testNode is one node namespace with its pod and its datapath.
type testNode struct {
	ns, pod *testns.NS
	node    datapath.Node
	subnet  netip.Prefix
	podIP   netip.Addr
	dp      *kernel.Datapath
	info    datapath.Info
	// given is the peer set the datapath was last given (Sync or Apply).
	given []datapath.Peer
}

// newCluster builds the underlay with nodes 1..3 for backend.
func newCluster(t *testing.T, backend datapath.Mode, directRouting bool) []*testNode {
	t.Helper()
	prefix := testns.Prefix()
	router := testns.New(t, prefix, "r")
	router.MustRun(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	for seg, gw := range map[string]string{"brA": "192.168.10.254/24", "brB": "192.168.20.254/24"} {
		router.MustRun(t, "ip", "link", "add", seg, "type", "bridge")
		router.MustRun(t, "ip", "addr", "add", gw, "dev", seg)
		router.MustRun(t, "ip", "link", "set", seg, "up")
	}
	var nodes []*testNode
	for i := 1; i <= 3; i++ {
		seg, lan, other := "brA", "192.168.10", "192.168.20.0/24"
		if i == 3 {
			seg, lan, other = "brB", "192.168.20", "192.168.10.0/24"
		}
		n := &testNode{
			ns:     testns.New(t, prefix, fmt.Sprintf("n%d", i)),
			pod:    testns.New(t, prefix, fmt.Sprintf("p%d", i)),
			subnet: netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i)),
			podIP:  netip.MustParseAddr(fmt.Sprintf("10.244.%d.10", i)),
			dp:     kernel.New(),
			node: datapath.Node{
				NodeIP:        netip.MustParseAddr(fmt.Sprintf("%s.%d", lan, i)),
				Uplink:        "eth0",
				Network:       testNetwork,
				Backend:       backend,
				VNI:           1,
				DirectRouting: directRouting,
			},
		}
		port := fmt.Sprintf("v%d", i)
		router.MustRun(t, "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", n.ns.Name)
		router.MustRun(t, "ip", "link", "set", port, "master", seg, "up")
		n.ns.MustRun(t, "ip", "addr", "add", n.node.NodeIP.String()+"/24", "dev", "eth0")
		n.ns.MustRun(t, "ip", "link", "set", "eth0", "up")
		n.ns.MustRun(t, "ip", "route", "add", other, "via", lan+".254")

		n.ns.MustRun(t, "ip", "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns", n.pod.Name)
		n.ns.MustRun(t, "ip", "addr", "add", fmt.Sprintf("10.244.%d.1/24", i), "dev", "veth0")
		n.ns.MustRun(t, "ip", "link", "set", "veth0", "up")
		n.pod.MustRun(t, "ip", "addr", "add", n.podIP.String()+"/24", "dev", "eth0")
		n.pod.MustRun(t, "ip", "link", "set", "eth0", "up")
		n.pod.MustRun(t, "ip", "route", "add", "default", "via", fmt.Sprintf("10.244.%d.1", i))
		nodes = append(nodes, n)
	}
	return nodes
}

// setup runs Setup and SetSubnet in n's namespace.
func (n *testNode) setup(t *testing.T) {
	t.Helper()
	err := n.ns.Do(func() error {
		info, err := n.dp.Setup(context.Background(), n.node)
		if err != nil {
			return err
		}
		n.info = info
		return n.dp.SetSubnet(context.Background(), n.subnet)
	})
	if err != nil {
		t.Fatalf("%s: setup: %v", n.ns.Name, err)
	}
}

// sync runs Sync in n's namespace.
func (n *testNode) sync(peers []datapath.Peer) error {
	n.given = peers
	return n.ns.Do(func() error { return n.dp.Sync(context.Background(), peers) })
}

// mustSync is sync that fails t on error.
func (n *testNode) mustSync(t *testing.T, peers []datapath.Peer) {
	t.Helper()
	if err := n.sync(peers); err != nil {
		t.Fatalf("%s: sync: %v", n.ns.Name, err)
	}
}

// apply runs Apply in n's namespace with the change from the peer set the
// datapath was last given to peers.
func (n *testNode) apply(peers []datapath.Peer) error {
	ch := datapath.Changes{Set: peers}
	for _, p := range n.given {
		if !slices.ContainsFunc(peers, func(q datapath.Peer) bool { return q.Key() == p.Key() }) {
			ch.Removed = append(ch.Removed, p.Key())
		}
	}
	n.given = peers
	return n.ns.Do(func() error { return n.dp.Apply(context.Background(), ch) })
}

// mustApply is apply that fails t on error.
func (n *testNode) mustApply(t *testing.T, peers []datapath.Peer) {
	t.Helper()
	if err := n.apply(peers); err != nil {
		t.Fatalf("%s: apply: %v", n.ns.Name, err)
	}
}

// peer is n as its lease describes it to others.
func (n *testNode) peer() datapath.Peer {
	return datapath.Peer{Subnet: n.subnet, NodeIP: n.node.NodeIP, VtepMAC: n.info.VtepMAC}
}

// peersOf returns the peers of every node in nodes but self.
func peersOf(self *testNode, nodes []*testNode) []datapath.Peer {
	var peers []datapath.Peer
	for _, n := range nodes {
		if n != self {
			peers = append(peers, n.peer())
		}
	}
	return peers
}

// setupAll runs Setup on every node, then Sync with all the others.
func setupAll(t *testing.T, nodes []*testNode) {
	t.Helper()
	for _, n := range nodes {
		n.setup(t)
	}
	for _, n := range nodes {
		n.mustSync(t, peersOf(n, nodes))
	}
}

// stats reads n's datapath counters.
func (n *testNode) stats(t *testing.T) []datapath.Counter {
	t.Helper()
	var cs []datapath.Counter
	err := n.ns.Do(func() (err error) {
		cs, err = n.dp.Stats()
		return err
	})
	if err != nil {
		t.Fatalf("%s: stats: %v", n.ns.Name, err)
	}
	return cs
}

// ping pings dst from n's pod until it answers or the deadline passes.
func (n *testNode) ping(t *testing.T, dst netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := n.pod.Run("ping", "-c1", "-W1", dst.String())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s cannot reach %s: %v", n.podIP, dst, err)
		}
	}
}

// ipJSON runs ip -j (or bridge -j with tool) in n and decodes its output.
func (n *testNode) ipJSON(t *testing.T, tool string, out any, args ...string) {
	t.Helper()
	s := n.ns.MustRun(t, tool, append([]string{"-j"}, args...)...)
	if strings.TrimSpace(s) == "" {
		s = "[]"
	}
	if err := json.Unmarshal([]byte(s), out); err != nil {
		t.Fatalf("decode %s %v: %v: %s", tool, args, err, s)
	}
}

// ipRoute is a route as ip -j route prints it.
type ipRoute struct {
	Dst     string   `json:"dst"`
	Gateway string   `json:"gateway"`
	Dev     string   `json:"dev"`
	Flags   []string `json:"flags"`
}

func (r ipRoute) String() string {
	s := r.Dst
	if r.Gateway != "" {
		s += " via " + r.Gateway
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	for _, f := range r.Flags {
		s += " " + f
	}
	return s
}

// routes lists n's main-table IPv4 routes (args filter, e.g. "dev", "eth0").
func (n *testNode) routes(t *testing.T, args ...string) []string {
	t.Helper()
	var rs []ipRoute
	n.ipJSON(t, "ip", &rs, append([]string{"-4", "route", "show"}, args...)...)
	var out []string
	for _, r := range rs {
		out = append(out, r.String())
	}
	slices.Sort(out)
	return out
}

// vxlanState is what the kernel datapath programs on flannel.1.
type vxlanState struct {
	Routes, Neighs, FDB, Addrs []string
}

// vxlan reads n's flannel.1 routes, neighbours, fdb and IPv4 addresses.
func (n *testNode) vxlan(t *testing.T) vxlanState {
	t.Helper()
	var s vxlanState
	s.Routes = n.routes(t, "dev", "flannel.1")
	var neighs []struct {
		Dst    string   `json:"dst"`
		LLAddr string   `json:"lladdr"`
		State  []string `json:"state"`
	}
	n.ipJSON(t, "ip", &neighs, "-4", "neigh", "show", "dev", "flannel.1")
	for _, e := range neighs {
		s.Neighs = append(s.Neighs, fmt.Sprintf("%s %s %s", e.Dst, e.LLAddr, strings.Join(e.State, ",")))
	}
	var fdb []struct {
		MAC   string   `json:"mac"`
		Dst   string   `json:"dst"`
		Flags []string `json:"flags"`
		State string   `json:"state"`
	}
	n.ipJSON(t, "bridge", &fdb, "fdb", "show", "dev", "flannel.1")
	for _, e := range fdb {
		s.FDB = append(s.FDB, fmt.Sprintf("%s dst %s %s %s", e.MAC, e.Dst, strings.Join(e.Flags, ","), e.State))
	}
	var addrs []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	n.ipJSON(t, "ip", &addrs, "-4", "addr", "show", "dev", "flannel.1")
	for _, a := range addrs {
		for _, ai := range a.AddrInfo {
			s.Addrs = append(s.Addrs, fmt.Sprintf("%s/%d", ai.Local, ai.PrefixLen))
		}
	}
	slices.Sort(s.Neighs)
	slices.Sort(s.FDB)
	return s
}

// wantVXLAN is the flannel.1 state FLANNEL-COMPAT.md asks of n for peers.
func wantVXLAN(n *testNode, peers []*testNode) vxlanState {
	s := vxlanState{Addrs: []string{n.subnet.Addr().String() + "/32"}}
	for _, p := range peers {
		gw := p.subnet.Addr().String()
		s.Routes = append(s.Routes, fmt.Sprintf("%s via %s onlink", p.subnet, gw))
		s.Neighs = append(s.Neighs, fmt.Sprintf("%s %s PERMANENT", gw, p.info.VtepMAC))
		s.FDB = append(s.FDB, fmt.Sprintf("%s dst %s self permanent", p.info.VtepMAC, p.node.NodeIP))
	}
	slices.Sort(s.Routes)
	slices.Sort(s.Neighs)
	slices.Sort(s.FDB)
	s.FDB = slices.Compact(s.FDB) // a node with several subnets has one entry
	return s
}

// checkVXLAN fails t unless n's flannel.1 state is exactly what peers ask.
func checkVXLAN(t *testing.T, n *testNode, peers ...*testNode) {
	t.Helper()
	got, want := n.vxlan(t), wantVXLAN(n, peers)
	if !slices.Equal(got.Routes, want.Routes) || !slices.Equal(got.Neighs, want.Neighs) ||
		!slices.Equal(got.FDB, want.FDB) || !slices.Equal(got.Addrs, want.Addrs) {
		t.Fatalf("%s: flannel.1 state\n got  %+v\n want %+v", n.ns.Name, got, want)
	}
}

// linkInfo is the part of ip -d -j link show this test checks.
type linkInfo struct {
	Flags    []string `json:"flags"`
	MTU      int      `json:"mtu"`
	Address  string   `json:"address"`
	LinkInfo struct {
		Kind string `json:"info_kind"`
		Data struct {
			ID       int    `json:"id"`
			Local    string `json:"local"`
			Link     string `json:"link"`
			Port     int    `json:"port"`
			Learning bool   `json:"learning"`
			GBP      bool   `json:"gbp"`
		} `json:"info_data"`
	} `json:"linkinfo"`
}

// device reads flannel.<vni> in n.
func (n *testNode) device(t *testing.T, vni int) linkInfo {
	t.Helper()
	var ls []linkInfo
	n.ipJSON(t, "ip", &ls, "-d", "link", "show", kernel.DeviceName(vni))
	if len(ls) != 1 {
		t.Fatalf("%s: %d links named %s", n.ns.Name, len(ls), kernel.DeviceName(vni))
	}
	return ls[0]
}

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
//
// With IPv6 the segments are also fd00:10::/64 and fd00:20::/64 (router
// ::254, node i ::i) and node i also owns fd10:244:0:i::/64 (node side ::1,
// pod ::10); an IPv6-only cluster has no IPv4 address anywhere.
var (
	testNetwork   = netip.MustParsePrefix("10.244.0.0/16")
	testNetwork6  = netip.MustParsePrefix("fd10:244::/56")
	testSegments6 = [2]string{"fd00:10::", "fd00:20::"}
)

// stack is the address families a test cluster runs.
type stack int

const (
	ipv4Only stack = iota
	dualStack
	ipv6Only
)

// testNode is one node namespace with its pod and its datapath.
type testNode struct {
	ns, pod *testns.NS
	node    datapath.Node
	// subnet and podIP are the IPv4 ones, subnet6 and podIP6 the IPv6
	// ones; invalid when the family is off.
	subnet, subnet6 netip.Prefix
	podIP, podIP6   netip.Addr
	dp              *kernel.Datapath
	info            datapath.Info
	// given is the peer set the datapath was last given (Sync or Apply).
	given []datapath.Peer
}

// newCluster builds the IPv4 underlay with nodes 1..3 for backend.
func newCluster(t *testing.T, backend datapath.Mode, directRouting bool) []*testNode {
	t.Helper()
	return newStackCluster(t, backend, directRouting, ipv4Only)
}

// newStackCluster builds the underlay of the families st with nodes 1..3
// for backend.
func newStackCluster(t *testing.T, backend datapath.Mode, directRouting bool, st stack) []*testNode {
	t.Helper()
	v4, v6 := st != ipv6Only, st != ipv4Only
	prefix := testns.Prefix()
	router := testns.New(t, prefix, "r")
	router.MustRun(t, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	for s, seg := range []string{"brA", "brB"} {
		router.MustRun(t, "ip", "link", "add", seg, "type", "bridge")
		if v4 {
			router.MustRun(t, "ip", "addr", "add", fmt.Sprintf("192.168.%d0.254/24", s+1), "dev", seg)
		}
		if v6 {
			router.MustRun(t, "ip", "addr", "add", testSegments6[s]+"254/64", "dev", seg, "nodad")
		}
		router.MustRun(t, "ip", "link", "set", seg, "up")
	}
	var nodes []*testNode
	for i := 1; i <= 3; i++ {
		s := 0
		if i == 3 {
			s = 1
		}
		n := &testNode{
			ns:  testns.New(t, prefix, fmt.Sprintf("n%d", i)),
			pod: testns.New(t, prefix, fmt.Sprintf("p%d", i)),
			dp:  kernel.New(),
			node: datapath.Node{
				Uplink:        "eth0",
				Backend:       backend,
				VNI:           1,
				DirectRouting: directRouting,
			},
		}
		port := fmt.Sprintf("v%d", i)
		router.MustRun(t, "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", n.ns.Name)
		router.MustRun(t, "ip", "link", "set", port, "master", []string{"brA", "brB"}[s], "up")
		n.ns.MustRun(t, "ip", "link", "set", "eth0", "up")
		n.ns.MustRun(t, "ip", "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns", n.pod.Name)
		if v4 {
			lan := fmt.Sprintf("192.168.%d0", s+1)
			n.node.NodeIP, n.node.Network = netip.MustParseAddr(fmt.Sprintf("%s.%d", lan, i)), testNetwork
			n.subnet = netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i))
			n.podIP = netip.MustParseAddr(fmt.Sprintf("10.244.%d.10", i))
			n.ns.MustRun(t, "ip", "addr", "add", n.node.NodeIP.String()+"/24", "dev", "eth0")
			n.ns.MustRun(t, "ip", "route", "add", fmt.Sprintf("192.168.%d0.0/24", 2-s), "via", lan+".254", "dev", "eth0")
			n.ns.MustRun(t, "ip", "addr", "add", fmt.Sprintf("10.244.%d.1/24", i), "dev", "veth0")
			n.pod.MustRun(t, "ip", "addr", "add", n.podIP.String()+"/24", "dev", "eth0")
		}
		if v6 {
			n.node.NodeIPv6, n.node.IPv6Network = netip.MustParseAddr(fmt.Sprintf("%s%d", testSegments6[s], i)), testNetwork6
			n.subnet6 = netip.MustParsePrefix(fmt.Sprintf("fd10:244:0:%d::/64", i))
			n.podIP6 = netip.MustParseAddr(fmt.Sprintf("fd10:244:0:%d::10", i))
			n.ns.MustRun(t, "ip", "addr", "add", n.node.NodeIPv6.String()+"/64", "dev", "eth0", "nodad")
			n.ns.MustRun(t, "ip", "route", "add", testSegments6[1-s]+"/64", "via", testSegments6[s]+"254", "dev", "eth0")
			n.ns.MustRun(t, "ip", "addr", "add", fmt.Sprintf("fd10:244:0:%d::1/64", i), "dev", "veth0", "nodad")
			n.pod.MustRun(t, "ip", "addr", "add", n.podIP6.String()+"/64", "dev", "eth0", "nodad")
		}
		n.ns.MustRun(t, "ip", "link", "set", "veth0", "up")
		n.pod.MustRun(t, "ip", "link", "set", "eth0", "up")
		if v4 {
			n.pod.MustRun(t, "ip", "route", "add", "default", "via", fmt.Sprintf("10.244.%d.1", i))
		}
		if v6 {
			n.pod.MustRun(t, "ip", "-6", "route", "add", "default", "via", fmt.Sprintf("fd10:244:0:%d::1", i))
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// setup runs Setup and SetSubnet (per family) in n's namespace.
func (n *testNode) setup(t *testing.T) {
	t.Helper()
	err := n.ns.Do(func() error {
		info, err := n.dp.Setup(context.Background(), n.node)
		if err != nil {
			return err
		}
		n.info = info
		for _, sub := range []netip.Prefix{n.subnet, n.subnet6} {
			if !sub.IsValid() {
				continue
			}
			if err := n.dp.SetSubnet(context.Background(), sub); err != nil {
				return err
			}
		}
		return nil
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

// peer is n's IPv4 half as its lease describes it to others.
func (n *testNode) peer() datapath.Peer {
	return datapath.Peer{Subnet: n.subnet, NodeIP: n.node.NodeIP, VtepMAC: n.info.VtepMAC}
}

// peers is n as its lease describes it to others: a peer per family.
func (n *testNode) peers() []datapath.Peer {
	var peers []datapath.Peer
	if n.subnet.IsValid() {
		peers = append(peers, n.peer())
	}
	if n.subnet6.IsValid() {
		peers = append(peers, datapath.Peer{Subnet: n.subnet6, NodeIP: n.node.NodeIPv6, VtepMAC: n.info.VtepMACv6})
	}
	return peers
}

// peersOf returns the peers of every node in nodes but self.
func peersOf(self *testNode, nodes []*testNode) []datapath.Peer {
	var peers []datapath.Peer
	for _, n := range nodes {
		if n != self {
			peers = append(peers, n.peers()...)
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

// checkTraffic fails t unless n's vxlan counters (of device dev) saw
// packets in both directions.
func checkTraffic(t *testing.T, n *testNode, dev string) {
	t.Helper()
	var rx, tx uint64
	for _, c := range n.stats(t) {
		if c.Backend != "vxlan-kernel" {
			t.Errorf("counter %+v has backend %q", c, c.Backend)
		}
		switch c.Direction {
		case "rx":
			rx = c.Packets
		case "tx":
			tx = c.Packets
		}
	}
	if rx == 0 || tx == 0 {
		t.Errorf("%s counters rx=%d tx=%d after traffic", dev, rx, tx)
	}
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

// pingAll pings every node's pod from every other node's pod, at the
// pod's address of each family in fams.
func pingAll(t *testing.T, nodes []*testNode, fams ...testFamily) {
	t.Helper()
	for _, a := range nodes {
		for _, b := range nodes {
			for _, f := range fams {
				if a != b {
					a.ping(t, f.podIP(b))
				}
			}
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

// testFamily is one address family as the tests read the kernel state.
type testFamily struct {
	// flag is ip's family flag; device names the vxlan device by VNI.
	flag   string
	device func(vni int) string
	// hostBits is the prefix length of the vxlan device's address.
	hostBits int
	// network is the test network of the family.
	network netip.Prefix
	// subnet, podIP, nodeIP and mac give a node's subnet, pod address,
	// node IP and VTEP MAC of the family.
	subnet func(n *testNode) netip.Prefix
	podIP  func(n *testNode) netip.Addr
	nodeIP func(n *testNode) netip.Addr
	mac    func(n *testNode) string
}

var (
	fam4 = testFamily{flag: "-4", device: kernel.DeviceName, hostBits: 32, network: testNetwork,
		subnet: func(n *testNode) netip.Prefix { return n.subnet },
		podIP:  func(n *testNode) netip.Addr { return n.podIP },
		nodeIP: func(n *testNode) netip.Addr { return n.node.NodeIP },
		mac:    func(n *testNode) string { return n.info.VtepMAC.String() }}
	fam6 = testFamily{flag: "-6", device: kernel.DeviceNameV6, hostBits: 128, network: testNetwork6,
		subnet: func(n *testNode) netip.Prefix { return n.subnet6 },
		podIP:  func(n *testNode) netip.Addr { return n.podIP6 },
		nodeIP: func(n *testNode) netip.Addr { return n.node.NodeIPv6 },
		mac:    func(n *testNode) string { return n.info.VtepMACv6.String() }}
)

// routes lists n's main-table IPv4 routes (args filter, e.g. "dev", "eth0").
func (n *testNode) routes(t *testing.T, args ...string) []string {
	t.Helper()
	return n.familyRoutes(t, fam4, args...)
}

// familyRoutes lists n's main-table routes of family f (args filter, e.g.
// "dev", "eth0"; "proto", "boot" leaves out the kernel's own).
func (n *testNode) familyRoutes(t *testing.T, f testFamily, args ...string) []string {
	t.Helper()
	var rs []ipRoute
	n.ipJSON(t, "ip", &rs, append([]string{f.flag, "route", "show"}, args...)...)
	var out []string
	for _, r := range rs {
		out = append(out, r.String())
	}
	slices.Sort(out)
	return out
}

// vxlanState is what the kernel datapath programs on a vxlan device.
type vxlanState struct {
	Routes, Neighs, FDB, Addrs []string
}

// vxlan reads n's flannel.1 routes, neighbours, fdb and IPv4 addresses.
func (n *testNode) vxlan(t *testing.T) vxlanState {
	t.Helper()
	return n.vxlanOf(t, fam4)
}

// vxlanOf reads the routes, neighbours, fdb and addresses of family f's
// vxlan device (VNI 1) in n; IPv6 link-local addresses (the kernel's) are
// left out.
func (n *testNode) vxlanOf(t *testing.T, f testFamily) vxlanState {
	t.Helper()
	var s vxlanState
	dev := f.device(1)
	s.Routes = n.familyRoutes(t, f, "dev", dev, "proto", "boot")
	var neighs []struct {
		Dst    string   `json:"dst"`
		LLAddr string   `json:"lladdr"`
		State  []string `json:"state"`
	}
	n.ipJSON(t, "ip", &neighs, f.flag, "neigh", "show", "dev", dev)
	for _, e := range neighs {
		s.Neighs = append(s.Neighs, fmt.Sprintf("%s %s %s", e.Dst, e.LLAddr, strings.Join(e.State, ",")))
	}
	var fdb []struct {
		MAC   string   `json:"mac"`
		Dst   string   `json:"dst"`
		Flags []string `json:"flags"`
		State string   `json:"state"`
	}
	n.ipJSON(t, "bridge", &fdb, "fdb", "show", "dev", dev)
	for _, e := range fdb {
		s.FDB = append(s.FDB, fmt.Sprintf("%s dst %s %s %s", e.MAC, e.Dst, strings.Join(e.Flags, ","), e.State))
	}
	var addrs []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
			Scope     string `json:"scope"`
		} `json:"addr_info"`
	}
	n.ipJSON(t, "ip", &addrs, f.flag, "addr", "show", "dev", dev)
	for _, a := range addrs {
		for _, ai := range a.AddrInfo {
			if ai.Scope != "link" {
				s.Addrs = append(s.Addrs, fmt.Sprintf("%s/%d", ai.Local, ai.PrefixLen))
			}
		}
	}
	slices.Sort(s.Neighs)
	slices.Sort(s.FDB)
	return s
}

// wantVXLAN is the state FLANNEL-COMPAT.md asks of n's family f device
// for peers.
func wantVXLAN(n *testNode, f testFamily, peers []*testNode) vxlanState {
	s := vxlanState{Addrs: []string{fmt.Sprintf("%s/%d", f.subnet(n).Addr(), f.hostBits)}}
	for _, p := range peers {
		gw := f.subnet(p).Addr().String()
		s.Routes = append(s.Routes, fmt.Sprintf("%s via %s onlink", f.subnet(p), gw))
		s.Neighs = append(s.Neighs, fmt.Sprintf("%s %s PERMANENT", gw, f.mac(p)))
		s.FDB = append(s.FDB, fmt.Sprintf("%s dst %s self permanent", f.mac(p), f.nodeIP(p)))
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
	checkVXLANOf(t, fam4, n, peers...)
}

// checkVXLANOf fails t unless the state of n's family f device is exactly
// what peers ask.
func checkVXLANOf(t *testing.T, f testFamily, n *testNode, peers ...*testNode) {
	t.Helper()
	got, want := n.vxlanOf(t, f), wantVXLAN(n, f, peers)
	if !slices.Equal(got.Routes, want.Routes) || !slices.Equal(got.Neighs, want.Neighs) ||
		!slices.Equal(got.FDB, want.FDB) || !slices.Equal(got.Addrs, want.Addrs) {
		t.Fatalf("%s: %s state\n got  %+v\n want %+v", n.ns.Name, f.device(1), got, want)
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
			Local6   string `json:"local6"`
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
	return n.link(t, kernel.DeviceName(vni))
}

// link reads the link named name in n.
func (n *testNode) link(t *testing.T, name string) linkInfo {
	t.Helper()
	var ls []linkInfo
	n.ipJSON(t, "ip", &ls, "-d", "link", "show", name)
	if len(ls) != 1 {
		t.Fatalf("%s: %d links named %s", n.ns.Name, len(ls), name)
	}
	return ls[0]
}

package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/datapath/ebpf"
	"github.com/weftnet/weft/test/cluster"
)

const (
	// kubeScaleNodes is how many synthetic Node objects the API server
	// holds before the timed events.
	kubeScaleNodes = 3000
	// kubeScaleAdds, kubeScaleDeletes and kubeScaleChanges are how many
	// Nodes are added, deleted and given a new public-ip, one at a time.
	kubeScaleAdds    = 50
	kubeScaleDeletes = 5
	kubeScaleChanges = 5
	// kubeScaleWorkers is how many Create requests are in flight while
	// the synthetic Nodes are set up.
	kubeScaleWorkers = 16
	// kubeScaleSetup bounds how long weftd may take to program all the
	// synthetic Nodes after the first Create.
	kubeScaleSetup = 90 * time.Second
	// kubeEventBound is the most one Node event may take from the API
	// call's return until the node's datapath reflects it. Issue 13's
	// target for a new lease is a p99 of 10 ms (etcd, quiet machine); here
	// the event also crosses kube-apiserver's watch cache and weftd's
	// informer, on a 2-core machine shared with other tests. The bound is
	// for correctness, 200 times that target: it fails when an event costs
	// seconds (work proportional to thousands of Nodes) or is lost, not
	// when the machine is busy. The logged p50/p99/max are the figures.
	kubeEventBound = 2 * time.Second
	// kubeEventLost is how long a timed event is waited for at all, so a
	// slow event is told from a lost one.
	kubeEventLost = 5 * kubeEventBound
	// kubeEventPoll is how often a timed event's probe looks.
	kubeEventPoll = time.Millisecond
)

// TestKubeScale runs one node in kube mode against thousands of synthetic
// Node objects on the real API server (issue 13): weftd must program them
// all, and then each added, deleted or changed Node must reach its
// datapath within kubeEventBound of the API call, measured by polling the
// datapath every millisecond. Per datapath, with the vxlan backend.
func TestKubeScale(t *testing.T) {
	for _, tc := range datapathCases {
		if tc.backend != "vxlan" {
			continue
		}
		t.Run(tc.datapath+"/"+tc.backend, func(t *testing.T) {
			c := start(t, cluster.Options{Nodes: 1, Kube: true, NetConf: cluster.NetConf(tc.backend, tc.datapath, false)})
			n, dp, ctx := c.Nodes[0], tc.datapath, t.Context()
			if err := n.WaitReady(ctx, subnetTimeout); err != nil {
				t.Fatal(err)
			}
			requireDatapaths(t, c, dp)
			synth, err := cluster.SyntheticNodes(0, kubeScaleNodes+kubeScaleAdds)
			if err != nil {
				t.Fatal(err)
			}
			base, adds := synth[:kubeScaleNodes], synth[kubeScaleNodes:]
			want := map[netip.Prefix]peer{}
			for _, s := range base {
				want[s.Subnet] = syntheticPeer(s)
			}

			began := time.Now()
			if err := c.CreateSyntheticNodes(ctx, base, kubeScaleWorkers); err != nil {
				t.Fatal(err)
			}
			created := time.Since(began)
			err = cluster.Eventually(ctx, kubeScaleSetup, fmt.Sprintf("%d synthetic Nodes in %s's datapath", len(base), n.Name), func() error {
				return checkDatapathPeers(n, dp, want)
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d Nodes created in %v (%d workers); all in the %s datapath %v after the first Create",
				len(base), created.Round(time.Millisecond), kubeScaleWorkers, dp, time.Since(began).Round(time.Millisecond))

			// The datapath now holds exactly the synthetic /28s, so a
			// longest-prefix lookup of one finds only its own entry.
			present := newPresenceProbe(t, n, dp)
			var added, deleted, changed []time.Duration
			for _, s := range adds {
				p := syntheticPeer(s)
				want[p.subnet] = p
				added = append(added, timeEvent(t, "added Node "+s.Name,
					func() error { return c.CreateSyntheticNode(ctx, s) },
					func() (bool, error) { return present(p.subnet) }))
				requireDatapathPeer(t, n, dp, p)
			}
			for _, s := range base[:kubeScaleDeletes] {
				delete(want, s.Subnet)
				deleted = append(deleted, timeEvent(t, "deleted Node "+s.Name,
					func() error { return c.DeleteKubeNode(ctx, s.Name) },
					func() (bool, error) { ok, err := present(s.Subnet); return !ok, err }))
				requireDatapathPeerGone(t, n, dp, s.Subnet)
			}
			// A new public-ip changes the kernel datapath's fdb entry, not
			// its route: these polls read the whole datapath each time.
			for i, s := range base[kubeScaleDeletes : kubeScaleDeletes+kubeScaleChanges] {
				s.PublicIP = netip.AddrFrom4([4]byte{10, 252, 0, byte(i + 1)})
				p := syntheticPeer(s)
				want[p.subnet] = p
				changed = append(changed, timeEvent(t, "public-ip of Node "+s.Name,
					func() error { return c.UpdateSyntheticNode(ctx, s) },
					func() (bool, error) { return checkDatapathPeer(n, dp, p) == nil, nil }))
			}
			if err := checkDatapathPeers(n, dp, want); err != nil {
				t.Errorf("after the timed events: %v", err)
			}
			for _, ev := range []struct {
				what string
				lat  []time.Duration
			}{{"added Node", added}, {"deleted Node", deleted}, {"changed public-ip", changed}} {
				t.Logf("%s datapath, %d Nodes: %s", dp, kubeScaleNodes, latencySummary(ev.what, ev.lat))
			}
		})
	}
}

// syntheticPeer is synthetic node s as a node's datapath must reflect it.
func syntheticPeer(s cluster.SyntheticNode) peer {
	return peer{subnet: s.Subnet, publicIP: s.PublicIP, vtepMAC: s.VtepMAC}
}

// timeEvent requires that reached does not hold yet, calls do, then polls
// reached every kubeEventPoll and returns how long after do's return it
// first held. It fails t if that took longer than kubeEventBound, and ends
// t if it never held within kubeEventLost.
func timeEvent(t *testing.T, what string, do func() error, reached func() (bool, error)) time.Duration {
	t.Helper()
	if ok, err := reached(); ok || err != nil {
		t.Fatalf("%s: the datapath reflects it before the event (%v)", what, err)
	}
	if err := do(); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	tick := time.NewTicker(kubeEventPoll)
	defer tick.Stop()
	for {
		ok, err := reached()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		took := time.Since(began)
		if ok {
			if took > kubeEventBound {
				t.Errorf("%s reached the datapath after %v, want within %v", what, took, kubeEventBound)
			}
			return took
		}
		if took > kubeEventLost {
			t.Fatalf("%s: not in the datapath after %v", what, kubeEventLost)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("%s: %v", what, t.Context().Err())
		case <-tick.C:
		}
	}
}

// latencySummary formats the count, p50, p99 and max of lat (nearest
// rank).
func latencySummary(what string, lat []time.Duration) string {
	if len(lat) == 0 {
		return what + ": none"
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	rank := func(p int) time.Duration { return s[(len(s)*p+99)/100-1] }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
	return fmt.Sprintf("%s: n=%d p50 %s p99 %s max %s", what, len(s), ms(rank(50)), ms(rank(99)), ms(s[len(s)-1]))
}

// newPresenceProbe returns a check whether a subnet is in node n's
// datapath at the cost of one kernel lookup, so polling it every
// millisecond leaves weftd its CPU: the kernel datapath's route through
// flannel.1 (programmed after the peer's fdb and neighbour entries, removed
// before them), or an entry of the ebpf datapath's pinned peers map
// covering the subnet. checkDatapathPeer checks the whole entry.
func newPresenceProbe(t *testing.T, n *cluster.Node, datapath string) func(netip.Prefix) (bool, error) {
	t.Helper()
	if datapath == "ebpf" {
		peers, err := ebpf.OpenPeers(n.BPFDir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { peers.Close() })
		return func(subnet netip.Prefix) (bool, error) {
			_, ok, err := peers.Lookup(subnet)
			return ok, err
		}
	}
	h, err := n.NS.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	dev, err := h.LinkByName(vxlanDev)
	if err != nil {
		t.Fatalf("%s on %s: %v", vxlanDev, n.Name, err)
	}
	return func(subnet netip.Prefix) (bool, error) {
		routes, err := h.RouteGet(subnet.Addr().AsSlice())
		if errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("route get %s on %s: %w", subnet.Addr(), n.Name, err)
		}
		return slices.ContainsFunc(routes, func(r netlink.Route) bool {
			return r.LinkIndex == dev.Attrs().Index && ipIs(r.Gw, subnet.Addr())
		}), nil
	}
}

// requireDatapathPeer waits up to kubeEventBound until node n's datapath
// holds p exactly.
func requireDatapathPeer(t *testing.T, n *cluster.Node, datapath string, p peer) {
	t.Helper()
	err := cluster.Eventually(t.Context(), kubeEventBound, fmt.Sprintf("peer %s on %s", p.subnet, n.Name), func() error {
		return checkDatapathPeer(n, datapath, p)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// requireDatapathPeerGone waits up to kubeEventBound until node n's
// datapath holds nothing of subnet.
func requireDatapathPeerGone(t *testing.T, n *cluster.Node, datapath string, subnet netip.Prefix) {
	t.Helper()
	err := cluster.Eventually(t.Context(), kubeEventBound, fmt.Sprintf("no peer %s on %s", subnet, n.Name), func() error {
		got, err := datapathPeers(n, datapath)
		if err != nil {
			return err
		}
		if p, ok := got[subnet]; ok {
			return fmt.Errorf("datapath still holds %s: %s", subnet, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkDatapathPeer checks that node n's datapath holds p exactly.
func checkDatapathPeer(n *cluster.Node, datapath string, p peer) error {
	got, err := datapathPeers(n, datapath)
	if err != nil {
		return err
	}
	g, ok := got[p.subnet]
	if !ok || !samePeer(g, p) {
		return fmt.Errorf("%s's %s datapath holds %s (%v), want %s", n.Name, datapath, g, ok, p)
	}
	return nil
}

// checkDatapathPeers checks that node n's datapath holds exactly want.
func checkDatapathPeers(n *cluster.Node, datapath string, want map[netip.Prefix]peer) error {
	got, err := datapathPeers(n, datapath)
	if err != nil {
		return err
	}
	var missing, wrong, extra []string
	for subnet, w := range want {
		g, ok := got[subnet]
		switch {
		case !ok:
			missing = append(missing, w.String())
		case !samePeer(g, w):
			wrong = append(wrong, fmt.Sprintf("%s, want %s", g, w))
		}
	}
	for subnet, g := range got {
		if _, ok := want[subnet]; !ok {
			extra = append(extra, g.String())
		}
	}
	if len(missing)+len(wrong)+len(extra) == 0 {
		return nil
	}
	first := func(s []string) []string { slices.Sort(s); return s[:min(3, len(s))] }
	return fmt.Errorf("%s's %s datapath holds %d peers of %d: %d missing %v, %d wrong %v, %d extra %v", n.Name, datapath,
		len(got), len(want), len(missing), first(missing), len(wrong), first(wrong), len(extra), first(extra))
}

func samePeer(a, b peer) bool {
	return a.subnet == b.subnet && a.publicIP == b.publicIP && bytes.Equal(a.vtepMAC, b.vtepMAC)
}

func (p peer) String() string {
	return fmt.Sprintf("%s via %s mac %s", p.subnet, p.publicIP, p.vtepMAC)
}

// datapathPeers reads the vxlan peers node n's datapath holds, by subnet,
// in one pass: the ebpf datapath's pinned peers map, or the kernel
// datapath's flannel.1 routes (via <subnet .0> onlink) joined with their
// permanent neighbours and fdb entries. A route without them reads as a
// peer without a MAC or public IP.
func datapathPeers(n *cluster.Node, datapath string) (map[netip.Prefix]peer, error) {
	out := map[netip.Prefix]peer{}
	if datapath == "ebpf" {
		entries, err := ebpf.ReadPeers(n.BPFDir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
		for _, e := range entries {
			out[e.Subnet] = peer{subnet: e.Subnet, publicIP: e.NodeIP, vtepMAC: e.VtepMAC}
		}
		return out, nil
	}
	h, err := n.NS.Netlink()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	dev, err := h.LinkByName(vxlanDev)
	if err != nil {
		return nil, fmt.Errorf("%s on %s: %w", vxlanDev, n.Name, err)
	}
	idx := dev.Attrs().Index
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: idx}, netlink.RT_FILTER_OIF)
	if err != nil {
		return nil, fmt.Errorf("routes via %s on %s: %w", vxlanDev, n.Name, err)
	}
	neighs, err := h.NeighList(idx, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("neighbours on %s on %s: %w", vxlanDev, n.Name, err)
	}
	fdbs, err := h.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("fdb of %s on %s: %w", vxlanDev, n.Name, err)
	}
	macOf := map[netip.Addr]net.HardwareAddr{}
	for _, nb := range neighs {
		if ip, ok := netip.AddrFromSlice(nb.IP.To4()); ok && nb.State&netlink.NUD_PERMANENT != 0 {
			macOf[ip] = nb.HardwareAddr
		}
	}
	dstOf := map[string]netip.Addr{}
	for _, f := range fdbs {
		if ip, ok := netip.AddrFromSlice(f.IP.To4()); ok {
			dstOf[f.HardwareAddr.String()] = ip
		}
	}
	for _, r := range routes {
		if r.Dst == nil || r.Flags&unix.RTNH_F_ONLINK == 0 {
			continue
		}
		subnet, ok := netipPrefix(r.Dst)
		if !ok || !ipIs(r.Gw, subnet.Addr()) {
			continue
		}
		mac := macOf[subnet.Addr()]
		out[subnet] = peer{subnet: subnet, publicIP: dstOf[mac.String()], vtepMAC: mac}
	}
	return out, nil
}

// netipPrefix converts an IPv4 net.IPNet.
func netipPrefix(n *net.IPNet) (netip.Prefix, bool) {
	ip, ok := netip.AddrFromSlice(n.IP.To4())
	ones, bits := n.Mask.Size()
	return netip.PrefixFrom(ip, ones), ok && bits == 32
}

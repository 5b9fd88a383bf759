package kernel_test

import (
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/datapath/kernel"
)

// peersOfNodes returns the peers of nodes, as their leases describe them.
func peersOfNodes(nodes ...*testNode) []datapath.Peer {
	var peers []datapath.Peer
	for _, n := range nodes {
		peers = append(peers, n.peer())
	}
	return peers
}

func TestApply(t *testing.T) {
	nodes := newCluster(t, datapath.ModeVXLAN, false)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	setupAll(t, nodes)
	n1.mustSync(t, peersOfNodes(n2))
	checkVXLAN(t, n1, n2)
	// fake is a peer without a node behind it, for n1's kernel state only.
	fake := &testNode{
		subnet: netip.MustParsePrefix("10.244.50.0/24"),
		node:   datapath.Node{NodeIP: netip.MustParseAddr("192.168.10.50")},
		info:   datapath.Info{VtepMAC: net.HardwareAddr{2, 0, 0, 0, 0, 0x50}},
	}

	t.Run("add", func(t *testing.T) {
		n1.mustApply(t, peersOfNodes(n2, n3, fake))
		checkVXLAN(t, n1, n2, n3, fake)
		n1.ping(t, n3.podIP)
	})
	t.Run("change VtepMAC", func(t *testing.T) {
		fake.info.VtepMAC = net.HardwareAddr{2, 0, 0, 0, 0, 0x51}
		n1.mustApply(t, peersOfNodes(n2, n3, fake))
		checkVXLAN(t, n1, n2, n3, fake)
	})
	t.Run("change NodeIP", func(t *testing.T) {
		fake.node.NodeIP = netip.MustParseAddr("192.168.10.51")
		n1.mustApply(t, peersOfNodes(n2, n3, fake))
		checkVXLAN(t, n1, n2, n3, fake)
	})
	t.Run("remove", func(t *testing.T) {
		n1.mustApply(t, peersOfNodes(n2))
		checkVXLAN(t, n1, n2)
		if _, err := n1.pod.Run("ping", "-c1", "-W1", n3.podIP.String()); err == nil {
			t.Error("a removed peer is still reachable")
		}
		n1.ping(t, n2.podIP)
	})

	t.Run("a node's subnets share its fdb entry", func(t *testing.T) {
		second := *fake
		second.subnet = netip.MustParsePrefix("10.244.51.0/24")
		n1.mustApply(t, peersOfNodes(n2, fake, &second))
		checkVXLAN(t, n1, n2, fake, &second)
		n1.mustApply(t, peersOfNodes(n2, &second))
		checkVXLAN(t, n1, n2, &second)
		n1.mustApply(t, peersOfNodes(n2))
		checkVXLAN(t, n1, n2)
	})

	t.Run("Apply writes only the changed peer's entries", func(t *testing.T) {
		// Drift on another peer's entries, and a stale route: Apply of n3
		// leaves them, the next Sync repairs them.
		n1.ns.MustRun(t, "ip", "route", "del", n2.subnet.String(), "dev", "flannel.1")
		n1.ns.MustRun(t, "ip", "neigh", "del", n2.subnet.Addr().String(), "dev", "flannel.1")
		n1.ns.MustRun(t, "bridge", "fdb", "del", n2.info.VtepMAC.String(), "dev", "flannel.1", "dst", n2.node.NodeIP.String())
		n1.ns.MustRun(t, "ip", "route", "add", "10.244.99.0/24", "via", "10.244.99.0", "dev", "flannel.1", "onlink")
		n1.mustApply(t, peersOfNodes(n2, n3))
		want := wantVXLAN(n1, fam4, []*testNode{n3})
		want.Routes = append(want.Routes, "10.244.99.0/24 via 10.244.99.0 onlink")
		if got := n1.vxlan(t); !slices.Equal(got.Routes, want.Routes) || !slices.Equal(got.Neighs, want.Neighs) || !slices.Equal(got.FDB, want.FDB) {
			t.Fatalf("after Apply of %s: flannel.1 state\n got  %+v\n want %+v (n2's entries still missing, the stale route still there)", n3.subnet, got, want)
		}
		n1.mustSync(t, peersOfNodes(n2, n3))
		checkVXLAN(t, n1, n2, n3)
	})

	t.Run("failed pass falls back to Sync", func(t *testing.T) {
		n1.ns.MustRun(t, "ip", "link", "del", "flannel.1")
		if err := n1.apply(peersOfNodes(n2, n3, fake)); err == nil {
			t.Fatal("Apply without the device succeeded")
		}
		// The next Apply, even without a change, is a full Sync: it
		// recreates the device (with the published MAC) and programs every
		// peer, not only the change.
		n1.mustApply(t, peersOfNodes(n2, n3, fake))
		checkVXLAN(t, n1, n2, n3, fake)
		if mac := n1.device(t, 1).Address; mac != n1.info.VtepMAC.String() {
			t.Errorf("recreated device has MAC %s, want %s", mac, n1.info.VtepMAC)
		}
		n1.ping(t, n2.podIP)
	})

	t.Run("Apply needs a Sync after Setup", func(t *testing.T) {
		stale := []string{"route", "add", "10.244.99.0/24", "via", "10.244.99.0", "dev", "flannel.1", "onlink"}
		restarted := *n1
		restarted.dp = kernel.New()
		for _, step := range []string{"a new process", "Setup again"} {
			n1.ns.MustRun(t, "ip", stale...)
			restarted.setup(t)
			if err := restarted.apply(peersOfNodes(n2, n3)); err == nil {
				t.Fatalf("%s: Apply before Sync succeeded", step)
			}
			restarted.mustSync(t, peersOfNodes(n2, n3))
			checkVXLAN(t, &restarted, n2, n3)
		}
	})
}

func TestApplyHostGW(t *testing.T) {
	nodes := newCluster(t, datapath.ModeHostGW, false)
	n1, n2 := nodes[0], nodes[1]
	n1.setup(t)
	n2.setup(t)
	n2.mustSync(t, peersOfNodes(n1))
	n1.mustSync(t, nil)

	n1.mustApply(t, peersOfNodes(n2))
	want := []string{"10.244.1.0/24 dev veth0", "10.244.2.0/24 via 192.168.10.2 dev eth0"}
	if got := podRoutes(t, n1); !slices.Equal(got, want) {
		t.Fatalf("n1 routes into the network after Apply = %q, want %q", got, want)
	}
	n1.ping(t, n2.podIP)

	n1.mustApply(t, nil)
	if got := podRoutes(t, n1); !slices.Equal(got, want[:1]) {
		t.Errorf("n1 routes into the network after removing the peer = %q, want %q", got, want[:1])
	}
}

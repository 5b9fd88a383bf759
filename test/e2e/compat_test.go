package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/pkg/lease"
	"github.com/weftnet/weft/test/cluster"
)

// leaseTTL is the TTL of the etcd lease on every subnet key (flannel's).
const leaseTTL = 86400

// waitVXLANConverged waits until etcd holds one lease per node in nodes and
// each of them has flannel's kernel state for every other lease.
func waitVXLANConverged(t *testing.T, c *cluster.Cluster, nodes ...*cluster.Node) {
	t.Helper()
	ctx := t.Context()
	err := cluster.Eventually(ctx, convergeTimeout, "kernel vxlan state on every node", func() error {
		leases, err := c.Etcd.Leases(ctx)
		if err != nil {
			return err
		}
		if len(leases) != len(nodes) {
			return fmt.Errorf("%d leases in etcd, want %d", len(leases), len(nodes))
		}
		for _, n := range nodes {
			if err := checkVXLANNode(n, leases); err != nil {
				return fmt.Errorf("node %s: %w", n.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkVXLANNode checks node n's flannel.1 and its entries for every peer.
func checkVXLANNode(n *cluster.Node, leases map[netip.Prefix]lease.Attrs) error {
	return withPeers(n, leases, func(h *netlink.Handle, own netip.Prefix, peers []peer) error {
		dev, err := vxlanDevice(h, own)
		if err != nil {
			return err
		}
		for _, p := range peers {
			if err := checkVXLANPeer(h, dev, p); err != nil {
				return err
			}
		}
		return nil
	})
}

// TestFlannelCompat checks what flannel's users and tools see with the
// kernel vxlan datapath: the etcd keys and values, the subnet file and each
// node's flannel.1, neighbours, fdb and routes (FLANNEL-COMPAT.md).
func TestFlannelCompat(t *testing.T) {
	c := start(t, cluster.Options{Nodes: 3, NetConf: cluster.NetConf("vxlan", "kernel", false)})
	ctx := t.Context()
	waitVXLANConverged(t, c, c.Nodes...)
	network := netip.MustParsePrefix(cluster.PodNetwork)
	for _, n := range c.Nodes {
		own, err := n.Subnet()
		if err != nil {
			t.Fatal(err)
		}
		if own.Bits() != 24 || !network.Contains(own.Addr()) || own == network.Masked() {
			t.Errorf("%s got subnet %s, want a /24 in %s other than the first", n.Name, own, network)
		}

		// The lease: key, value layout and etcd lease TTL.
		key := cluster.SubnetKey(own)
		resp, err := c.Etcd.Client().Get(ctx, key)
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("%s: lease key %s: %v %v", n.Name, key, resp, err)
		}
		kv := resp.Kvs[0]
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(kv.Value, &raw); err != nil {
			t.Fatalf("%s = %s: %v", key, kv.Value, err)
		}
		for _, field := range []string{"PublicIP", "BackendType", "BackendData"} {
			if _, ok := raw[field]; !ok {
				t.Errorf("%s = %s: no %s", key, kv.Value, field)
			}
		}
		var attrs lease.Attrs
		var data lease.VXLANData
		if err := json.Unmarshal(kv.Value, &attrs); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(attrs.BackendData, &data); err != nil {
			t.Fatalf("%s BackendData %s: %v", key, attrs.BackendData, err)
		}
		h, err := n.NS.Netlink()
		if err != nil {
			t.Fatal(err)
		}
		dev, err := vxlanDevice(h, own)
		h.Close()
		if err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		if attrs.PublicIP != n.IP || attrs.BackendType != "vxlan" || data.VNI != vxlanVNI || data.VtepMAC != dev.HardwareAddr.String() {
			t.Errorf("%s = %s, want PublicIP %s, BackendType vxlan, VNI %d, VtepMAC %s (flannel.1)",
				key, kv.Value, n.IP, vxlanVNI, dev.HardwareAddr)
		}
		if kv.Lease == 0 {
			t.Errorf("%s has no etcd lease (a permanent reservation)", key)
		} else if ttl, err := c.Etcd.Client().TimeToLive(ctx, clientv3.LeaseID(kv.Lease)); err != nil || ttl.GrantedTTL != leaseTTL {
			t.Errorf("%s: etcd lease granted TTL %v (%v), want %d", key, ttl, err, leaseTTL)
		}

		// subnet.env, as the CNI plugin and mk-docker-opts read it.
		env, err := n.SubnetEnv()
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"FLANNEL_NETWORK": cluster.PodNetwork,
			"FLANNEL_SUBNET":  netip.PrefixFrom(own.Addr().Next(), own.Bits()).String(),
			"FLANNEL_MTU":     fmt.Sprint(vxlanMTU),
			"FLANNEL_IPMASQ":  "true",
		}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("%s: %s=%q, want %q", n.SubnetFile, k, env[k], v)
			}
		}
	}
}

package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/pkg/lease"
	"github.com/weftnet/weft/test/cluster"
)

// leaseTTL is the TTL of the etcd lease on every subnet key (flannel's).
const leaseTTL = 86400

// waitVXLANConverged waits until etcd holds one lease per node in nodes
// (a lease entry per family, see cluster.Etcd.Leases) and each of them has
// flannel's kernel state for every other lease of every family.
func waitVXLANConverged(t *testing.T, c *cluster.Cluster, nodes ...*cluster.Node) {
	t.Helper()
	ctx := t.Context()
	err := cluster.Eventually(ctx, convergeTimeout, "kernel vxlan state on every node", func() error {
		leases, err := c.Etcd.Leases(ctx)
		if err != nil {
			return err
		}
		if want := len(nodes) * len(c.Stack().Families()); len(leases) != want {
			return fmt.Errorf("%d lease entries in etcd, want %d (one per node and family)", len(leases), want)
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

// checkVXLANNode checks node n's vxlan devices (flannel.1, flannel-v6.1)
// and their entries for every peer of their family.
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
// kernel vxlan datapath, per stack (IPv4 only, dual stack, IPv6 only): the
// etcd keys and values, the subnet file and each node's flannel.1 and
// flannel-v6.1, neighbours, fdb and routes (FLANNEL-COMPAT.md, "Dual
// stack").
func TestFlannelCompat(t *testing.T) {
	for _, stack := range cluster.Stacks {
		t.Run(stack.String(), func(t *testing.T) {
			c := start(t, cluster.Options{Nodes: 3, NetConf: cluster.StackNetConf(stack, "vxlan", "kernel", false)})
			waitVXLANConverged(t, c, c.Nodes...)
			for _, n := range c.Nodes {
				checkCompatNode(t, c, n)
			}
		})
	}
}

// ownSubnetLen is the prefix length of a node's subnet of each family:
// flannel's SubnetLen and IPv6SubnetLen defaults.
var ownSubnetLen = map[cluster.Family]int{cluster.IPv4: 24, cluster.IPv6: 64}

// checkCompatNode checks node n's lease (key, value, etcd lease TTL) and
// subnet file as flannel writes them.
func checkCompatNode(t *testing.T, c *cluster.Cluster, n *cluster.Node) {
	t.Helper()
	ctx := t.Context()
	stack := c.Stack()
	subnets, err := n.Subnets()
	if err != nil {
		t.Fatal(err)
	}
	// flannel's key: "<v4>-<len>", "<v4>-<len>&<v6>-<len>", and with IPv6
	// only an empty IPv4 part "0.0.0.0-0&<v6>-<len>".
	var keyParts []string
	if !stack.Has(cluster.IPv4) {
		keyParts = append(keyParts, "0.0.0.0-0")
	}
	for _, own := range subnets {
		f := cluster.FamilyOf(own.Addr())
		network := cluster.PodNetworkOf(f)
		if own.Bits() != ownSubnetLen[f] || !network.Contains(own.Addr()) || own == network.Masked() {
			t.Errorf("%s got subnet %s, want a /%d in %s other than the first", n.Name, own, ownSubnetLen[f], network)
		}
		keyParts = append(keyParts, fmt.Sprintf("%s-%d", own.Addr(), own.Bits()))
	}
	key := cluster.SubnetsPrefix + strings.Join(keyParts, "&")
	resp, err := c.Etcd.Client().Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		all, _ := c.Etcd.List(ctx, cluster.SubnetsPrefix)
		t.Fatalf("%s: lease key %s: %v %v; the leases are %v", n.Name, key, resp, err, all)
	}
	kv := resp.Kvs[0]
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(kv.Value, &raw); err != nil {
		t.Fatalf("%s = %s: %v", key, kv.Value, err)
	}
	var val cluster.LeaseValue
	if err := json.Unmarshal(kv.Value, &val); err != nil {
		t.Fatal(err)
	}
	if val.BackendType != "vxlan" {
		t.Errorf("%s = %s: BackendType %q, want vxlan", key, kv.Value, val.BackendType)
	}
	h, err := n.NS.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fields := map[cluster.Family][2]string{cluster.IPv4: {"PublicIP", "BackendData"}, cluster.IPv6: {"PublicIPv6", "BackendV6Data"}}
	for _, own := range subnets {
		f := cluster.FamilyOf(own.Addr())
		for _, field := range []string{fields[f][0], fields[f][1], "BackendType"} {
			if _, ok := raw[field]; !ok {
				t.Errorf("%s = %s: no %s", key, kv.Value, field)
			}
		}
		ip, rawData := val.Part(f)
		var data lease.VXLANData
		if err := json.Unmarshal(rawData, &data); err != nil {
			t.Errorf("%s %s %s: %v", key, fields[f][1], rawData, err)
			continue
		}
		dev, err := vxlanDevice(h, own)
		if err != nil {
			t.Errorf("%s: %v", n.Name, err)
			continue
		}
		if ip != n.IPOf(f) || data.VNI != vxlanVNI || data.VtepMAC != dev.HardwareAddr.String() {
			t.Errorf("%s = %s, want %s %s and %s with VNI %d, VtepMAC %s (%s)",
				key, kv.Value, fields[f][0], n.IPOf(f), fields[f][1], vxlanVNI, dev.HardwareAddr, dev.Name)
		}
	}
	if kv.Lease == 0 {
		t.Errorf("%s has no etcd lease (a permanent reservation)", key)
	} else if ttl, err := c.Etcd.Client().TimeToLive(ctx, clientv3.LeaseID(kv.Lease)); err != nil || ttl.GrantedTTL != leaseTTL {
		t.Errorf("%s: etcd lease granted TTL %v (%v), want %d", key, ttl, err, leaseTTL)
	}

	// subnet.env, as the CNI plugin and mk-docker-opts read it: each
	// family's pair only when the family is on (flannel's
	// WriteSubnetFile).
	env, err := n.SubnetEnv()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"FLANNEL_NETWORK":      "",
		"FLANNEL_SUBNET":       "",
		"FLANNEL_IPV6_NETWORK": "",
		"FLANNEL_IPV6_SUBNET":  "",
		"FLANNEL_MTU":          fmt.Sprint(podMTU("vxlan", stack)),
		"FLANNEL_IPMASQ":       "true",
	}
	envKeys := map[cluster.Family][2]string{cluster.IPv4: {"FLANNEL_NETWORK", "FLANNEL_SUBNET"}, cluster.IPv6: {"FLANNEL_IPV6_NETWORK", "FLANNEL_IPV6_SUBNET"}}
	for _, own := range subnets {
		f := cluster.FamilyOf(own.Addr())
		want[envKeys[f][0]] = cluster.PodNetworkOf(f).String()
		want[envKeys[f][1]] = netip.PrefixFrom(own.Addr().Next(), own.Bits()).String()
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s: %s=%q, want %q", n.SubnetFile, k, env[k], v)
		}
	}
}

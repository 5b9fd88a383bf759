package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/pkg/lease"
	"github.com/weftnet/weft/test/cluster"
)

// The synthetic cluster: pod subnets are /24s of podNetwork (room for 16383
// nodes), the fake nodes' IPs come from nodeIPBase, outside both the pod
// network and the harness's underlay (10.250.0.0/16). Nothing ever sends to
// them: only weftd's control plane is measured.
var (
	podNetwork = netip.MustParsePrefix("10.128.0.0/10")
	nodeIPBase = netip.MustParseAddr("10.251.0.0")
)

const (
	subnetLen = 24
	// leaseTTL is flannel's etcd lease TTL; the synthetic keys carry one
	// like real leases do.
	leaseTTL = 86400
	// txnOps stays under etcd's default --max-txn-ops (128).
	txnOps = 100
)

// netConf is net-conf.json for the benchmark's network on datapath dp.
func netConf(dp string) string {
	return fmt.Sprintf(`{"Network":%q,"SubnetLen":%d,"Backend":{"Type":"vxlan","Datapath":%q}}`,
		podNetwork, subnetLen, dp)
}

// peer is one synthetic node's lease.
type peer struct {
	Subnet netip.Prefix
	NodeIP netip.Addr
	MAC    net.HardwareAddr
}

// synthPeer returns the i-th synthetic lease (i >= 0): subnet i+1 of the pod
// network (subnet 0 is below flannel's default SubnetMin), a distinct node
// IP and a distinct locally administered unicast VTEP MAC.
func synthPeer(i int) peer {
	base := podNetwork.Addr().As4()
	subnet := binary.BigEndian.Uint32(base[:]) + uint32(i+1)<<(32-subnetLen)
	ipBase := nodeIPBase.As4()
	ip := binary.BigEndian.Uint32(ipBase[:]) + uint32(i+1)
	return peer{
		Subnet: netip.PrefixFrom(u32Addr(subnet), subnetLen),
		NodeIP: u32Addr(ip),
		MAC:    net.HardwareAddr{0x02, 0x5c, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)},
	}
}

func u32Addr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// value is the peer's lease in flannel's JSON.
func (p peer) value() (string, error) {
	data, err := json.Marshal(lease.VXLANData{VNI: 1, VtepMAC: p.MAC.String()})
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(lease.Attrs{PublicIP: p.NodeIP, BackendType: "vxlan", BackendData: data})
	if err != nil {
		return "", fmt.Errorf("encode lease of %s: %w", p.Subnet, err)
	}
	return string(b), nil
}

// leaseWriter writes synthetic leases, all attached to one etcd lease.
type leaseWriter struct {
	cli *clientv3.Client
	id  clientv3.LeaseID
}

func newLeaseWriter(ctx context.Context, cli *clientv3.Client) (*leaseWriter, error) {
	grant, err := cli.Grant(ctx, leaseTTL)
	if err != nil {
		return nil, fmt.Errorf("grant etcd lease: %w", err)
	}
	return &leaseWriter{cli: cli, id: grant.ID}, nil
}

// put writes peers' leases, up to txnOps keys per transaction.
func (w *leaseWriter) put(ctx context.Context, peers []peer) error {
	for len(peers) > 0 {
		batch := peers[:min(txnOps, len(peers))]
		peers = peers[len(batch):]
		ops := make([]clientv3.Op, 0, len(batch))
		for _, p := range batch {
			v, err := p.value()
			if err != nil {
				return err
			}
			ops = append(ops, clientv3.OpPut(cluster.SubnetKey(p.Subnet), v, clientv3.WithLease(w.id)))
		}
		if _, err := w.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("write %d leases from %s: %w", len(batch), batch[0].Subnet, err)
		}
	}
	return nil
}

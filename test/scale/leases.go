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

// The synthetic cluster: pod subnets are /24s of podNetwork (room for
// maxSynthPeers nodes), the fake nodes' IPs come from nodeIPBase and, after a
// churn change, from changedIPBase, outside both the pod network and the
// harness's underlay (10.250.0.0/16). Nothing ever sends to them: only
// weftd's control plane is measured.
var (
	podNetwork    = netip.MustParsePrefix("10.128.0.0/10")
	nodeIPBase    = netip.MustParseAddr("10.251.0.0")
	changedIPBase = netip.MustParseAddr("10.252.0.0")
)

const (
	subnetLen = 24
	// maxSynthPeers is how many synthetic leases fit in podNetwork, a /10
	// (its first subnet is never leased).
	maxSynthPeers = 1<<(subnetLen-10) - 1
	// Tags of the locally administered unicast VTEP MACs: synthPeer's and
	// churn changes'.
	synthMACTag, changedMACTag = 0x5c, 0x5d
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

// synthPeer returns the i-th synthetic lease (0 <= i < maxSynthPeers):
// subnet i+1 of the pod network (subnet 0 is below flannel's default
// SubnetMin), a distinct node IP and a distinct VTEP MAC.
func synthPeer(i int) peer {
	return peer{
		Subnet: netip.PrefixFrom(addrAfter(podNetwork.Addr(), uint32(i+1)<<(32-subnetLen)), subnetLen),
		NodeIP: addrAfter(nodeIPBase, uint32(i+1)),
		MAC:    synthMAC(synthMACTag, i),
	}
}

// changedNodeIP and changedMAC are the k-th fresh node IP and VTEP MAC of
// churn changes: distinct from each other's and from synthPeer's. Churn
// makes one change per added subnet, so k < maxSynthPeers, which
// changedIPBase's /14 holds.
func changedNodeIP(k int) netip.Addr    { return addrAfter(changedIPBase, uint32(k+1)) }
func changedMAC(k int) net.HardwareAddr { return synthMAC(changedMACTag, k) }

// synthMAC is the i-th locally administered unicast MAC with tag.
func synthMAC(tag byte, i int) net.HardwareAddr {
	return net.HardwareAddr{0x02, tag, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

// addrAfter is the IPv4 address off after base.
func addrAfter(base netip.Addr, off uint32) netip.Addr {
	b := base.As4()
	var out [4]byte
	binary.BigEndian.PutUint32(out[:], binary.BigEndian.Uint32(b[:])+off)
	return netip.AddrFrom4(out)
}

// synthSeq hands out the synthetic leases after the ones written so far, in
// order, skipping weftd's own subnet.
type synthSeq struct {
	next int
	own  netip.Prefix
}

// take returns the next synthetic lease.
func (s *synthSeq) take() (peer, error) {
	for s.next < maxSynthPeers {
		p := synthPeer(s.next)
		s.next++
		if p.Subnet != s.own {
			return p, nil
		}
	}
	return peer{}, fmt.Errorf("all %d subnets of %s used: fewer peers, new leases or churn events", maxSynthPeers, podNetwork)
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

// write puts e's lease into etcd, or deletes it for a removal.
func (w *leaseWriter) write(ctx context.Context, e churnEvent) error {
	if e.class != removed {
		return w.put(ctx, []peer{e.peer})
	}
	if _, err := w.cli.Delete(ctx, cluster.SubnetKey(e.peer.Subnet)); err != nil {
		return fmt.Errorf("delete lease of %s: %w", e.peer.Subnet, err)
	}
	return nil
}

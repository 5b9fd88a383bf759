package kernel

import (
	"net/netip"
	"sync"

	"github.com/weftnet/weft/pkg/datapath"
)

// peerTable is the udp forwarding loop's view of the selected peers:
// subnet -> node IP. The loop reads it for every packet while Sync and
// Apply change it entry by entry, so a change costs the same whatever the
// number of peers.
type peerTable struct {
	mu sync.RWMutex
	// subnets maps each selected subnet to its node IP.
	subnets map[netip.Prefix]netip.Addr
	// nodes counts the subnets of each node IP.
	nodes map[netip.Addr]int
	// lens counts the subnets of each prefix length, so a lookup tries
	// only the lengths in use.
	lens [33]int
	// own is the source of the ICMP errors the loop sends.
	own netip.Addr
}

// newPeerTable returns an empty table.
func newPeerTable() *peerTable {
	return &peerTable{subnets: map[netip.Prefix]netip.Addr{}, nodes: map[netip.Addr]int{}}
}

// reset replaces the table with the selected peers.
func (t *peerTable) reset(peers []datapath.Peer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.subnets)
	clear(t.nodes)
	t.lens = [33]int{}
	for _, p := range peers {
		t.setLocked(p.Subnet, p.NodeIP)
	}
}

// apply sets the subnets whose selected peer changed.
func (t *peerTable) apply(changes []datapath.SubnetChange) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range changes {
		if c.Old.Subnet.IsValid() {
			t.setLocked(c.Old.Subnet, netip.Addr{})
		}
		if c.New.Subnet.IsValid() {
			t.setLocked(c.New.Subnet, c.New.NodeIP)
		}
	}
}

// setOwn sets the source address of ICMP errors.
func (t *peerTable) setOwn(a netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.own = a
}

// setLocked makes sub's node IP ip; the zero ip removes sub. Caller holds
// t.mu.
func (t *peerTable) setLocked(sub netip.Prefix, ip netip.Addr) {
	if old, ok := t.subnets[sub]; ok {
		delete(t.subnets, sub)
		t.lens[sub.Bits()]--
		if t.nodes[old]--; t.nodes[old] <= 0 {
			delete(t.nodes, old)
		}
	}
	if !ip.IsValid() {
		return
	}
	t.subnets[sub] = ip
	t.lens[sub.Bits()]++
	t.nodes[ip]++
}

// nodeOfLocked returns the node IP of the longest subnet holding a.
// Caller holds t.mu (read).
func (t *peerTable) nodeOfLocked(a netip.Addr) (netip.Addr, bool) {
	for bits := 32; bits >= 0; bits-- {
		if t.lens[bits] == 0 {
			continue
		}
		p, _ := a.Prefix(bits)
		if ip, ok := t.subnets[p]; ok {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// route returns the node IP to send a packet for dst to, or, when no
// subnet holds dst, false and the source for the ICMP error.
func (t *peerTable) route(dst netip.Addr) (netip.Addr, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if ip, ok := t.nodeOfLocked(dst); ok {
		return ip, true
	}
	return t.own, false
}

// admit returns why a datagram from node IP from whose inner packet has
// source src must be dropped, or dropNone.
func (t *peerTable) admit(from, src netip.Addr) dropReason {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.nodes[from] == 0 {
		return dropUnknownNode
	}
	if ip, ok := t.nodeOfLocked(src); !ok || ip != from {
		return dropSpoofedSource
	}
	return dropNone
}

package datapath

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
)

// Rejection is a peer a datapath does not program, and why.
type Rejection struct {
	Peer   Peer
	Reason string
}

// Selection is what SelectPeers keeps of a peer set.
type Selection struct {
	// Peers are the peers to program, Mode set, in subnet order
	// (netip.Prefix.Compare, then node IP).
	Peers []Peer
	// Modes holds the mode of every node IP whose mode was decided.
	Modes map[netip.Addr]Mode
	// Rejected are the peers left out, with the reason.
	Rejected []Rejection
}

// SelectPeers is the one peer validation of both datapaths. It checks peers
// against node, whose own subnet is own (invalid while not known yet), and
// sets their modes: from known when it holds the node IP, else as
// AssignModes decides (a route lookup with DirectRouting), so a caller that
// keeps the Modes of its last pass looks up only new node IPs. Peers are
// taken in subnet order, so that when two claim one subnet, or in vxlan mode
// two node IPs claim one VtepMAC, the same one wins every time; the other is
// rejected. Peers that share a node IP are all kept (with one VtepMAC, as a
// node that leased twice has): every subnet a node leases is routed to it,
// as flannel's kernel datapath does. The error joins those of peers
// whose mode could not be decided; they are left out and not rejected, to be
// tried again on the next pass.
func SelectPeers(node Node, own netip.Prefix, peers []Peer, known map[netip.Addr]Mode) (Selection, error) {
	sorted := slices.SortedStableFunc(slices.Values(peers), func(a, b Peer) int {
		return cmp.Or(a.Subnet.Compare(b.Subnet), a.NodeIP.Compare(b.NodeIP))
	})
	s := Selection{
		Peers: make([]Peer, 0, len(peers)),
		Modes: make(map[netip.Addr]Mode, len(peers)),
	}
	subnets := make(map[netip.Prefix]bool, len(peers))
	macs := make(map[string]netip.Addr, len(peers)) // VtepMAC -> node IP
	var errs []error
	for _, p := range sorted {
		if reason := peerProblem(node, own, p); reason != "" {
			s.Rejected = append(s.Rejected, Rejection{p, reason})
			continue
		}
		p, err := AssignModeCached(node, p, known, s.Modes)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		mac := p.VtepMAC.String()
		owner, claimed := macs[mac]
		switch {
		case subnets[p.Subnet]:
			s.Rejected = append(s.Rejected, Rejection{p, "another peer has the same subnet"})
			continue
		case p.Mode == ModeVXLAN && claimed && owner != p.NodeIP:
			s.Rejected = append(s.Rejected, Rejection{p, "another node IP has the same VtepMAC"})
			continue
		}
		subnets[p.Subnet] = true
		if p.Mode == ModeVXLAN {
			macs[mac] = p.NodeIP
		}
		s.Peers = append(s.Peers, p)
	}
	return s, errors.Join(errs...)
}

// peerProblem returns why p must not be programmed on node with own subnet
// own (which may be unknown), or "" when it is fine.
func peerProblem(node Node, own netip.Prefix, p Peer) string {
	switch {
	case !p.Subnet.IsValid() || !p.Subnet.Addr().Is4():
		return "subnet is not IPv4"
	case p.Subnet != p.Subnet.Masked():
		return "subnet is not masked"
	case p.Subnet.Bits() < node.Network.Bits() || !node.Network.Contains(p.Subnet.Addr()):
		return fmt.Sprintf("subnet is outside network %s", node.Network)
	case own.IsValid() && own.Overlaps(p.Subnet):
		return "subnet overlaps this node's subnet"
	case !p.NodeIP.Is4() || p.NodeIP.IsUnspecified() || p.NodeIP.IsMulticast():
		return "node IP is not a unicast IPv4 address"
	case p.NodeIP == node.NodeIP:
		return "node IP is this node's"
	case node.Backend == ModeVXLAN && !UnicastMAC(p.VtepMAC):
		return "vxlan peer without a valid unicast VtepMAC"
	}
	return ""
}

// UnicastMAC reports whether mac is a non-zero unicast Ethernet address.
func UnicastMAC(mac net.HardwareAddr) bool {
	return len(mac) == 6 && mac[0]&1 == 0 && !slices.Equal(mac, make(net.HardwareAddr, 6))
}

// LogRejections warns about each rejection in rs (a Selector reports each
// once while it lasts).
func LogRejections(rs []Rejection) {
	for _, r := range rs {
		slog.Warn("not programming peer", "subnet", r.Peer.Subnet.String(), "node_ip", r.Peer.NodeIP.String(),
			"vtep_mac", r.Peer.VtepMAC.String(), "reason", r.Reason)
	}
}

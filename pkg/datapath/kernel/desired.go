package kernel

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/weftnet/weft/pkg/datapath"
)

// route is one route this datapath programs: dst via gw dev link [onlink].
type route struct {
	dst    netip.Prefix
	gw     netip.Addr
	link   int
	onlink bool
}

// desired is the kernel state a peer set asks for.
type desired struct {
	routes map[netip.Prefix]route
	// neighs maps a vxlan peer's subnet .0 to its VTEP MAC.
	neighs map[netip.Addr]net.HardwareAddr
	// fdb maps a VTEP MAC (as a string) to the peer's entry.
	fdb map[string]fdbEntry
}

// fdbEntry sends frames for a VTEP MAC to a node IP.
type fdbEntry struct {
	mac net.HardwareAddr
	dst netip.Addr
}

// rejection is a peer that is not programmed, and why.
type rejection struct {
	peer   datapath.Peer
	reason string
}

// key identifies a rejection for de-duplicating log lines.
func (r rejection) key() string {
	return fmt.Sprintf("%s|%s|%s", r.peer.Subnet, r.peer.NodeIP, r.reason)
}

// checkPeer returns why p must not be programmed on node with own subnet
// own (which may be unknown), or "" when it is fine.
func checkPeer(node datapath.Node, own netip.Prefix, p datapath.Peer) string {
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
	case node.Backend == datapath.ModeVXLAN && !validMAC(p.VtepMAC):
		return "vxlan peer without a valid unicast VtepMAC"
	}
	return ""
}

// validMAC reports whether mac is a non-zero unicast Ethernet address.
func validMAC(mac net.HardwareAddr) bool {
	return len(mac) == 6 && mac[0]&1 == 0 && !slices.Equal(mac, make(net.HardwareAddr, 6))
}

// buildDesired turns peers (already checked, Mode assigned) into kernel
// state. Peers are taken in subnet order so that when two claim the same
// subnet or VTEP MAC the same one wins every time; the others are rejected.
func buildDesired(peers []datapath.Peer, vxlanIndex, uplinkIndex int) (desired, []rejection) {
	d := desired{
		routes: make(map[netip.Prefix]route, len(peers)),
		neighs: make(map[netip.Addr]net.HardwareAddr, len(peers)),
		fdb:    make(map[string]fdbEntry, len(peers)),
	}
	sorted := slices.Clone(peers)
	slices.SortStableFunc(sorted, func(a, b datapath.Peer) int {
		if c := a.Subnet.Addr().Compare(b.Subnet.Addr()); c != 0 {
			return c
		}
		return a.NodeIP.Compare(b.NodeIP)
	})
	var rejected []rejection
	for _, p := range sorted {
		if _, dup := d.routes[p.Subnet]; dup {
			rejected = append(rejected, rejection{p, "another peer has the same subnet"})
			continue
		}
		if p.Mode == datapath.ModeHostGW {
			d.routes[p.Subnet] = route{dst: p.Subnet, gw: p.NodeIP, link: uplinkIndex}
			continue
		}
		mac := p.VtepMAC.String()
		if _, dup := d.fdb[mac]; dup {
			rejected = append(rejected, rejection{p, "another peer has the same VtepMAC"})
			continue
		}
		gw := p.Subnet.Addr()
		d.routes[p.Subnet] = route{dst: p.Subnet, gw: gw, link: vxlanIndex, onlink: true}
		d.neighs[gw] = p.VtepMAC
		d.fdb[mac] = fdbEntry{mac: p.VtepMAC, dst: p.NodeIP}
	}
	return d, rejected
}

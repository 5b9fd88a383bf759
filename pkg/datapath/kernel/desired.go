package kernel

import (
	"net"
	"net/netip"

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

// buildDesired turns peers (selected by datapath.SelectPeers: valid, Mode
// set, each subnet and vxlan VtepMAC once) into kernel state.
func buildDesired(peers []datapath.Peer, vxlanIndex, uplinkIndex int) desired {
	d := desired{
		routes: make(map[netip.Prefix]route, len(peers)),
		neighs: make(map[netip.Addr]net.HardwareAddr, len(peers)),
		fdb:    make(map[string]fdbEntry, len(peers)),
	}
	for _, p := range peers {
		if p.Mode == datapath.ModeHostGW {
			d.routes[p.Subnet] = route{dst: p.Subnet, gw: p.NodeIP, link: uplinkIndex}
			continue
		}
		gw := p.Subnet.Addr()
		d.routes[p.Subnet] = route{dst: p.Subnet, gw: gw, link: vxlanIndex, onlink: true}
		d.neighs[gw] = p.VtepMAC
		d.fdb[p.VtepMAC.String()] = fdbEntry{mac: p.VtepMAC, dst: p.NodeIP}
	}
	return d
}

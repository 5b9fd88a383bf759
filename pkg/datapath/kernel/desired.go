package kernel

import (
	"bytes"
	"math/bits"
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

// desired is the kernel state a selection asks for, on the devices it was
// built for. Apply keeps it up to date subnet by subnet.
type desired struct {
	// vxlanIndex (0 for host-gw) and uplinkIndex are the devices it uses.
	vxlanIndex, uplinkIndex int
	// routes holds each selected subnet's route.
	routes map[netip.Prefix]route
	// macs holds each vxlan subnet's VTEP MAC, which the neighbour entry
	// at the subnet's address points to (see neigh).
	macs map[netip.Prefix]net.HardwareAddr
	// fdb maps a VTEP MAC to its entry, which all vxlan subnets with that
	// MAC share (a node may lease several).
	fdb map[macKey]fdbEntry
}

// macKey is a VTEP MAC as a map key.
type macKey [6]byte

// keyOf returns mac's key (a MAC the Selector accepted has 6 bytes).
func keyOf(mac net.HardwareAddr) macKey { return macKey(mac) }

// compareMACs orders MAC keys bytewise.
func compareMACs(a, b macKey) int { return bytes.Compare(a[:], b[:]) }

// fdbEntry sends frames for a VTEP MAC to a node IP.
type fdbEntry struct {
	mac net.HardwareAddr
	dst netip.Addr
	// subnets is how many vxlan subnets need the entry.
	subnets int
}

// buildDesired turns peers (selected by a datapath.Selector: valid, Mode
// set, each subnet once, in vxlan mode each VtepMAC with one node IP) into
// kernel state on the given devices.
func buildDesired(peers []datapath.Peer, vxlanIndex, uplinkIndex int) *desired {
	s := &desired{
		vxlanIndex: vxlanIndex, uplinkIndex: uplinkIndex,
		routes: make(map[netip.Prefix]route, len(peers)),
		macs:   make(map[netip.Prefix]net.HardwareAddr, len(peers)),
		fdb:    make(map[macKey]fdbEntry, len(peers)),
	}
	for _, p := range peers {
		s.set(p.Subnet, p, nil)
	}
	return s
}

// set makes subnet sub's entries those of selected peer p (none when p is
// the zero Peer), noting in e (when not nil) the entries it touches.
func (s *desired) set(sub netip.Prefix, p datapath.Peer, e *edit) {
	if e != nil {
		r, ok := s.routes[sub]
		remember(e.routes, sub, r, ok)
		mac, ok := s.neigh(sub.Addr())
		remember(e.neighs, sub.Addr(), mac, ok)
	}
	delete(s.routes, sub)
	if old, ok := s.macs[sub]; ok {
		delete(s.macs, sub)
		s.countFDB(old, netip.Addr{}, -1, e)
	}
	switch {
	case !p.Subnet.IsValid():
	case p.Mode == datapath.ModeHostGW:
		s.routes[sub] = route{dst: sub, gw: p.NodeIP, link: s.uplinkIndex}
	default:
		s.routes[sub] = route{dst: sub, gw: sub.Addr(), link: s.vxlanIndex, onlink: true}
		s.macs[sub] = p.VtepMAC
		s.countFDB(p.VtepMAC, p.NodeIP, 1, e)
	}
}

// countFDB adds n to the number of subnets that need mac's fdb entry, which
// a subnet added (n > 0) sends to dst, and drops the entry when none needs
// it; it notes the entry in e (when not nil) first.
func (s *desired) countFDB(mac net.HardwareAddr, dst netip.Addr, n int, e *edit) {
	key := keyOf(mac)
	f, ok := s.fdb[key]
	if e != nil {
		remember(e.fdb, key, f, ok)
	}
	if f.subnets += n; f.subnets <= 0 {
		delete(s.fdb, key)
		return
	}
	if n > 0 {
		f.mac, f.dst = mac, dst
	}
	s.fdb[key] = f
}

// neigh returns the MAC of the neighbour entry at address a: that of the
// longest vxlan subnet whose address a is (a /24 and a /25 may share it).
func (s *desired) neigh(a netip.Addr) (net.HardwareAddr, bool) {
	a4 := a.As4()
	shortest := 32 - bits.TrailingZeros32(uint32(a4[0])<<24|uint32(a4[1])<<16|uint32(a4[2])<<8|uint32(a4[3]))
	for n := 32; n >= shortest; n-- {
		if mac, ok := s.macs[netip.PrefixFrom(a, n)]; ok {
			return mac, true
		}
	}
	return nil, false
}

// neighs returns every neighbour entry: address -> MAC.
func (s *desired) neighs() map[netip.Addr]net.HardwareAddr {
	out := make(map[netip.Addr]net.HardwareAddr, len(s.macs))
	for sub := range s.macs {
		if _, ok := out[sub.Addr()]; !ok {
			out[sub.Addr()], _ = s.neigh(sub.Addr())
		}
	}
	return out
}

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
	// vxlanIndex are the vxlan devices by family.index (0: none, e.g. for
	// host-gw) and uplinkIndex the uplink: the devices it uses.
	vxlanIndex  [2]int
	uplinkIndex int
	// routes holds each selected subnet's route.
	routes map[netip.Prefix]route
	// macs holds each vxlan subnet's VTEP MAC, which the neighbour entry
	// at the subnet's address points to (see neigh).
	macs map[netip.Prefix]net.HardwareAddr
	// fdb maps a VTEP MAC of a family to its entry on the family's device,
	// which all vxlan subnets of the family with that MAC share (a node may
	// lease several).
	fdb map[macKey]fdbEntry
}

// macKey is a VTEP MAC and the family of the device it is on (its last
// byte, the family.index) as a map key: the two devices are apart.
type macKey [7]byte

// keyOf returns the key of mac (a MAC the Selector accepted has 6 bytes)
// on family f's device.
func keyOf(mac net.HardwareAddr, f *family) macKey {
	var k macKey
	copy(k[:], mac)
	k[6] = byte(f.index)
	return k
}

// family is the family of k's device.
func (k macKey) family() *family { return families[k[6]] }

// compareMACs orders MAC keys bytewise.
func compareMACs(a, b macKey) int { return bytes.Compare(a[:], b[:]) }

// vxlanOf is the index of the vxlan device that carries a's family.
func (s *desired) vxlanOf(a netip.Addr) int { return s.vxlanIndex[familyOf(a).index] }

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
func buildDesired(peers []datapath.Peer, vxlanIndex [2]int, uplinkIndex int) *desired {
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
	f := familyOf(sub.Addr())
	if old, ok := s.macs[sub]; ok {
		delete(s.macs, sub)
		s.countFDB(keyOf(old, f), old, netip.Addr{}, -1, e)
	}
	switch {
	case !p.Subnet.IsValid():
	case p.Mode == datapath.ModeHostGW:
		s.routes[sub] = route{dst: sub, gw: p.NodeIP, link: s.uplinkIndex}
	default:
		s.routes[sub] = route{dst: sub, gw: sub.Addr(), link: s.vxlanIndex[f.index], onlink: true}
		s.macs[sub] = p.VtepMAC
		s.countFDB(keyOf(p.VtepMAC, f), p.VtepMAC, p.NodeIP, 1, e)
	}
}

// countFDB adds n to the number of subnets that need the fdb entry of mac
// (at key), which a subnet added (n > 0) sends to dst, and drops the entry
// when none needs it; it notes the entry in e (when not nil) first.
func (s *desired) countFDB(key macKey, mac net.HardwareAddr, dst netip.Addr, n int, e *edit) {
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
	for n := a.BitLen(); n >= a.BitLen()-trailingZeros(a); n-- {
		if mac, ok := s.macs[netip.PrefixFrom(a, n)]; ok {
			return mac, true
		}
	}
	return nil, false
}

// trailingZeros counts a's trailing zero bits: a is the address of the
// prefixes of that many bits or fewer.
func trailingZeros(a netip.Addr) int {
	b := a.AsSlice()
	n := 0
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] != 0 {
			return n + bits.TrailingZeros8(b[i])
		}
		n += 8
	}
	return n
}

// neighs returns the neighbour entries of family f: address -> MAC.
func (s *desired) neighs(f *family) map[netip.Addr]net.HardwareAddr {
	out := make(map[netip.Addr]net.HardwareAddr, len(s.macs))
	for sub := range s.macs {
		if _, ok := out[sub.Addr()]; !ok && familyOf(sub.Addr()) == f {
			out[sub.Addr()], _ = s.neigh(sub.Addr())
		}
	}
	return out
}

// fdbOf returns the fdb entries of family f's device.
func (s *desired) fdbOf(f *family) map[macKey]fdbEntry {
	out := make(map[macKey]fdbEntry, len(s.fdb))
	for k, e := range s.fdb {
		if k.family() == f {
			out[k] = e
		}
	}
	return out
}

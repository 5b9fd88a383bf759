package ebpf

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// be32 returns a as the generated types hold a __be32: its network-order
// bytes read in host byte order.
func be32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

// addrOf is the inverse of be32.
func addrOf(v uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// mac6 returns mac as the programs store it (zero if it is not 6 bytes).
func mac6(mac net.HardwareAddr) [6]uint8 {
	var m [6]uint8
	if len(mac) == 6 {
		copy(m[:], mac)
	}
	return m
}

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

// prefixOf decodes an address and length pair; zero when both are zero.
func prefixOf(addr, bits uint32) netip.Prefix {
	if addr == 0 && bits == 0 {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(addrOf(addr), int(bits))
}

// optionalAddr decodes an address; 0.0.0.0 (unset) becomes the zero Addr.
func optionalAddr(v uint32) netip.Addr {
	if v == 0 {
		return netip.Addr{}
	}
	return addrOf(v)
}

// optionalMAC returns m, or nil when it is all zeros (unset).
func optionalMAC(m [6]uint8) net.HardwareAddr {
	if m == [6]uint8{} {
		return nil
	}
	return net.HardwareAddr(m[:])
}

// ntohs turns a __be16 read in host order into the port number.
func ntohs(v uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], v)
	return binary.BigEndian.Uint16(b[:])
}

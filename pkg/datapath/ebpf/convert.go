package ebpf

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// mappedBits is how much longer an IPv4 prefix is as the programs key it:
// IPv4 addresses are mapped into IPv6 (::ffff:a.b.c.d), behind 96 bits.
const mappedBits = 96

// addrKey returns a as the programs hold it (union addr): an IPv6 address
// as is, an IPv4 address mapped (::ffff:a.b.c.d); the zero Addr is all zeros.
func addrKey(a netip.Addr) weftAddr {
	return weftAddr{B: a.As16()}
}

// addrOf is the inverse of addrKey (mapped addresses become IPv4).
func addrOf(v weftAddr) netip.Addr {
	return netip.AddrFrom16(v.B).Unmap()
}

// familyOf is the programs' family index of a (IPv4 or mapped: 0).
func familyOf(a netip.Addr) weftFamily {
	if a.Unmap().Is4() {
		return weftFamilyFAMILY_IPV4
	}
	return weftFamilyFAMILY_IPV6
}

// lpmKey is the remote subnets map's key of sub.
func lpmKey(sub netip.Prefix) weftLpmKey {
	bits := sub.Bits()
	if sub.Addr().Is4() {
		bits += mappedBits
	}
	return weftLpmKey{Prefixlen: uint32(bits), Addr: addrKey(sub.Masked().Addr())}
}

// prefixOfKey is the inverse of lpmKey.
func prefixOfKey(k weftLpmKey) netip.Prefix {
	a, bits := addrOf(k.Addr), int(k.Prefixlen)
	if a.Is4() {
		bits -= mappedBits
	}
	return netip.PrefixFrom(a, bits)
}

// familyConfig is the node config of the family of nodeIP: its node IP,
// own subnet (zero while there is none), pod network and VTEP MAC (nil on
// host-gw).
func familyConfig(nodeIP netip.Addr, subnet, network netip.Prefix, vtep net.HardwareAddr) weftFamilyConfig {
	c := weftFamilyConfig{
		NodeIp:  addrKey(nodeIP),
		Network: addrKey(network.Masked().Addr()), NetworkLen: uint32(network.Bits()),
		VtepMac: mac6(vtep),
	}
	if subnet.IsValid() {
		c.Subnet, c.SubnetLen = addrKey(subnet.Masked().Addr()), uint32(subnet.Bits())
	}
	return c
}

// mac6 returns mac as the programs store it (zero if it is not 6 bytes).
func mac6(mac net.HardwareAddr) [6]uint8 {
	var m [6]uint8
	if len(mac) == 6 {
		copy(m[:], mac)
	}
	return m
}

// prefixOf decodes an address and length pair of a family config; zero
// when the address is unset.
func prefixOf(addr weftAddr, bits uint32) netip.Prefix {
	if addr == (weftAddr{}) {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(addrOf(addr), int(bits))
}

// optionalAddr decodes an address; all zeros (unset) becomes the zero Addr.
func optionalAddr(v weftAddr) netip.Addr {
	if v == (weftAddr{}) {
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

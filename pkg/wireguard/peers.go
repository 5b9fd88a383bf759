package wireguard

import (
	"net"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Peer is one peer node as the device must know it.
type Peer struct {
	PublicKey wgtypes.Key
	// Endpoint is the peer's node IP and the backend's port.
	Endpoint netip.AddrPort
	// AllowedIPs are the peer's pod subnets.
	AllowedIPs []netip.Prefix
}

// PeerSettings are what the backend applies to every peer.
type PeerSettings struct {
	// PSK is the pre-shared key; nil for none.
	PSK *wgtypes.Key
	// Keepalive is the persistent keepalive interval; 0 turns it off.
	Keepalive time.Duration
}

// Config returns the wgctrl configuration that makes the device's peer
// p.PublicKey equal to p: its allowed IPs are replaced, not added to.
func (s PeerSettings) Config(p Peer) wgtypes.PeerConfig {
	allowed := make([]net.IPNet, len(p.AllowedIPs))
	for i, a := range p.AllowedIPs {
		allowed[i] = net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())}
	}
	psk := s.PSK
	if psk == nil {
		psk = &wgtypes.Key{} // the zero key clears a PSK set earlier
	}
	keepalive := s.Keepalive
	return wgtypes.PeerConfig{
		PublicKey:                   p.PublicKey,
		PresharedKey:                psk,
		Endpoint:                    net.UDPAddrFromAddrPort(p.Endpoint),
		PersistentKeepaliveInterval: &keepalive,
		ReplaceAllowedIPs:           true,
		AllowedIPs:                  allowed,
	}
}

// RemoveConfig returns the wgctrl configuration that removes peer key.
func RemoveConfig(key wgtypes.Key) wgtypes.PeerConfig {
	return wgtypes.PeerConfig{PublicKey: key, Remove: true}
}

package datapath

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
)

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
	case node.Backend == ModeWireGuard && p.PublicKey == "":
		return "wireguard peer without a public key"
	case node.Backend == ModeWireGuard && !validKey(p.PublicKey):
		return "wireguard peer's public key is not 32 bytes in base64"
	}
	return ""
}

// decodeKey decodes a base64 WireGuard key.
func decodeKey(s string) ([32]byte, bool) {
	var key [32]byte
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != len(key) {
		return key, false
	}
	return [32]byte(b), true
}

// validKey reports whether s is a base64 WireGuard key.
func validKey(s string) bool {
	_, ok := decodeKey(s)
	return ok
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
			"vtep_mac", r.Peer.VtepMAC.String(), "public_key", r.Peer.PublicKey, "reason", r.Reason)
	}
}

package datapath

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
)

// peerProblem returns why p must not be programmed on node with own subnets
// own (one per family, invalid while unknown), or "" when it is fine.
func peerProblem(node Node, own [2]netip.Prefix, p Peer) string {
	fam, enabled := node.Family(p.Subnet.Addr())
	switch {
	case !p.Subnet.IsValid() || p.Subnet.Addr().Is4In6():
		return "subnet is not valid"
	case !enabled:
		return fmt.Sprintf("subnet is %s, which this node does not run", familyName(p.Subnet.Addr()))
	case p.Subnet != p.Subnet.Masked():
		return "subnet is not masked"
	case p.Subnet.Bits() < fam.Network.Bits() || !fam.Network.Contains(p.Subnet.Addr()):
		return fmt.Sprintf("subnet is outside network %s", fam.Network)
	case own[familyIndex(p.Subnet.Addr())].IsValid() && own[familyIndex(p.Subnet.Addr())].Overlaps(p.Subnet):
		return "subnet overlaps this node's subnet"
	case p.NodeIP.Is4() != p.Subnet.Addr().Is4() || p.NodeIP.Is4In6() || p.NodeIP.IsUnspecified() || p.NodeIP.IsMulticast():
		return fmt.Sprintf("node IP is not a unicast %s address", familyName(p.Subnet.Addr()))
	case p.NodeIP == fam.NodeIP:
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

// familyIndex is 0 for IPv4 addresses and 1 for IPv6 ones: the index of
// per-family arrays.
func familyIndex(a netip.Addr) int {
	if a.Is6() {
		return 1
	}
	return 0
}

// familyName is "IPv4" or "IPv6".
func familyName(a netip.Addr) string {
	if a.Is6() {
		return "IPv6"
	}
	return "IPv4"
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

package cluster

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// Family is an IP address family of the pod network and the underlay.
type Family int

// The two families; their values are the IP versions.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// String is "IPv4" or "IPv6".
func (f Family) String() string { return fmt.Sprintf("IPv%d", int(f)) }

// Netlink is the family's netlink.FAMILY_V4 or FAMILY_V6.
func (f Family) Netlink() int {
	if f == IPv6 {
		return netlink.FAMILY_V6
	}
	return netlink.FAMILY_V4
}

// FamilyOf is the family of a.
func FamilyOf(a netip.Addr) Family {
	if a.Unmap().Is4() {
		return IPv4
	}
	return IPv6
}

// Stack is which families a cluster's pod network has, as net-conf.json's
// EnableIPv4 and EnableIPv6 say.
type Stack int

// The three stacks flannel runs.
const (
	// IPv4Only is flannel's default: Network only.
	IPv4Only Stack = iota
	// DualStack is Network plus EnableIPv6 and IPv6Network.
	DualStack
	// IPv6Only is EnableIPv4 false, EnableIPv6 and IPv6Network.
	IPv6Only
)

// Stacks are the three stacks, IPv4Only first.
var Stacks = []Stack{IPv4Only, DualStack, IPv6Only}

// String names the stack in test names: "ipv4", "dual", "ipv6".
func (s Stack) String() string {
	switch s {
	case DualStack:
		return "dual"
	case IPv6Only:
		return "ipv6"
	}
	return "ipv4"
}

// Families are the stack's families, IPv4 first.
func (s Stack) Families() []Family {
	switch s {
	case DualStack:
		return []Family{IPv4, IPv6}
	case IPv6Only:
		return []Family{IPv6}
	}
	return []Family{IPv4}
}

// Has reports whether the stack includes f.
func (s Stack) Has(f Family) bool {
	for _, g := range s.Families() {
		if g == f {
			return true
		}
	}
	return false
}

// StackOf reads the stack from net-conf.json (EnableIPv4 defaults to true,
// EnableIPv6 to false); empty or unreadable JSON is IPv4Only.
func StackOf(netConf string) Stack {
	conf := struct{ EnableIPv4, EnableIPv6 *bool }{}
	if json.Unmarshal([]byte(netConf), &conf) != nil || conf.EnableIPv6 == nil || !*conf.EnableIPv6 {
		return IPv4Only
	}
	if conf.EnableIPv4 != nil && !*conf.EnableIPv4 {
		return IPv6Only
	}
	return DualStack
}

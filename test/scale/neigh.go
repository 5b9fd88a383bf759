package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/test/cluster"
)

// neighbours looks up single neighbour and vxlan fdb entries in a node's
// namespace with RTM_GETNEIGH requests (no dump, Linux 5.0+), so a lookup
// costs the same at any number of peers. netlink.Handle only dumps them.
type neighbours struct {
	sockets map[int]*nl.SocketHandle
}

// replyTimeout bounds waiting for the kernel's answer.
var replyTimeout = unix.Timeval{Sec: 5}

func newNeighbours(ns *cluster.Netns) (*neighbours, error) {
	var s *nl.NetlinkSocket
	err := ns.Do(func() (err error) {
		s, err = nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlink socket in %s: %w", ns.Name, err)
	}
	if err := s.SetReceiveTimeout(&replyTimeout); err != nil {
		s.Close()
		return nil, fmt.Errorf("netlink socket in %s: %w", ns.Name, err)
	}
	return &neighbours{sockets: map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}}, nil
}

// get asks for the one entry of family on the device at index that attr
// names; nil when there is none.
func (n *neighbours) get(family, flags uint8, index int, attr *nl.RtAttr) (*netlink.Neigh, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETNEIGH, 0)
	req.Sockets = n.sockets
	req.AddData(&netlink.Ndmsg{Family: family, Flags: flags, Index: uint32(index)})
	req.AddData(attr)
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWNEIGH)
	if errors.Is(err, unix.ENOENT) || err == nil && len(msgs) == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return netlink.NeighDeserialize(msgs[0])
}

// neigh returns the MAC of ip's neighbour entry on the device at index.
func (n *neighbours) neigh(index int, ip netip.Addr) (net.HardwareAddr, bool, error) {
	e, err := n.get(unix.AF_INET, 0, index, nl.NewRtAttr(unix.NDA_DST, ip.AsSlice()))
	if err != nil {
		return nil, false, fmt.Errorf("get neighbour %s: %w", ip, err)
	}
	if e == nil {
		return nil, false, nil
	}
	return e.HardwareAddr, true, nil
}

// fdb returns the destination of mac's fdb entry on the vxlan device at
// index.
func (n *neighbours) fdb(index int, mac net.HardwareAddr) (netip.Addr, bool, error) {
	e, err := n.get(unix.AF_BRIDGE, unix.NTF_SELF, index, nl.NewRtAttr(unix.NDA_LLADDR, mac))
	if err != nil {
		return netip.Addr{}, false, fmt.Errorf("get fdb entry %s: %w", mac, err)
	}
	if e == nil {
		return netip.Addr{}, false, nil
	}
	dst, _ := netip.AddrFromSlice(e.IP.To4())
	return dst, true, nil
}

func (n *neighbours) close() { n.sockets[unix.NETLINK_ROUTE].Socket.Close() }

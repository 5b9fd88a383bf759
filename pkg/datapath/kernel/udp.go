package kernel

import (
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/vishvananda/netlink"
)

// ensureUDP makes the udp backend's forwarder serve d.node: it keeps a
// running tunnel for the same node IP and port whose device still exists,
// and otherwise (re)opens it. It sets the device's MTU (uplink - 28 unless
// node.MTU says otherwise), brings it up and puts the own subnet's address
// on it with the Network's prefix length, so the kernel routes the whole
// Network into the device. Caller holds d.mu.
func (d *Datapath) ensureUDP(h *netlink.Handle, uplink netlink.Link) (netlink.Link, error) {
	mtu := d.node.MTU
	if mtu == 0 {
		mtu = uplink.Attrs().MTU - udpOverhead
	}
	link, err := h.LinkByName(TUNName)
	var notFound netlink.LinkNotFoundError
	if err != nil && !errors.As(err, &notFound) {
		return nil, fmt.Errorf("find %s: %w", TUNName, err)
	}
	if d.udp != nil && (link == nil || !d.udp.matches(d.node)) {
		if link == nil {
			slog.Warn("TUN device gone: reopening the udp backend", "device", TUNName)
		}
		err := d.udp.close()
		d.udp = nil
		if err != nil {
			return nil, err
		}
	}
	if d.udp == nil {
		if link != nil && link.Type() != "tuntap" {
			slog.Warn("replacing incompatible device", "device", TUNName, "type", link.Type())
			if err := deleteDevice(h, TUNName); err != nil {
				return nil, err
			}
		}
		if d.udp, err = openUDPTunnel(d.node, mtu, d.peers, d.udpStats); err != nil {
			return nil, err
		}
		if link, err = h.LinkByName(TUNName); err != nil {
			return nil, fmt.Errorf("find created %s: %w", TUNName, err)
		}
		slog.Info("udp backend forwarding", "device", TUNName, "listen", fmt.Sprintf("%s:%d", d.node.NodeIP, d.node.Port))
	}
	d.udp.mtu.Store(int32(mtu))
	if link.Attrs().MTU != mtu {
		if err := h.LinkSetMTU(link, mtu); err != nil {
			return nil, fmt.Errorf("set MTU %d on %s: %w", mtu, TUNName, err)
		}
		link.Attrs().MTU = mtu
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("bring up %s: %w", TUNName, err)
		}
	}
	// The ICMP errors the forwarding loop writes into flannel0 come from
	// flannel0's own address: without accept_local they are martians.
	if _, err := sysctlSet("/proc/sys/net/ipv4/conf/"+TUNName+"/accept_local", "1"); err != nil {
		return nil, err
	}
	if own := d.subnets[ipv4.index]; own.IsValid() {
		if err := ensureAddress(h, link, own, d.node.Network.Bits()); err != nil {
			return nil, err
		}
	}
	return link, nil
}

// closeUDP stops the udp backend's forwarder if it runs. Caller holds d.mu.
func (d *Datapath) closeUDP() error {
	if d.udp == nil {
		return nil
	}
	err := d.udp.close()
	d.udp = nil
	return err
}

package daemon

import (
	"log/slog"
	"net/netip"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/lease"
)

// peersFromLeases turns the lease set into the datapath's peer set: every
// lease but our own whose backend matches ours and whose data is valid.
// Leases it cannot use are logged (once per distinct lease set) and left out.
func peersFromLeases(own netip.Prefix, backendType string, network netip.Prefix, leases []lease.Lease) []datapath.Peer {
	peers := make([]datapath.Peer, 0, len(leases))
	for _, l := range leases {
		if l.Subnet == own {
			continue
		}
		// Built only when something is logged: this runs for every lease on
		// every lease event.
		log := func() *slog.Logger { return slog.With("subnet", l.Subnet, "peer", l.Attrs.PublicIP) }
		switch {
		case !network.Contains(l.Subnet.Addr()) || l.Subnet.Bits() < network.Bits():
			log().Warn("ignoring lease outside the cluster network", "network", network)
			continue
		case l.Attrs.BackendType != backendType:
			log().Warn("ignoring lease of another backend type", "backend", l.Attrs.BackendType, "ours", backendType)
			continue
		case !l.Attrs.PublicIP.Is4():
			log().Warn("ignoring lease without an IPv4 PublicIP")
			continue
		}
		p := datapath.Peer{Subnet: l.Subnet, NodeIP: l.Attrs.PublicIP}
		if backendType == string(datapath.ModeVXLAN) {
			mac, tunnel, err := l.VXLAN()
			if err != nil {
				log().Warn("ignoring vxlan lease with bad BackendData", "err", err)
				continue
			}
			p.VtepMAC, p.TunnelIP = mac, tunnel
		}
		peers = append(peers, p)
	}
	return peers
}

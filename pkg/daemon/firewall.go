package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/weftnet/weft/pkg/firewall"
)

// firewallConfig is the netfilter rules this node wants now.
func (d *Daemon) firewallConfig() firewall.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return firewall.Config{
		Network: d.net.Network, Subnet: d.own.Subnet,
		IPv6Network: d.net.IPv6Network, IPv6Subnet: d.own.IPv6Subnet,
		Masquerade: d.cfg.IPMasq, Forward: d.cfg.ForwardRules,
		NoFullyRandom: d.cfg.NoFullyRandom, NFTables: d.net.EnableNFTables,
	}
}

// keepFirewall checks the rules every FirewallResync and repairs drift (a
// flushed chain, a deleted jump, flannel's rules written back); the node is
// not ready while they are wrong.
func (d *Daemon) keepFirewall(ctx context.Context) {
	tick := time.NewTicker(d.cfg.FirewallResync)
	defer tick.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c := d.firewallConfig()
		drift := d.fw.Check(ctx, c)
		if drift == nil {
			continue
		}
		d.setReady(fmt.Errorf("firewall rules: %w", drift))
		if err := d.fw.Ensure(ctx, c); err != nil {
			if msg := err.Error(); msg != lastErr && ctx.Err() == nil {
				slog.Error("repair firewall rules failed, retrying", "drift", drift, "err", err, "retry_in", d.cfg.FirewallResync)
				lastErr = msg
			}
			continue
		}
		lastErr = ""
		slog.Warn("firewall rules drifted, repaired", "drift", drift)
		d.setReady(nil)
	}
}

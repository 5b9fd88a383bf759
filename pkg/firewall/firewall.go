// Package firewall installs flannel's netfilter rules on this node: IP
// masquerade (--ip-masq) and the FORWARD accepts (--iptables-forward-rules)
// that keep pod traffic flowing under a FORWARD policy of DROP (Docker's).
//
// Each address family the node runs has its own rules, with its network
// and subnet, as flannel's: without net-conf.json's EnableNFTables they
// live in iptables (IPv4) and ip6tables (IPv6), in the chains
// FLANNEL-POSTRTG (nat, jumped to from POSTROUTING) and FLANNEL-FWD (filter,
// jumped to from FORWARD); with it in the nftables tables "ip
// flannel-ipv4" and "ip6 flannel-ipv6" (chains postrtg and forward). Names,
// order, comments and jump positions are flannel's, on purpose: what
// flannel left on a node is adopted (replaced by weft's exact content), so a
// node migrated from flannel has one set of rules. The rules of a family
// the node does not run, the backend not in use and weft's own table of
// earlier versions ("ip weft") are removed.
//
// Both backends are driven by their command line tools, as flannel's are
// (iptables-save and iptables-restore, their ip6tables twins; nft, since nftables' Go library
// cannot write the table and chain comments flannel's tables carry). Every
// call works in the calling thread's network namespace.
package firewall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Config is what the rules depend on.
type Config struct {
	// Network is the cluster's IPv4 pod CIDR, Subnet this node's IPv4 pod
	// subnet; both invalid when IPv4 is off.
	Network, Subnet netip.Prefix
	// IPv6Network and IPv6Subnet are the IPv6 pair; both invalid when IPv6
	// is off.
	IPv6Network, IPv6Subnet netip.Prefix
	// Masquerade installs the masquerade rules (--ip-masq).
	Masquerade bool
	// Forward installs the FORWARD accepts (--iptables-forward-rules).
	Forward bool
	// NoFullyRandom masquerades without fully random source ports
	// (--ip-masq-fully-random-disable). Without it the ports are fully
	// random where the tools support it, as flannel does.
	NoFullyRandom bool
	// NFTables puts the rules in nftables instead of iptables
	// (net-conf.json's EnableNFTables).
	NFTables bool
}

// of returns c's network and subnet of family f (invalid when f is off).
func (c Config) of(f *family) (network, subnet netip.Prefix) {
	if f == ipv6 {
		return c.IPv6Network, c.IPv6Subnet
	}
	return c.Network, c.Subnet
}

func (c Config) validate() error {
	if !c.Network.IsValid() && !c.IPv6Network.IsValid() {
		return errors.New("firewall rules need an IPv4 or IPv6 network, got neither")
	}
	for _, f := range families {
		n, s := c.of(f)
		switch {
		case !n.IsValid():
		case !f.is(n.Addr()):
			return fmt.Errorf("firewall rules: %s network %v is not an %s prefix", f.name, n, f.name)
		case c.Masquerade && (!s.IsValid() || !f.is(s.Addr()) || s.Bits() < n.Bits() || !n.Contains(s.Addr())):
			return fmt.Errorf("masquerade: subnet %v is not an %s subnet inside network %v", s, f.name, n)
		}
	}
	return nil
}

// rules returns the masquerade and forward rules c asks for family f (nil
// for each it does not, and for a family that is off), spelled for
// nftables when nft is set. fullyRandom says whether the tools can
// masquerade with fully random ports.
func (c Config) rules(f *family, nft, fullyRandom bool) (masq, fwd []rule) {
	n, s := c.of(f)
	if !n.IsValid() {
		return nil, nil
	}
	n = n.Masked()
	if c.Masquerade {
		masq = masqRules(f, n, s.Masked(), nft, fullyRandom && !c.NoFullyRandom)
	}
	if c.Forward {
		fwd = forwardRules(n)
	}
	return masq, fwd
}

// Firewall installs, checks and removes the rules. It finds the node's
// tools on first use (which iptables holds the node's rules, and whether
// masquerade can use fully random ports) and keeps what it found; its
// methods may be called from several goroutines.
type Firewall struct {
	mu  sync.Mutex
	ipt *iptables
	nft *nftables
}

// New returns a Firewall that has not looked at the node yet.
func New() *Firewall { return &Firewall{} }

// Ensure makes the node's rules equal to c, changing nothing when they are:
// the chosen backend holds exactly c's rules (each chain replaced in one
// transaction when it differs), the other backend and stale tables hold
// none.
func (f *Firewall) Ensure(ctx context.Context, c Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := f.backend(ctx, c)
	if err != nil {
		return err
	}
	if err := b.ensure(ctx, c); err != nil {
		return err
	}
	var other error
	if c.NFTables {
		other = f.removeIptables(ctx)
	} else {
		other = f.removeTables(ctx, nftTables()...)
	}
	if err := errors.Join(other, f.removeTables(ctx, staleTables...)); err != nil {
		return fmt.Errorf("remove rules of the backend not in use: %w", err)
	}
	return nil
}

// Check returns nil when the chosen backend holds exactly c's rules, else
// an error that says what differs.
func (f *Firewall) Check(ctx context.Context, c Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := f.backend(ctx, c)
	if err != nil {
		return err
	}
	return b.check(ctx, c)
}

// backend is one way of holding the rules: iptables or nftables.
type backend interface {
	ensure(ctx context.Context, c Config) error
	check(ctx context.Context, c Config) error
}

// backend validates c and returns the backend it asks for.
func (f *Firewall) backend(ctx context.Context, c Config) (backend, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if c.NFTables {
		return f.nftables(ctx)
	}
	return f.iptables(ctx)
}

// Remove deletes every rule Ensure may have installed in either backend,
// flannel's left-overs and weft's table of earlier versions. A backend
// whose tools are not installed is skipped.
func (f *Firewall) Remove(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return errors.Join(f.removeIptables(ctx), f.removeTables(ctx, append(nftTables(), staleTables...)...))
}

// removeIptables deletes flannel's chains and jumps from iptables and
// ip6tables.
func (f *Firewall) removeIptables(ctx context.Context) error {
	ipt, err := f.iptables(ctx)
	if err != nil {
		return unlessAbsent(err)
	}
	return ipt.ensure(ctx, Config{})
}

// removeTables deletes those of the nftables tables (e.g. "ip weft") that
// exist.
func (f *Firewall) removeTables(ctx context.Context, tables ...string) error {
	nft, err := f.nftables(ctx)
	if err != nil {
		return unlessAbsent(err)
	}
	return nft.deleteTables(ctx, tables...)
}

// unlessAbsent returns err unless it says a tool is not installed: then
// there is nothing its backend could hold for weft to remove.
func unlessAbsent(err error) error {
	if errors.Is(err, errNoTool) {
		slog.Debug("nothing to remove", "reason", err)
		return nil
	}
	return err
}

// iptables returns the node's iptables tools, finding them on first use.
func (f *Firewall) iptables(ctx context.Context) (*iptables, error) {
	return remember(ctx, &f.ipt, findIptables)
}

// nftables returns the node's nft tool, finding it on first use.
func (f *Firewall) nftables(ctx context.Context) (*nftables, error) {
	return remember(ctx, &f.nft, findNFTables)
}

// remember returns *p, setting it with find when it is nil (a failed find
// is tried again next time).
func remember[T any](ctx context.Context, p **T, find func(context.Context) (*T, error)) (*T, error) {
	if *p == nil {
		found, err := find(ctx)
		if err != nil {
			return nil, err
		}
		*p = found
	}
	return *p, nil
}

// errNoTool is wrapped by errors about a tool that is not installed.
var errNoTool = errors.New("not installed")

// toolTimeout bounds every run of a tool.
const toolTimeout = 30 * time.Second

// run runs a tool with stdin as its input and returns its output; the error
// says what ran and what the tool wrote to stderr.
func run(ctx context.Context, stdin, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return "", fmt.Errorf("%s: %w", name, errNoTool)
		}
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// firstDiff describes the first line where got differs from want, or ""
// when they are equal.
func firstDiff(what string, got, want []string) string {
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(got):
			return fmt.Sprintf("%s: line %d is missing, want %q", what, i+1, want[i])
		case i >= len(want):
			return fmt.Sprintf("%s: unexpected line %d %q", what, i+1, got[i])
		case got[i] != want[i]:
			return fmt.Sprintf("%s: line %d is %q, want %q", what, i+1, got[i], want[i])
		}
	}
	return ""
}

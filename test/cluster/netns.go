package cluster

import (
	"context"
	"fmt"
	"net"
	"os/exec"

	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/test/testns"
)

// Netns is a named network namespace the cluster created. It exists apart
// from testns.NS because the cluster also runs outside tests (the demo).
type Netns struct {
	// Name is the namespace's name under /run/netns.
	Name    string
	handle  netns.NsHandle
	deleted bool
}

// forwardSysctls make a namespace forward both families (a node, the
// router).
var forwardSysctls = []string{"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"}

// noDADSysctls turn IPv6 duplicate address detection off for every
// interface of a namespace, existing or created later (uplinks, cni0,
// flannel-v6.1, pods' eth0): its addresses are usable at once.
var noDADSysctls = []string{"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"}

// NewNetns creates the namespace name with its loopback up and IPv6
// duplicate address detection off.
func NewNetns(ctx context.Context, name string) (*Netns, error) {
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %w: %s", name, err, out)
	}
	n := &Netns{Name: name, handle: -1}
	h, err := netns.GetFromName(name)
	if err != nil {
		return n, fmt.Errorf("open netns %s: %w", name, err)
	}
	n.handle = h
	if _, err := n.Exec(ctx, "ip", "link", "set", "lo", "up"); err != nil {
		return n, err
	}
	if _, err := n.Exec(ctx, "sysctl", append([]string{"-qw"}, noDADSysctls...)...); err != nil {
		return n, err
	}
	return n, nil
}

// Path is the namespace's bind mount, as CNI wants it.
func (n *Netns) Path() string { return "/run/netns/" + n.Name }

// Do runs f on a locked OS thread inside the namespace. Sockets f opens stay
// in the namespace; processes f starts inherit it.
func (n *Netns) Do(f func() error) error { return testns.Enter(n.handle, n.Name, f) }

// DialContext dials addr from inside the namespace: the root namespace has
// no route to the underlay, by design.
func (n *Netns) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := n.Do(func() error {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		conn = c
		return err
	})
	return conn, err
}

// Command returns a command that runs name inside the namespace
// (ip netns exec, which execs name so the PID is name's).
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Exec runs a command inside the namespace and returns its combined output.
func (n *Netns) Exec(ctx context.Context, name string, args ...string) (string, error) {
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), n.Name, err, out)
	}
	return string(out), nil
}

// Netlink returns a netlink handle bound to the namespace; close it after use.
func (n *Netns) Netlink() (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(n.handle)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", n.Name, err)
	}
	return h, nil
}

// Delete removes the namespace; nil or already deleted is fine.
func (n *Netns) Delete() error {
	if n == nil || n.deleted {
		return nil
	}
	n.deleted = true
	if n.handle >= 0 {
		n.handle.Close()
		n.handle = -1
	}
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %w: %s", n.Name, err, out)
	}
	return nil
}

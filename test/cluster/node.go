package cluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// HealthzPort is weftd's --healthz-port on every node (each node has its
// own namespace, so they do not collide). /healthz, /readyz and /metrics are
// served there.
const HealthzPort = 9440

// Node is one node namespace with its underlay link and its weftd.
type Node struct {
	// Name is the short name, "n1" for the first node.
	Name string
	// NS is the node's network namespace.
	NS *Netns
	// IP is the node's IPv4 underlay address on eth0 (flannel's PublicIP).
	IP netip.Addr
	// IPv6 is the node's IPv6 underlay address on eth0 (flannel's
	// PublicIPv6).
	IPv6 netip.Addr
	// Segment is the underlay segment eth0 is bridged to.
	Segment int
	// Dir holds this node's files (logs, subnet file, CNI and IPAM state).
	Dir string
	// SubnetFile is weftd's --subnet-file.
	SubnetFile string
	// BPFDir is weftd's --bpf-dir, a bpffs mounted for this node alone.
	BPFDir string
	// EndpointDir is weftd's --endpoint-dir, this node's own: the nodes
	// share the host's filesystem. weft-cni finds it in the subnet file.
	EndpointDir string
	// Env is extra environment for weftd, read at every start.
	Env []string
	// Args are extra weftd flags, read at every start.
	Args []string

	c     *Cluster
	bins  Binaries // what the node runs (see Upgrade)
	weftd *Process
	// stopped is set while weftd is stopped on purpose (StopWeftd): alive
	// does not fail then.
	stopped bool
	pods    int
}

func (c *Cluster) buildNode(ctx context.Context, i int) (*Node, error) {
	seg := 0
	if i < len(c.opts.Segments) {
		seg = c.opts.Segments[i]
	}
	n := &Node{
		Name:    fmt.Sprintf("n%d", i+1),
		IP:      underlayIP(seg, i+1, IPv4),
		IPv6:    underlayIP(seg, i+1, IPv6),
		Segment: seg,
		Args:    c.opts.WeftdArgs,
		c:       c,
		bins:    c.opts.Binaries,
	}
	if i < len(c.opts.NodeBinaries) && c.opts.NodeBinaries[i] != (Binaries{}) {
		n.bins = c.opts.NodeBinaries[i]
	}
	n.Dir = filepath.Join(c.Dir, n.Name)
	n.SubnetFile = filepath.Join(n.Dir, "subnet.env")
	n.BPFDir = filepath.Join(n.Dir, "bpf")
	n.EndpointDir = filepath.Join(n.Dir, "endpoints")
	if i < len(c.opts.Datapaths) && c.opts.Datapaths[i] != "" {
		n.Env = []string{"WEFTD_DATAPATH=" + c.opts.Datapaths[i]}
	}
	if err := os.MkdirAll(n.BPFDir, 0o755); err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	if err := n.installCNI(); err != nil {
		return nil, err
	}
	// ip netns exec remounts /sys, so weftd cannot pin under /sys/fs/bpf:
	// each node gets its own bpffs.
	err := c.add(func() error {
		if err := unix.Mount("bpf", n.BPFDir, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount bpffs on %s: %w", n.BPFDir, err)
		}
		return nil
	}, func() error {
		if err := unix.Unmount(n.BPFDir, unix.MNT_DETACH); err != nil && err != unix.EINVAL {
			return fmt.Errorf("unmount %s: %w", n.BPFDir, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = c.add(func() error {
		ns, err := NewNetns(ctx, c.Prefix+n.Name)
		n.NS = ns
		return err
	}, func() error { return n.NS.Delete() })
	if err != nil {
		return nil, err
	}
	if err := c.infraIP(ctx,
		[]string{"link", "add", n.Name, "type", "veth", "peer", "name", "eth0", "netns", n.NS.Name},
		[]string{"link", "set", n.Name, "master", fmt.Sprintf("br%d", seg), "up"},
	); err != nil {
		return nil, fmt.Errorf("node %s underlay: %w", n.Name, err)
	}
	var cmds [][]string
	for _, f := range underlayFamilies {
		cmds = append(cmds, []string{"ip", "addr", "add", underlayPrefix(seg, i+1, f).String(), "dev", "eth0", "nodad"})
	}
	cmds = append(cmds,
		[]string{"ip", "link", "set", "eth0", "up"},
		// A node forwards between its pods and the underlay, as on a kubelet host.
		append([]string{"sysctl", "-qw"}, forwardSysctls...),
	)
	for s := range c.segments() {
		if s == seg {
			continue
		}
		for _, f := range underlayFamilies {
			cmds = append(cmds, []string{"ip", "route", "add", underlayPrefix(s, 0, f).Masked().String(), "via", underlayIP(seg, routerHost, f).String()})
		}
	}
	for _, cmd := range cmds {
		if _, err := n.NS.Exec(ctx, cmd[0], cmd[1:]...); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return n, nil
}

// IPOf is the node's underlay address of family f (IP or IPv6).
func (n *Node) IPOf(f Family) netip.Addr {
	if f == IPv6 {
		return n.IPv6
	}
	return n.IP
}

// weftdArgs is weftd's command line on this node.
func (n *Node) weftdArgs() []string {
	args := append(n.leaseArgs(),
		"--iface", "eth0",
		"--subnet-file", n.SubnetFile,
		"--bpf-dir", n.BPFDir,
		"--healthz-port", strconv.Itoa(HealthzPort),
		// With ip-masq weftd owns masquerading and the bridge plugin adds no
		// iptables rules of its own (flannel's ipMasq = !FLANNEL_IPMASQ).
		"--ip-masq",
	)
	return append(args, n.Args...)
}

// weftdCommand is weftd with args in the node's namespace, with the
// node's environment. Each node keeps its wireguard key in its own
// directory. The userspace wireguard device's control socket has a fixed
// path (/run/wireguard/flannel-wg.sock, where wgctrl looks), so every weftd
// gets a private mount of that directory: nodes on one host must not
// share it. weftd stays the process started (sh execs it), so its PID is
// the command's. --endpoint-dir comes from the environment, which a weftd
// older than the flag ignores (an unknown flag would stop it).
func (n *Node) weftdCommand(ctx context.Context, args ...string) *exec.Cmd {
	script := `mkdir -p /run/wireguard && mount -t tmpfs -o mode=0700 weft-wg /run/wireguard && exec "$@"`
	cmd := n.NS.Command(ctx, "unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "weftd", n.bins.Weftd}, args...)...)
	cmd.Env = append(append(os.Environ(), n.leaseEnv()...), "WIREGUARD_KEY_FILE="+filepath.Join(n.Dir, "wgkey"), "WEFTD_ENDPOINT_DIR="+n.EndpointDir)
	cmd.Env = append(cmd.Env, n.Env...)
	return cmd
}

// LogPath is weftd's log file (all runs, each after a "### harness" line).
func (n *Node) LogPath() string { return filepath.Join(n.Dir, "weftd.log") }

// Log returns weftd's log.
func (n *Node) Log() (string, error) {
	b, err := os.ReadFile(n.LogPath())
	if err != nil {
		return "", fmt.Errorf("read weftd log of %s: %w", n.Name, err)
	}
	return string(b), nil
}

// StartWeftd starts weftd in the node's namespace.
func (n *Node) StartWeftd(ctx context.Context) error {
	if n.weftd != nil {
		if done, _ := n.weftd.Exited(); !done {
			return fmt.Errorf("weftd on %s already running (pid %d)", n.Name, n.weftd.PID())
		}
	}
	var p *Process
	return n.c.add(func() error {
		cmd := n.weftdCommand(context.Background(), n.weftdArgs()...)
		var err error
		if p, err = StartProcess(cmd, n.LogPath()); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		n.weftd, n.stopped = p, false
		n.c.log.Info("weftd started", "node", n.Name, "pid", p.PID(), "commit", n.bins.Commit)
		return nil
	}, func() error {
		if p == nil {
			return nil
		}
		return p.Stop(syscall.SIGTERM)
	})
}

// Binaries are the executables the node runs.
func (n *Node) Binaries() Binaries { return n.bins }

// Upgrade replaces the node's weft with b in place, as a DaemonSet rolling
// update does: weftd stops gracefully (SIGTERM), b's weft-cni replaces the
// node's CNI plugin (atomically, as the init container's copy) and b's
// weftd starts on the same node state (bpffs, subnet file, pods). It does
// not wait for the new weftd to be ready (see WaitReady).
func (n *Node) Upgrade(ctx context.Context, b Binaries) error {
	if err := n.StopWeftd(syscall.SIGTERM); err != nil {
		return err
	}
	n.bins = b
	if err := n.installCNI(); err != nil {
		return err
	}
	return n.StartWeftd(ctx)
}

// RunWeftd runs weftd to completion in the node's namespace with the
// node's usual flags plus extra (e.g. --cleanup) and returns its output.
func (n *Node) RunWeftd(ctx context.Context, extra ...string) (string, error) {
	cmd := n.weftdCommand(ctx, append(n.weftdArgs(), extra...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("weftd %s on %s: %w", strings.Join(extra, " "), n.Name, err)
	}
	return string(out), nil
}

// StopWeftd sends sig (SIGTERM for a graceful stop, SIGKILL for a crash) to
// weftd and waits until it has exited.
func (n *Node) StopWeftd(sig syscall.Signal) error {
	if n.weftd == nil {
		return fmt.Errorf("weftd on %s was never started", n.Name)
	}
	if err := n.weftd.Stop(sig); err != nil {
		return fmt.Errorf("stop weftd on %s: %w", n.Name, err)
	}
	n.stopped = true
	n.c.log.Info("weftd stopped", "node", n.Name, "signal", sig)
	return nil
}

// RestartWeftd stops weftd with sig and starts it again.
func (n *Node) RestartWeftd(ctx context.Context, sig syscall.Signal) error {
	if err := n.StopWeftd(sig); err != nil {
		return err
	}
	return n.StartWeftd(ctx)
}

// WeftdPID is the PID of the current (or last) weftd, 0 if never started.
func (n *Node) WeftdPID() int {
	if n.weftd == nil {
		return 0
	}
	return n.weftd.PID()
}

// WeftdExited reports whether the current weftd has ended, and how.
func (n *Node) WeftdExited() (bool, error) {
	if n.weftd == nil {
		return true, nil
	}
	return n.weftd.Exited()
}

// alive fails if weftd was started and has exited without StopWeftd:
// conditions that wait on weftd give up at once instead of at their
// deadline. Without weftd (a hand-written subnet file, or weftd stopped on
// purpose, whose subnet file stays) it never fails.
func (n *Node) alive() error {
	if n.weftd == nil || n.stopped {
		return nil
	}
	if done, err := n.weftd.Exited(); done {
		return fmt.Errorf("weftd on %s is not running (exit: %v); log %s", n.Name, err, n.LogPath())
	}
	return nil
}

// SubnetEnv reads the node's subnet file as KEY=value pairs.
func (n *Node) SubnetEnv() (map[string]string, error) {
	f, err := os.Open(n.SubnetFile)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s: line %q is not KEY=value", n.SubnetFile, line)
		}
		env[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", n.SubnetFile, err)
	}
	return env, nil
}

// subnetKeys are the subnet file's variables of each family's pod subnet.
var subnetKeys = map[Family]string{IPv4: "FLANNEL_SUBNET", IPv6: "FLANNEL_IPV6_SUBNET"}

// Subnet is the node's IPv4 pod subnet from its subnet file
// (FLANNEL_SUBNET, masked: 10.244.3.1/24 -> 10.244.3.0/24).
func (n *Node) Subnet() (netip.Prefix, error) { return n.SubnetOf(IPv4) }

// SubnetOf is the node's pod subnet of family f from its subnet file
// (FLANNEL_SUBNET or FLANNEL_IPV6_SUBNET, masked).
func (n *Node) SubnetOf(f Family) (netip.Prefix, error) {
	env, err := n.SubnetEnv()
	if err != nil {
		return netip.Prefix{}, err
	}
	return n.subnetIn(env, f)
}

// subnetIn reads family f's pod subnet from the subnet file's env.
func (n *Node) subnetIn(env map[string]string, f Family) (netip.Prefix, error) {
	key := subnetKeys[f]
	p, err := netip.ParsePrefix(env[key])
	if err != nil || FamilyOf(p.Addr()) != f {
		return netip.Prefix{}, fmt.Errorf("%s: %s=%q is no %s prefix (%v)", n.SubnetFile, key, env[key], f, err)
	}
	return p.Masked(), nil
}

// Subnets are the node's pod subnets of the cluster's families (Stack),
// IPv4 first.
func (n *Node) Subnets() ([]netip.Prefix, error) {
	env, err := n.SubnetEnv()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, f := range n.c.Stack().Families() {
		p, err := n.subnetIn(env, f)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// WaitSubnet waits until weftd has written the subnet file with a subnet
// of each of the cluster's families and returns the first (IPv4 unless
// IPv6Only).
func (n *Node) WaitSubnet(ctx context.Context, timeout time.Duration) (netip.Prefix, error) {
	var subnet netip.Prefix
	err := Eventually(ctx, timeout, "subnet file of "+n.Name, func() error {
		if err := n.alive(); err != nil {
			return err
		}
		s, err := n.Subnets()
		if err == nil {
			subnet = s[0]
		}
		return err
	})
	return subnet, err
}

// Datapath is the datapath the node's subnet file announces: "ebpf" when it
// carries WEFT_BPF_DIR, else "kernel".
func (n *Node) Datapath() (string, error) {
	env, err := n.SubnetEnv()
	if err != nil {
		return "", err
	}
	if env["WEFT_BPF_DIR"] != "" {
		return "ebpf", nil
	}
	return "kernel", nil
}

// HTTPGet fetches path from weftd's health port inside the node namespace.
func (n *Node) HTTPGet(ctx context.Context, path string) (int, string, error) {
	client := &http.Client{Transport: &http.Transport{DialContext: n.NS.DialContext, DisableKeepAlives: true}}
	url := fmt.Sprintf("http://127.0.0.1:%d%s", HealthzPort, path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s on %s: %w", path, n.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "", fmt.Errorf("GET %s on %s: %w", path, n.Name, err)
	}
	return resp.StatusCode, string(body), nil
}

// WaitReady waits until weftd's /readyz answers 200.
func (n *Node) WaitReady(ctx context.Context, timeout time.Duration) error {
	return Eventually(ctx, timeout, "weftd ready on "+n.Name, func() error {
		if err := n.alive(); err != nil {
			return err
		}
		code, body, err := n.HTTPGet(ctx, "/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("/readyz: %d %s", code, strings.TrimSpace(body))
		}
		return nil
	})
}

// Exec runs a command in the node's namespace.
func (n *Node) Exec(ctx context.Context, name string, args ...string) (string, error) {
	return n.NS.Exec(ctx, name, args...)
}

// RunWeftctl runs the weftctl executable bin with args in the node's
// namespace, adding the node's --bpf-dir (and --subnet-file) to the
// subcommands that read them, and returns its stdout and stderr; err is
// set if it failed to run or exited non-zero.
func (n *Node) RunWeftctl(ctx context.Context, bin string, args ...string) (stdout, stderr string, err error) {
	full := append([]string{}, args...)
	if len(args) > 0 {
		switch args[0] {
		case "status", "peers":
			full = append(full, "--bpf-dir", n.BPFDir, "--subnet-file", n.SubnetFile)
		case "maps", "counters":
			full = append(full, "--bpf-dir", n.BPFDir)
		}
	}
	cmd := n.NS.Command(ctx, bin, full...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), errOut.String(), fmt.Errorf("weftctl %s on %s: %w: %s", strings.Join(args, " "), n.Name, err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), errOut.String(), nil
}

package k8s

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

const (
	// nodeStartTimeout bounds a node's init and its containerd start.
	nodeStartTimeout = time.Minute
	// killTimeout bounds the end of a node's processes after SIGKILL.
	killTimeout = 30 * time.Second
	// WeftMetricsPort is weftd's --healthz-port in deploy/weft.yaml:
	// /healthz, /readyz and /metrics on every node's network namespace.
	WeftMetricsPort = 8471
)

// cniPlugins are Debian's CNI plugins every node's /opt/cni/bin holds, as
// a kubeadm host's does; weft's init container adds weft itself.
var cniPlugins = []string{"bridge", "host-local", "loopback", "portmap"}

// debianCNIDir is where Debian's containernetworking-plugins puts them.
const debianCNIDir = "/usr/lib/cni"

// kubeletSysctls are the machine-wide sysctls a kubelet writes (vm.*,
// kernel.*): each node's mount namespace has its own file over each, so a
// kubelet never changes the machine.
var kubeletSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// nodeMounts are the host directories each node replaces with its own
// (under Node.Dir/root): with them every path a kubelet, containerd, the
// CNI plugins and weft's DaemonSet write (/var/lib/kubelet,
// /var/lib/containerd, /var/lib/cni, /run/containerd, /run/netns,
// /run/weft, /run/flannel, /run/xtables.lock, /opt/cni/bin,
// /var/log/pods, /var/log/containers) is the node's, and no directory is
// created on the machine. /etc is an overlay (the node writes
// /etc/cni/net.d into its upper directory).
var nodeMounts = []struct{ dir, target string }{
	{"run", "/run"}, {"opt", "/opt"}, {"var-lib", "/var/lib"}, {"var-log", "/var/log"},
}

// initScript is a node's PID-namespace init, started by
// `nsenter --net=<node netns> unshare --mount --uts --pid --fork
// --mount-proc --propagation private`. It sets up the node's mount
// namespace, marks it ready and reaps orphans (the containerd shims) until
// it is killed. $1 is the node's directory, $2 its hostname, the rest the
// kubeletSysctls.
const initScript = `set -eu
d=$1 name=$2
shift 2
hostname "$name"
# The node's own /run first: mount(8) writes /run/mount/utab.
for m in ` + "{{MOUNTS}}" + `; do
	mount --bind "$d/root/${m%%:*}" "${m#*:}"
done
# The sysfs of the node's network namespace, keeping the machine's cgroups.
mount --rbind /sys/fs/cgroup "$d/cgroup-aside"
mount -t sysfs sysfs /sys
mount --move "$d/cgroup-aside" /sys/fs/cgroup
# A bpffs of its own, shared: weft mounts it Bidirectional.
mount -t bpf bpffs /sys/fs/bpf
mount --make-shared /sys/fs/bpf
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$d/root/etc.upper,workdir=$d/root/etc.work" /etc
for f; do
	s="$d/root/sysctl/$(echo "$f" | tr / .)"
	cat "/proc/sys/$f" >"$s"
	mount --bind "$s" "/proc/sys/$f"
done
touch "$d/ready"
while :; do
	sleep 3600 &
	wait
done
`

// Node is one Kubernetes node: a network namespace on the underlay and,
// entered from it, its own mount, UTS and PID namespaces in which
// containerd, the kubelet and kube-proxy run.
type Node struct {
	// Name is the Node's name and hostname: n1, n2, ...
	Name string
	// IP is the node's underlay address (its InternalIP).
	IP netip.Addr
	// NS is the node's network namespace.
	NS *cluster.Netns
	// Dir holds the node's configuration, logs and the directories it
	// mounts over the host's (root/).
	Dir string
	// CgroupRoot is the kubelet's cgroupRoot, /<prefix><name> in every
	// cgroup hierarchy.
	CgroupRoot string

	c       *Cluster
	init    *cluster.Process // unshare; its child is the PID-namespace init
	initPID int
	daemons []*daemon
}

// startNode builds node i (0-based) and starts its containerd, imports
// the images, and starts its kubelet and kube-proxy.
func (c *Cluster) startNode(ctx context.Context, i int) (*Node, error) {
	n := &Node{
		Name: fmt.Sprintf("n%d", i+1),
		IP:   netip.AddrFrom4([4]byte{10, 250, 0, byte(i + 1)}),
		c:    c,
	}
	n.Dir = filepath.Join(c.Dir, n.Name)
	n.CgroupRoot = "/" + c.Prefix + n.Name
	steps := []func(context.Context) error{n.prepareDirs, n.createCgroups, n.createNetns, n.startInit, n.startContainerd, n.importImages, n.startKubelet, n.startKubeProxy}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return n, fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	c.log.Info("node started", "node", n.Name, "ip", n.IP, "netns", n.NS.Name)
	return n, nil
}

// path is a file in the node's directory.
func (n *Node) path(elem ...string) string { return filepath.Join(append([]string{n.Dir}, elem...)...) }

// prepareDirs creates the node's directories, its /opt/cni/bin with
// Debian's CNI plugins and an /etc/resolv.conf without upstream servers
// (the cluster has no way out).
func (n *Node) prepareDirs(context.Context) error {
	dirs := []string{"cgroup-aside", "logs", "config", "root/etc.upper/cni/net.d", "root/etc.work", "root/sysctl", "root/opt/cni/bin"}
	for _, m := range nodeMounts {
		dirs = append(dirs, "root/"+m.dir)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(n.path(d), 0o755); err != nil {
			return err
		}
	}
	for _, p := range cniPlugins {
		if err := copyFile(filepath.Join(debianCNIDir, p), n.path("root/opt/cni/bin", p)); err != nil {
			return fmt.Errorf("CNI plugin %s (Debian's containernetworking-plugins): %w", p, err)
		}
	}
	return os.WriteFile(n.path("root/etc.upper/resolv.conf"), []byte("# weft test node: no upstream DNS\n"), 0o644)
}

// copyFile copies the executable src to dst.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// createNetns creates the node's network namespace with eth0 on the
// underlay bridge and a default route to the infra namespace.
func (n *Node) createNetns(ctx context.Context) error {
	err := n.c.add(func() error {
		ns, err := cluster.NewNetns(ctx, n.c.Prefix+n.Name)
		n.NS = ns
		return err
	}, func() error { return n.NS.Delete() })
	if err != nil {
		return err
	}
	for _, args := range [][]string{
		{"link", "add", n.Name, "type", "veth", "peer", "name", "eth0", "netns", n.NS.Name},
		{"link", "set", n.Name, "master", underlayBridge, "up"},
	} {
		if _, err := n.c.Infra.Exec(ctx, "ip", args...); err != nil {
			return err
		}
	}
	for _, cmd := range [][]string{
		{"ip", "addr", "add", netip.PrefixFrom(n.IP, underlayPrefixLen).String(), "dev", "eth0"},
		{"ip", "link", "set", "eth0", "up"},
		{"ip", "route", "add", "default", "via", InfraIP.String()},
		// A node forwards between its pods and the underlay.
		{"sysctl", "-qw", "net.ipv4.ip_forward=1"},
	} {
		if _, err := n.NS.Exec(ctx, cmd[0], cmd[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// startInit starts the node's PID-namespace init (initScript) and waits
// until its mounts are in place. Close kills it, which ends every process
// of the node, then waits for them and removes the node's cgroups.
func (n *Node) startInit(ctx context.Context) error {
	var mounts []string
	for _, m := range nodeMounts {
		mounts = append(mounts, m.dir+":"+m.target)
	}
	script := strings.Replace(initScript, "{{MOUNTS}}", strings.Join(mounts, " "), 1)
	args := append([]string{"--net=" + n.NS.Path(),
		"unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc", "--propagation", "private",
		// Should unshare die (with the harness: Pdeathsig), so does the init.
		"--kill-child=SIGKILL",
		"sh", "-c", script, "weft-node-init", n.Dir, n.Name}, kubeletSysctls...)
	cmd := exec.Command("nsenter", args...)
	cmd.Env = n.c.env()
	err := n.c.add(func() error {
		p, err := cluster.StartProcess(cmd, n.path("logs", "init.log"))
		n.init = p
		return err
	}, n.kill)
	if err != nil {
		return fmt.Errorf("start init: %w", err)
	}
	return cluster.Eventually(ctx, nodeStartTimeout, "init of "+n.Name+" ready", func() error {
		if done, err := n.init.Exited(); done {
			return fmt.Errorf("init exited (%v): %s", err, logTail(n.path("logs", "init.log"), 20))
		}
		if _, err := os.Stat(n.path("ready")); err != nil {
			return err
		}
		pid := n.init.PID()
		children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if err != nil {
			return err
		}
		f := strings.Fields(string(children))
		if len(f) != 1 {
			return fmt.Errorf("unshare (pid %d) has children %q, want one", pid, f)
		}
		n.initPID, err = strconv.Atoi(f[0])
		return err
	})
}

// kill ends every process of the node: SIGKILL to the PID-namespace init
// takes the whole namespace with it (and the mount namespace, its mounts
// and the pods' network namespaces); then it waits for the processes the
// harness started and removes the node's cgroups.
func (n *Node) kill() error {
	if n.init == nil {
		return nil
	}
	var errs []error
	// While unshare runs, its child is alive or a zombie: the PID is still
	// the init's.
	if done, _ := n.init.Exited(); !done && n.initPID != 0 {
		if err := syscall.Kill(n.initPID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill init of %s (pid %d): %w", n.Name, n.initPID, err))
		}
	}
	for _, p := range append([]*cluster.Process{n.init}, n.processes()...) {
		if err := p.Stop(syscall.SIGKILL); err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
		}
	}
	return errors.Join(append(errs, n.removeCgroups())...)
}

// RemoveNode shuts node n down like a machine switched off (every process
// of the node ends, its pods with them; see kill) and drops it from Nodes,
// so the cluster's waits and checks no longer expect it. Its Node object
// stays, for the caller to delete as an admin does (kubectl delete node);
// Close still removes its network namespace.
func (c *Cluster) RemoveNode(n *Node) error {
	if err := n.kill(); err != nil {
		return err
	}
	c.Nodes = slices.DeleteFunc(c.Nodes, func(m *Node) bool { return m == n })
	c.log.Info("node removed", "node", n.Name)
	return nil
}

// processes are the node's daemons' processes (nsenter, outside the
// node's PID namespace).
func (n *Node) processes() []*cluster.Process {
	var out []*cluster.Process
	for _, d := range n.daemons {
		out = append(out, d.p)
	}
	return out
}

// Command returns a command that runs name with args in all of the node's
// namespaces (network, mount, UTS, PID), as its daemons run.
func (n *Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(n.initPID), "-m", "-u", "-n", "-p", "--", name}, args...)...)
	cmd.Env = n.c.env()
	return cmd
}

// Exec runs name with args in the node's namespaces and returns its
// standard output; the error carries its standard error.
func (n *Node) Exec(ctx context.Context, name string, args ...string) (string, error) {
	return runCommand(n.Command(ctx, name, args...), "", name+" on "+n.Name+":")
}

// startDaemon starts name with args in the node's namespaces, logging to
// logs/<name>.log. The node's kill ends it.
func (n *Node) startDaemon(name string, args ...string) (*daemon, error) {
	d := &daemon{name: n.Name + " " + name, log: n.path("logs", name+".log")}
	err := n.c.add(func() error {
		p, err := cluster.StartProcess(n.Command(context.Background(), args[0], args[1:]...), d.log)
		d.p = p
		if err == nil {
			n.daemons = append(n.daemons, d)
		}
		return err
	}, func() error { return nil })
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	n.c.log.Info("started", "node", n.Name, "daemon", name, "pid", d.p.PID())
	return d, nil
}

// startContainerd writes containerd's configuration, starts it and waits
// until it answers.
func (n *Node) startContainerd(ctx context.Context) error {
	conf := n.path("config", "containerd.toml")
	if err := os.WriteFile(conf, []byte(containerdConfig(n.c.opts.Components)), 0o644); err != nil {
		return err
	}
	d, err := n.startDaemon("containerd", n.c.opts.Components.Containerd, "--config", conf)
	if err != nil {
		return err
	}
	return cluster.Eventually(ctx, nodeStartTimeout, "containerd on "+n.Name, func() error {
		if err := d.alive(); err != nil {
			return err
		}
		_, err := n.Exec(ctx, n.c.opts.Components.Ctr, "version")
		return err
	})
}

// importImages imports every image archive into the node's containerd,
// where the kubelet finds them (namespace k8s.io).
func (n *Node) importImages(ctx context.Context) error {
	for _, img := range n.c.opts.Components.Images.all() {
		if _, err := n.Exec(ctx, n.c.opts.Components.Ctr, "-n", "k8s.io", "images", "import", img.Archive); err != nil {
			return fmt.Errorf("import %s: %w", img.Ref, err)
		}
	}
	return nil
}

// startKubelet issues the kubelet's certificates, writes its
// configuration and starts it.
func (n *Node) startKubelet(context.Context) error {
	pki := n.c.pki
	kubeconfig, err := pki.Kubeconfig(n.Name+"-kubelet", APIServerURL(), "system:node:"+n.Name, "system:nodes")
	if err != nil {
		return err
	}
	serving, err := pki.Serving(n.Name+"-kubelet-serving", []net.IP{net.IP(n.IP.AsSlice())}, []string{n.Name})
	if err != nil {
		return err
	}
	conf := n.path("config", "kubelet.yaml")
	if err := os.WriteFile(conf, []byte(kubeletConfig(n, serving)), 0o644); err != nil {
		return err
	}
	_, err = n.startDaemon("kubelet", n.c.opts.Components.Kubelet,
		"--config="+conf, "--kubeconfig="+kubeconfig,
		"--node-ip="+n.IP.String(), "--hostname-override="+n.Name, "--v=1")
	return err
}

// startKubeProxy writes kube-proxy's configuration and starts it.
func (n *Node) startKubeProxy(context.Context) error {
	kubeconfig, err := n.c.pki.Kubeconfig(n.Name+"-kube-proxy", APIServerURL(), "system:kube-proxy")
	if err != nil {
		return err
	}
	conf := n.path("config", "kube-proxy.yaml")
	if err := os.WriteFile(conf, []byte(kubeProxyConfig(n, kubeconfig)), 0o644); err != nil {
		return err
	}
	_, err = n.startDaemon("kube-proxy", n.c.opts.Components.KubeProxy, "--config="+conf)
	return err
}

// HTTPGet fetches url from the node's network namespace and returns the
// body; a status other than 200 is an error.
func (n *Node) HTTPGet(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, httpTimeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{DialContext: n.NS.DialContext, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s from %s: %w", url, n.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("GET %s from %s: %w", url, n.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s from %s: %s", url, n.Name, resp.Status)
	}
	return string(body), nil
}

// httpTimeout bounds one HTTPGet.
const httpTimeout = 10 * time.Second

// WeftGet fetches path (e.g. /metrics, /readyz) from weftd's health port
// on the node.
func (n *Node) WeftGet(ctx context.Context, path string) (string, error) {
	return n.HTTPGet(ctx, "http://"+netip.AddrPortFrom(n.IP, WeftMetricsPort).String()+path)
}

// WeftMetric sums the samples of weftd's metric name on the node whose
// labels include every one of want (e.g. `backend="vxlan-ebpf"`).
func (n *Node) WeftMetric(ctx context.Context, name string, want ...string) (float64, error) {
	body, err := n.WeftGet(ctx, "/metrics")
	if err != nil {
		return 0, err
	}
	v, err := cluster.ParseMetric(body, name, want...)
	if err != nil {
		return 0, fmt.Errorf("metrics of %s: %w", n.Name, err)
	}
	return v, nil
}

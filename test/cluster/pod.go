package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// SystemCNIDir holds the reference plugins (bridge, host-local) from
// Debian's containernetworking-plugins.
const SystemCNIDir = "/usr/lib/cni"

// subnetTimeout bounds the wait for weftd's subnet file before a pod is
// attached (the kubelet would retry the sandbox instead).
const subnetTimeout = 60 * time.Second

// Pod is a network namespace attached to its node by a CNI chain.
type Pod struct {
	// ID names the pod in its cluster, e.g. "n1-p1"; it is also the CNI
	// container ID suffix.
	ID string
	// NS is the pod's network namespace.
	NS *Netns
	// Node is the node the pod runs on.
	Node *Node
	// IP is the pod's IPv4 address from the CNI result; invalid in an
	// IPv6Only cluster.
	IP netip.Addr
	// IPv6 is the pod's IPv6 address from the CNI result; invalid in an
	// IPv4Only cluster.
	IPv6 netip.Addr

	list *libcni.NetworkConfigList
	rt   *libcni.RuntimeConf
}

// ConfList is the node's CNI network configuration: flannel's shipped
// conflist (name cbr0, plugin "flannel" with its delegate), with this node's
// paths. portmap is left out: it only matters for hostPort and would add
// iptables rules nothing here checks.
func (n *Node) ConfList() []byte {
	conf := map[string]any{
		"name":       "cbr0",
		"cniVersion": "0.3.1",
		"plugins": []any{map[string]any{
			"type":       "flannel",
			"subnetFile": n.SubnetFile,
			"dataDir":    filepath.Join(n.Dir, "cni"),
			"ipam":       map[string]any{"dataDir": filepath.Join(n.Dir, "ipam")},
			"delegate":   map[string]any{"hairpinMode": true, "isDefaultGateway": true},
		}},
	}
	b, err := json.Marshal(conf)
	if err != nil {
		panic(err) // a literal map of strings and bools always marshals
	}
	return b
}

// AddPod waits for the node's subnet file and attaches a new pod with the
// node's ConfList (weft-cni as "flannel", then bridge + host-local).
func (n *Node) AddPod(ctx context.Context) (*Pod, error) {
	if _, err := n.WaitSubnet(ctx, subnetTimeout); err != nil {
		return nil, fmt.Errorf("add pod on %s: %w", n.Name, err)
	}
	list, err := libcni.NetworkConfFromBytes(n.ConfList())
	if err != nil {
		return nil, fmt.Errorf("node %s conflist: %w", n.Name, err)
	}
	return n.attach(ctx, list)
}

// cni is the CNI runtime for this node: weft-cni (installed as "flannel")
// first, then the system plugins; results cached in the node's directory.
func (n *Node) cni() *libcni.CNIConfig {
	return libcni.NewCNIConfigWithCacheDir(
		[]string{n.cniBinDir(), SystemCNIDir}, filepath.Join(n.Dir, "cni-cache"), nil)
}

// attach creates a pod namespace and runs ADD of list for it. The plugins
// run as children of a thread inside the node namespace, so they see the
// node's links (cni0, flannel.1) as a kubelet's runtime would.
func (n *Node) attach(ctx context.Context, list *libcni.NetworkConfigList) (*Pod, error) {
	n.pods++
	p := &Pod{ID: fmt.Sprintf("%s-p%d", n.Name, n.pods), Node: n, list: list}
	err := n.c.add(func() error {
		ns, err := NewNetns(ctx, n.c.Prefix+p.ID)
		p.NS = ns
		return err
	}, func() error { return p.NS.Delete() })
	if err != nil {
		return nil, err
	}
	p.rt = &libcni.RuntimeConf{ContainerID: n.c.Prefix + p.ID, NetNS: p.NS.Path(), IfName: "eth0"}
	var res types.Result
	err = n.NS.Do(func() error {
		r, err := n.cni().AddNetworkList(ctx, list, p.rt)
		res = r
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("CNI ADD %s on %s: %w", p.ID, n.Name, err)
	}
	cur, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("CNI ADD %s on %s: result: %w", p.ID, n.Name, err)
	}
	for _, ipc := range cur.IPs {
		ip, ok := netip.AddrFromSlice(ipc.Address.IP)
		switch ip = ip.Unmap(); {
		case !ok:
		case ip.Is4() && !p.IP.IsValid():
			p.IP = ip
		case ip.Is6() && !p.IPv6.IsValid():
			p.IPv6 = ip
		}
	}
	for _, f := range n.c.Stack().Families() {
		if !p.IPOf(f).IsValid() {
			return nil, fmt.Errorf("CNI ADD %s on %s: no %s address in result %v", p.ID, n.Name, f, cur)
		}
	}
	n.c.log.Info("pod up", "pod", p.ID, "ips", p.Addrs())
	return p, nil
}

// IPOf is the pod's address of family f (IP or IPv6).
func (p *Pod) IPOf(f Family) netip.Addr {
	if f == IPv6 {
		return p.IPv6
	}
	return p.IP
}

// Addrs are the pod's addresses of the cluster's families, IPv4 first.
func (p *Pod) Addrs() []netip.Addr {
	var out []netip.Addr
	for _, f := range p.Node.c.Stack().Families() {
		out = append(out, p.IPOf(f))
	}
	return out
}

// Delete runs CNI DEL for the pod and deletes its namespace.
func (p *Pod) Delete(ctx context.Context) error {
	err := p.Node.NS.Do(func() error {
		return p.Node.cni().DelNetworkList(ctx, p.list, p.rt)
	})
	if err != nil {
		return fmt.Errorf("CNI DEL %s on %s: %w", p.ID, p.Node.Name, err)
	}
	return p.NS.Delete()
}

// cniBinDir holds the node's weft-cni installed under flannel's plugin
// name, to show that flannel's conflist works unchanged.
func (n *Node) cniBinDir() string { return filepath.Join(n.Dir, "cni-bin") }

// installCNI links the node's weft-cni into cniBinDir as "flannel",
// replacing an earlier one atomically (a new link renamed over the old), so
// a plugin run never finds it missing.
func (n *Node) installCNI() error {
	if err := os.MkdirAll(n.cniBinDir(), 0o755); err != nil {
		return fmt.Errorf("install CNI plugin on %s: %w", n.Name, err)
	}
	if n.bins.CNI == "" {
		return nil
	}
	link := filepath.Join(n.cniBinDir(), "flannel")
	if err := os.Remove(link + ".new"); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("install CNI plugin on %s: %w", n.Name, err)
	}
	if err := os.Symlink(n.bins.CNI, link+".new"); err != nil {
		return fmt.Errorf("install CNI plugin on %s: %w", n.Name, err)
	}
	if err := os.Rename(link+".new", link); err != nil {
		return fmt.Errorf("install CNI plugin on %s: %w", n.Name, err)
	}
	return nil
}

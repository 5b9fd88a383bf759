package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/pkg/cni"
	"github.com/weftnet/weft/pkg/endpoint"
	"github.com/weftnet/weft/test/testns"
)

// The real plugins: Debian's (CNI spec up to 1.0.0) and, for 1.1.0, bridge
// and host-local built from the Go module into a cache shared across runs.
const (
	debianPlugins  = "/usr/lib/cni"
	pluginsVersion = "v1.9.1"
)

var (
	buildOnce sync.Once
	binDir    string // weft-cni installed as "weft" and "flannel"
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// pluginDir builds weft-cni once per test binary.
func pluginDir(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "weft-cni-test-"); buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "weft"), ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
			return
		}
		buildErr = os.Link(filepath.Join(binDir, "weft"), filepath.Join(binDir, "flannel"))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// modulePlugins returns a directory with bridge and host-local of
// pluginsVersion, building them with `go install` (module proxy) if missing.
func modulePlugins(t *testing.T) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cache, "weft-cni-plugins", pluginsVersion)
	if fileExists(filepath.Join(dir, "bridge")) && fileExists(filepath.Join(dir, "host-local")) {
		return dir
	}
	const mod = "github.com/containernetworking/plugins/plugins/"
	cmd := exec.Command("go", "install", mod+"main/bridge@"+pluginsVersion, mod+"ipam/host-local@"+pluginsVersion)
	cmd.Dir = os.TempDir() // outside weft's module
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build CNI plugins %s: %v: %s", pluginsVersion, err, out)
	}
	return dir
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// node is one test's node: a namespace where the plugins run, a pod
// namespace factory, and per-test subnet file and data dirs.
type node struct {
	t          *testing.T
	prefix     string
	ns         *testns.NS
	cni        *libcni.CNIConfig
	subnetFile string
	dataDir    string // weft-cni's saved delegate configs
	ipamDir    string // host-local's allocations
}

const subnetEnv = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1400\nFLANNEL_IPMASQ=true\n"

func newNode(t *testing.T, paths ...string) *node {
	testns.RequireRoot(t)
	prefix := testns.Prefix()
	dir := t.TempDir()
	n := &node{
		t:          t,
		prefix:     prefix,
		ns:         testns.New(t, prefix, "node"),
		cni:        libcni.NewCNIConfigWithCacheDir(append([]string{pluginDir(t)}, paths...), filepath.Join(dir, "cache"), nil),
		subnetFile: filepath.Join(dir, "subnet.env"),
		dataDir:    filepath.Join(dir, "data"),
		ipamDir:    filepath.Join(dir, "ipam"),
	}
	n.writeSubnetFile(subnetEnv)
	return n
}

func (n *node) writeSubnetFile(content string) {
	if err := os.WriteFile(n.subnetFile, []byte(content), 0o644); err != nil {
		n.t.Fatal(err)
	}
}

// announceEBPF writes the subnet file as weftd does with the ebpf datapath,
// with a pin directory holding no maps (registrations fail, logged) and an
// endpoint directory; it returns the endpoint store.
func (n *node) announceEBPF() endpoint.Store {
	dir := n.t.TempDir()
	s := endpoint.Store{Dir: filepath.Join(dir, "endpoints")}
	n.writeSubnetFile(subnetEnv + "WEFT_BPF_DIR=" + filepath.Join(dir, "bpf") + "\nWEFT_ENDPOINT_DIR=" + s.Dir + "\n")
	return s
}

// records returns the attachments ("containerID:ifName") recorded in s,
// sorted, and checks each record against the ADD result of its pod.
func (n *node) records(s endpoint.Store, results map[string]*types100.Result) []string {
	n.t.Helper()
	list, err := s.List()
	if err != nil {
		n.t.Fatal(err)
	}
	var out []string
	for _, r := range list {
		out = append(out, r.ContainerID+":"+r.IfName)
		res, ok := results[r.ContainerID]
		if !ok {
			continue
		}
		ep, err := cni.EndpointFromResult(res, r.IfName, "cni0")
		if err != nil {
			n.t.Fatal(err)
		}
		if r.HostIfName != ep.HostIfName || r.MAC != ep.MAC.String() || !slices.Equal(r.IPs, ep.IPs) {
			n.t.Errorf("record %+v, ADD result says %+v", r, ep)
		}
	}
	slices.Sort(out)
	return out
}

// confList is flannel's shipped conflist entry (delegate unchanged) with
// this test's paths, followed by extra plugins.
func (n *node) confList(cniVersion, typ string, extra ...string) *libcni.NetworkConfigList {
	plugins := append([]string{fmt.Sprintf(`{"type":%q,"subnetFile":%q,"dataDir":%q,"ipam":{"dataDir":%q},
		"delegate":{"hairpinMode":true,"isDefaultGateway":true}}`, typ, n.subnetFile, n.dataDir, n.ipamDir)}, extra...)
	list, err := libcni.NetworkConfFromBytes(fmt.Appendf(nil, `{"name":"cbr0","cniVersion":%q,"plugins":[%s]}`,
		cniVersion, strings.Join(plugins, ",")))
	if err != nil {
		n.t.Fatal(err)
	}
	return list
}

// pod is one pod namespace and its CNI runtime config.
type pod struct {
	ns *testns.NS
	rt *libcni.RuntimeConf
}

func (n *node) newPod(name string) *pod {
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		n.t.Fatal(err)
	}
	ns := testns.New(n.t, n.prefix, name)
	return &pod{ns: ns, rt: &libcni.RuntimeConf{
		ContainerID: hex.EncodeToString(id),
		NetNS:       "/run/netns/" + ns.Name,
		IfName:      "eth0",
	}}
}

// in runs f with the calling thread in the node namespace: the plugins libcni
// execs inherit it and so program the node, never the test's host. (Not
// t.Context: cleanups run DEL after it is canceled.)
func (n *node) in(f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return n.ns.Do(func() error { return f(ctx) })
}

func (n *node) add(list *libcni.NetworkConfigList, p *pod) *types100.Result {
	n.t.Helper()
	var res types.Result
	err := n.in(func(ctx context.Context) (err error) {
		res, err = n.cni.AddNetworkList(ctx, list, p.rt)
		return err
	})
	if err != nil {
		n.t.Fatalf("ADD %s: %v", list.CNIVersion, err)
	}
	if res.Version() != list.CNIVersion {
		n.t.Errorf("result version %s, want %s", res.Version(), list.CNIVersion)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { // leave no allocations behind if the test fails early
		_ = n.in(func(ctx context.Context) error { return n.cni.DelNetworkList(ctx, list, p.rt) })
	})
	return r
}

func (n *node) del(list *libcni.NetworkConfigList, p *pod) {
	n.t.Helper()
	if err := n.in(func(ctx context.Context) error { return n.cni.DelNetworkList(ctx, list, p.rt) }); err != nil {
		n.t.Fatalf("DEL %s: %v", list.CNIVersion, err)
	}
}

func (n *node) check(list *libcni.NetworkConfigList, p *pod) error {
	return n.in(func(ctx context.Context) error { return n.cni.CheckNetworkList(ctx, list, p.rt) })
}

var (
	subnet  = netip.MustParsePrefix("10.244.1.0/24")
	gateway = netip.MustParseAddr("10.244.1.1")
	network = netip.MustParsePrefix("10.244.0.0/16")
)

// verifyAdded checks the kernel state ADD must leave: the pod's address,
// MTU and routes, the gateway on cni0, the saved delegate config, and what
// the lead's endpoint registration will read from the result.
func (n *node) verifyAdded(p *pod, r *types100.Result) netip.Addr {
	t := n.t
	t.Helper()
	podH, err := netlink.NewHandleAt(p.ns.Handle())
	if err != nil {
		t.Fatal(err)
	}
	defer podH.Close()
	nodeH, err := netlink.NewHandleAt(n.ns.Handle())
	if err != nil {
		t.Fatal(err)
	}
	defer nodeH.Close()

	ep, err := cni.EndpointFromResult(r, "eth0", "cni0")
	if err != nil {
		t.Fatalf("endpoint from result: %v", err)
	}
	if len(ep.IPs) != 1 || !subnet.Contains(ep.IPs[0]) || ep.IPs[0] == gateway {
		t.Fatalf("pod IPs %v, want one in %s", ep.IPs, subnet)
	}
	ip := ep.IPs[0]

	eth0, err := podH.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if eth0.Attrs().MTU != 1400 {
		t.Errorf("pod MTU %d, want FLANNEL_MTU 1400", eth0.Attrs().MTU)
	}
	if eth0.Attrs().HardwareAddr.String() != ep.MAC.String() {
		t.Errorf("pod MAC %s, result says %s", eth0.Attrs().HardwareAddr, ep.MAC)
	}
	if !hasAddr(t, podH, eth0, netip.PrefixFrom(ip, 24)) {
		t.Errorf("pod eth0 lacks %s/24", ip)
	}
	routes, err := podH.RouteList(eth0, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if !hasRoute(routes, netip.Prefix{}, gateway) || !hasRoute(routes, network, gateway) {
		t.Errorf("pod routes %v, want default and %s via %s", routes, network, gateway)
	}

	br, err := nodeH.LinkByName("cni0")
	if err != nil {
		t.Fatalf("bridge cni0: %v", err)
	}
	if !hasAddr(t, nodeH, br, netip.PrefixFrom(gateway, 24)) {
		t.Errorf("cni0 lacks the gateway %s/24", gateway)
	}
	veth, err := nodeH.LinkByName(ep.HostIfName)
	if err != nil {
		t.Fatalf("host veth %s from the result: %v", ep.HostIfName, err)
	}
	if veth.Attrs().MasterIndex != br.Attrs().Index {
		t.Errorf("host veth %s not on cni0", ep.HostIfName)
	}
	saved, err := os.ReadFile(filepath.Join(n.dataDir, p.rt.ContainerID))
	if err != nil {
		t.Fatalf("saved delegate config: %v", err)
	}
	if !strings.Contains(string(saved), `"type":"bridge"`) || !strings.Contains(string(saved), `"name":"cbr0"`) {
		t.Errorf("saved delegate config %s", saved)
	}
	p.ns.MustRun(t, "ping", "-c1", "-W5", gateway.String())
	return ip
}

// verifyDeleted checks DEL removed the pod's interface, saved config and
// address allocation.
func (n *node) verifyDeleted(p *pod, ip netip.Addr) {
	t := n.t
	t.Helper()
	podH, err := netlink.NewHandleAt(p.ns.Handle())
	if err != nil {
		t.Fatal(err)
	}
	defer podH.Close()
	if _, err := podH.LinkByName("eth0"); err == nil {
		t.Error("pod eth0 still exists after DEL")
	}
	if fileExists(filepath.Join(n.dataDir, p.rt.ContainerID)) {
		t.Error("saved delegate config still exists after DEL")
	}
	if fileExists(filepath.Join(n.ipamDir, "cbr0", ip.String())) {
		t.Errorf("host-local still holds %s after DEL", ip)
	}
}

func hasAddr(t *testing.T, h *netlink.Handle, l netlink.Link, want netip.Prefix) bool {
	t.Helper()
	addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.IPNet.String() == want.String() })
}

func hasRoute(routes []netlink.Route, dst netip.Prefix, gw netip.Addr) bool {
	return slices.ContainsFunc(routes, func(r netlink.Route) bool {
		isDefault := r.Dst == nil || r.Dst.String() == "0.0.0.0/0"
		dstOK := (!dst.IsValid() && isDefault) || (dst.IsValid() && r.Dst != nil && r.Dst.String() == dst.String())
		return dstOK && r.Gw.Equal(net.IP(gw.AsSlice()))
	})
}

// TestFlannelConflist runs kube-flannel's conflist (plugin "flannel", then
// portmap, cniVersion 0.3.1) with Debian's plugins.
func TestFlannelConflist(t *testing.T) {
	n := newNode(t, debianPlugins)
	list := n.confList("0.3.1", "flannel", `{"type":"portmap","capabilities":{"portMappings":true}}`)
	p := n.newPod("pod")
	ip := n.verifyAdded(p, n.add(list, p))
	n.del(list, p)
	n.verifyDeleted(p, ip)
	n.del(list, p) // DEL is idempotent
}

// TestSpecVersions runs ADD, CHECK and DEL for each spec version, 1.1.0 with
// plugins built from the module (Debian's stop at 1.0.0).
func TestSpecVersions(t *testing.T) {
	testns.RequireRoot(t)
	for _, v := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			paths := []string{debianPlugins}
			if v == "1.1.0" {
				paths = []string{modulePlugins(t)}
			}
			n := newNode(t, paths...)
			list := n.confList(v, "weft")
			p := n.newPod("pod")
			ip := n.verifyAdded(p, n.add(list, p))
			if err := n.check(list, p); err != nil {
				t.Errorf("CHECK: %v", err)
			}
			n.del(list, p)
			n.verifyDeleted(p, ip)
			if err := n.check(list, p); err == nil {
				t.Error("CHECK passed after DEL")
			}
		})
	}
}

// TestStatusAndGC covers the 1.1.0 verbs: STATUS says whether weftd wrote
// the subnet file; GC drops saved configs, endpoint records and addresses of
// gone pods.
func TestStatusAndGC(t *testing.T) {
	testns.RequireRoot(t)
	n := newNode(t, modulePlugins(t))
	list := n.confList("1.1.0", "weft")
	status := func() error {
		return n.in(func(ctx context.Context) error { return n.cni.GetStatusNetworkList(ctx, list) })
	}
	if err := status(); err != nil {
		t.Errorf("STATUS with a subnet file: %v", err)
	}

	store := n.announceEBPF()
	keep, gone := n.newPod("keep"), n.newPod("gone")
	keepRes, goneRes := n.add(list, keep), n.add(list, gone)
	keepIP := n.verifyAdded(keep, keepRes)
	goneIP := n.verifyAdded(gone, goneRes)
	results := map[string]*types100.Result{keep.rt.ContainerID: keepRes, gone.rt.ContainerID: goneRes}
	before := []string{keep.rt.ContainerID + ":eth0", gone.rt.ContainerID + ":eth0"}
	slices.Sort(before)
	if got := n.records(store, results); !slices.Equal(got, before) {
		t.Errorf("records after ADD: %v, want %v", got, before)
	}
	// A config left behind by a lost DEL, and another network's config.
	for id, name := range map[string]string{"stale": "cbr0", "other": "othernet"} {
		if err := os.WriteFile(filepath.Join(n.dataDir, id), fmt.Appendf(nil, `{"name":%q,"type":"bridge"}`, name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	err := n.in(func(ctx context.Context) error {
		return n.cni.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{
			{ContainerID: keep.rt.ContainerID, IfName: "eth0"}}})
	})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	n.verifyDeleted(gone, goneIP)
	for id, want := range map[string]bool{keep.rt.ContainerID: true, "stale": false, "other": true} {
		if got := fileExists(filepath.Join(n.dataDir, id)); got != want {
			t.Errorf("after GC saved config %s exists=%v, want %v", id, got, want)
		}
	}
	if !fileExists(filepath.Join(n.ipamDir, "cbr0", keepIP.String())) {
		t.Errorf("GC released the valid pod's address %s", keepIP)
	}
	if got, want := n.records(store, results), []string{keep.rt.ContainerID + ":eth0"}; !slices.Equal(got, want) {
		t.Errorf("records after GC: %v, want only the valid pod's %v", got, want)
	}

	if err := os.Remove(n.subnetFile); err != nil {
		t.Fatal(err)
	}
	var cniErr *types.Error
	if err := status(); !errors.As(err, &cniErr) || cniErr.Code != types.ErrPluginNotAvailable ||
		!strings.Contains(cniErr.Msg, "is weftd running") {
		t.Errorf("STATUS without a subnet file: %v, want code %d", err, types.ErrPluginNotAvailable)
	}
	n.del(list, keep) // DEL works from the saved config without the subnet file
	n.verifyDeleted(keep, keepIP)
}

// TestEndpointHook runs ADD with the ebpf datapath announced in the subnet
// file, so the endpoint is taken from the real bridge result and recorded;
// DEL removes the record.
func TestEndpointHook(t *testing.T) {
	n := newNode(t, debianPlugins)
	store := n.announceEBPF()
	list := n.confList("1.0.0", "weft")
	p := n.newPod("pod")
	r := n.add(list, p)
	n.verifyAdded(p, r)
	if got, want := n.records(store, map[string]*types100.Result{p.rt.ContainerID: r}), []string{p.rt.ContainerID + ":eth0"}; !slices.Equal(got, want) {
		t.Errorf("records after ADD: %v, want %v", got, want)
	}
	n.del(list, p)
	if got := n.records(store, nil); len(got) != 0 {
		t.Errorf("records after DEL: %v, want none", got)
	}
	n.del(list, p) // DEL is idempotent
}

func TestAddErrors(t *testing.T) {
	n := newNode(t, debianPlugins)
	list := n.confList("1.0.0", "weft")
	p := n.newPod("pod")
	for _, tc := range []struct{ file, want string }{
		{"", "is weftd running"},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=bogus\n", "bad subnet file"},
	} {
		if tc.file == "" {
			os.Remove(n.subnetFile)
		} else {
			n.writeSubnetFile(tc.file)
		}
		err := n.in(func(ctx context.Context) error {
			_, err := n.cni.AddNetworkList(ctx, list, p.rt)
			return err
		})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ADD error %v, want one saying %q", err, tc.want)
		}
	}
	n.del(list, p) // nothing was saved: DEL succeeds
}

func TestVersion(t *testing.T) {
	c := libcni.NewCNIConfig([]string{pluginDir(t)}, nil)
	for _, typ := range []string{"weft", "flannel"} {
		info, err := c.GetVersionInfo(t.Context(), typ)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}
		if got := info.SupportedVersions(); !slices.Equal(got, want) {
			t.Errorf("%s VERSION: %v, want %v", typ, got, want)
		}
	}
}

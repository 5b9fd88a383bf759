package ebpf

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/weftnet/weft/pkg/datapath"
)

// waitUntil polls cond until it returns nil, failing with its last error
// after a deadline.
func waitUntil(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// endpointMaps is what the pinned endpoint maps of n hold, printed.
func endpointMaps(n *testNode) (string, error) {
	eps, err := ReadEndpoints(n.bpfDir)
	if err != nil {
		return "", err
	}
	pods, err := ReadPods(n.bpfDir)
	if err != nil {
		return "", err
	}
	return fmt.Sprint(eps, pods), nil
}

// wantEndpointMaps is endpointMaps when the maps hold the entries of the
// pods pods (their own addresses, veths and MACs) and nothing else.
func wantEndpointMaps(t *testing.T, pods ...*testNode) string {
	t.Helper()
	var (
		eps     []Endpoint
		entries []Pod
	)
	for _, p := range pods {
		ep := p.endpoint(t)
		entry := Pod{HostIfindex: ep.HostIfindex, IP: p.podIP, IPv6: p.podIP6, MAC: ep.MAC}
		for _, ip := range []netip.Addr{p.podIP, p.podIP6} {
			if ip.IsValid() {
				ep.IP = ip
				eps = append(eps, ep)
			}
		}
		entries = append(entries, entry)
	}
	slices.SortFunc(eps, func(a, b Endpoint) int { return a.IP.Compare(b.IP) })
	slices.SortFunc(entries, func(a, b Pod) int { return a.HostIfindex - b.HostIfindex })
	return fmt.Sprint(eps, entries)
}

// checkEndpointMaps checks that n's endpoint maps hold the entries of pods
// and nothing else.
func checkEndpointMaps(t *testing.T, n *testNode, what string, pods ...*testNode) {
	t.Helper()
	got, err := endpointMaps(n)
	must(t, err)
	if want := wantEndpointMaps(t, pods...); got != want {
		t.Errorf("%s: endpoint maps\n%s\nwant\n%s", what, got, want)
	}
}

// waitEndpointMaps waits until n's endpoint maps hold the entries of pods
// and nothing else.
func waitEndpointMaps(t *testing.T, n *testNode, what string, pods ...*testNode) {
	t.Helper()
	want := wantEndpointMaps(t, pods...)
	waitUntil(t, what, func() error {
		got, err := endpointMaps(n)
		if err == nil && got != want {
			err = fmt.Errorf("endpoint maps\n%s\nwant\n%s", got, want)
		}
		return err
	})
}

// recordNode is one node (dual stack) with a pod whose record was saved
// before its ebpf datapath started, which it returns.
func recordNode(t *testing.T) (*testNode, *Datapath) {
	t.Helper()
	n := newStackNodes(t, datapath.ModeVXLAN, true)[0]
	n.addPod(t, 1450)
	must(t, n.store().Save(n.record(t)))
	return n, n.startEBPF(t, AttachTCX)
}

// syncNoPeers is a Sync of n without peers.
func syncNoPeers(t *testing.T, dp *Datapath) {
	t.Helper()
	must(t, dp.Sync(context.Background(), nil))
}

// TestEndpointsFromRecords: a record whose veth is on the bridge gets its
// endpoint and pods entries at Setup, without weft-cni registering them; an
// entry deleted by hand comes back at the next Sync, and at the next link
// event alone.
func TestEndpointsFromRecords(t *testing.T) {
	n, dp := recordNode(t)
	checkEndpointMaps(t, n, "after Setup", n)

	ifindex := n.endpoint(t).HostIfindex
	dropPinned(t, n, MapEndpoints, addrKey(n.podIP6))
	dropPinned(t, n, MapPods, uint32(ifindex))
	syncNoPeers(t, dp)
	checkEndpointMaps(t, n, "after a Sync", n)

	dropPinned(t, n, MapEndpoints, addrKey(n.podIP))
	dropPinned(t, n, MapPods, uint32(ifindex))
	n.ns.MustRun(t, "ip", "link", "add", "wtx0", "type", "veth", "peer", "name", "wtx1")
	waitEndpointMaps(t, n, "after a link event", n)
}

// TestEndpointRecordGone: a pod's veth deleted (without a CNI DEL) takes
// its record and entries with it, at the link event; the other pod's stay.
func TestEndpointRecordGone(t *testing.T) {
	n, dp := recordNode(t)
	second := n.addSecondPod(t, "1450")
	second.podIP6 = netip.Addr{} // an IPv4-only pod
	must(t, n.store().Save(second.record(t)))
	syncNoPeers(t, dp)
	checkEndpointMaps(t, n, "with two pods", n, second)

	n.ns.MustRun(t, "ip", "link", "del", second.veth)
	waitEndpointMaps(t, n, "after the second pod's veth went", n)
	waitUntil(t, "record of the deleted veth", func() error {
		records, err := n.store().List()
		if err == nil && (len(records) != 1 || records[0].HostIfName != n.veth) {
			err = fmt.Errorf("records %+v, want only %s's", records, n.veth)
		}
		return err
	})
}

// TestEndpointWithoutRecord: map entries no record backs (an address
// weft-cni registered for a pod it then lost, which also replaced the
// pod's source entry) are removed at the next Sync, and the record's
// entries restored.
func TestEndpointWithoutRecord(t *testing.T) {
	n, dp := recordNode(t)
	ep := n.endpoint(t)
	ep.IP = netip.MustParseAddr("10.244.1.99")
	must(t, RegisterEndpoint(n.bpfDir, ep))
	syncNoPeers(t, dp)
	checkEndpointMaps(t, n, "after a Sync", n)
}

// TestAdoptEndpoints: entries an older weft-cni registered without a record
// (here while weftd was down) become adopted records when weftd starts, and
// keep their entries through Syncs.
func TestAdoptEndpoints(t *testing.T) {
	n := newStackNodes(t, datapath.ModeVXLAN, true)[0]
	n.addPod(t, 1450)
	must(t, n.startEBPF(t, AttachTCX).Close())
	n.registerEndpoints(t)

	var dp *Datapath
	must(t, n.ns.Do(func() (err error) {
		dp, err = New(n.options(AttachTCX))
		return err
	}))
	n.setup(t, dp)
	syncNoPeers(t, dp)
	checkEndpointMaps(t, n, "after restart and Sync", n)
	checkAdopted(t, n)
}

// TestAdoptEndpointsOldLayout: an endpoints map in the layout before issue
// 11 (IPv4 keys of 4 bytes), pinned by an older weftd, is read before the
// new map replaces it: its pod gets an adopted record and entries in the
// new map, pinned in place of the old by the first Sync.
func TestAdoptEndpointsOldLayout(t *testing.T) {
	n := newTestNodes(t, datapath.ModeVXLAN)[0]
	n.addPod(t, 1450)
	must(t, ensureBPFFS(n.bpfDir))
	// b1590d9's weft_endpoints: __be32 -> struct endpoint.
	old, err := ebpf.NewMap(&ebpf.MapSpec{Name: MapEndpoints, Type: ebpf.Hash, KeySize: 4, ValueSize: 12, MaxEntries: 16384})
	must(t, err)
	defer old.Close()
	must(t, old.Pin(filepath.Join(n.bpfDir, MapEndpoints)))
	ep := n.endpoint(t)
	value := make([]byte, 12)
	binary.NativeEndian.PutUint32(value, uint32(ep.HostIfindex))
	copy(value[4:], ep.MAC)
	key := n.podIP.As4()
	must(t, old.Put(key[:], value))

	syncNoPeers(t, n.startEBPF(t, AttachTCX))
	checkEndpointMaps(t, n, "after Setup and Sync", n)
	checkAdopted(t, n)
}

// checkAdopted checks that n's store holds one record, adopted, of n's pod.
func checkAdopted(t *testing.T, n *testNode) {
	t.Helper()
	records, err := n.store().List()
	must(t, err)
	want := n.record(t)
	want.ContainerID, want.IfName = "", ""
	if len(records) != 1 || fmt.Sprint(records[0]) != fmt.Sprint(want) {
		t.Errorf("records %+v, want one adopted: %+v", records, want)
	}
}

// TestUnregisteredEndpointKernelPath: a pod weftd knows no record of has no
// entries, is not source-checked and reaches a remote pod, both ways, on
// the kernel path (its node's programs carry none of it); once its record
// appears, the next Sync puts it on the fast path.
func TestUnregisteredEndpointKernelPath(t *testing.T) {
	nodes := syncedNodes(t, datapath.ModeVXLAN, AttachTCX)
	n, other := nodes[0], nodes[1]
	other.register(t)
	waitPing(t, n.pod, other.podIP)
	checkEndpointMaps(t, n, "unregistered")

	labels := []datapath.Counter{{Backend: BackendVXLAN, Direction: "tx"}, {Backend: BackendVXLAN, Direction: "rx"},
		{Backend: "vxlan-kernel", Direction: "tx"}, {Backend: "vxlan-kernel", Direction: "rx"}}
	var before [4]uint64
	for i, l := range labels {
		before[i] = stat(t, n, l)
	}
	pingSeries(t, n.pod, other.podIP, 20, "0.05")
	const size = 16 << 20
	tcpTransfer(t, n, other, size)
	tcpTransfer(t, other, n, size)
	var grew [4]uint64
	for i, l := range labels {
		grew[i] = stat(t, n, l) - before[i]
	}
	t.Logf("unregistered pod's node: ebpf tx %d rx %d, kernel tx %d rx %d", grew[0], grew[1], grew[2], grew[3])
	if min := uint64(size / 65536 / 2); grew[0] != 0 || grew[1] != 0 || grew[2] < min || grew[3] < min {
		t.Errorf("ebpf counters grew by tx %d rx %d, kernel by tx %d rx %d: want none on the fast path, >= %d each on the kernel path",
			grew[0], grew[1], grew[2], grew[3], min)
	}
	if d := dropCounts(t, n.dp.(*Datapath).objs); d != (allDrops{}) {
		t.Errorf("drops on the unregistered pod's node: %v", d)
	}

	must(t, n.store().Save(n.record(t)))
	syncAll(t, nodes)
	checkEndpointMaps(t, n, "after its record and a Sync", n)
	checkFastPath(t, nodes, BackendVXLAN)
}

// TestEndpointRecordOffBridge: a record whose host veth exists but is on no
// bridge (weft-cni between creating and enslaving it) is kept, without
// entries; on the bridge it gets them.
func TestEndpointRecordOffBridge(t *testing.T) {
	n, dp := recordNode(t)
	n.ns.MustRun(t, "ip", "link", "set", n.veth, "nomaster")
	waitEndpointMaps(t, n, "veth off the bridge")
	syncNoPeers(t, dp)
	if records, err := n.store().List(); err != nil || len(records) != 1 {
		t.Errorf("records %+v (%v), want the pod's, kept", records, err)
	}
	n.ns.MustRun(t, "ip", "link", "set", n.veth, "master", "cni0")
	waitEndpointMaps(t, n, "veth back on the bridge", n)
}

package ebpf

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/pkg/datapath"
)

// TestUpgradeMaps upgrades a node from the previous release's maps: an
// earlier weft left its maps (b1590d9's definitions, a peer and counts in
// them) and its programs attached to the uplink and the pod's veth through
// pinned tcx links. Setup fills the new maps it can (config, subnet,
// counts) but swaps no program and keeps the old pins, and so does a link
// event; the first Sync fills peers and nodes, swaps every program and
// pins the new maps in place of the old. A restart then adopts them.
func TestUpgradeMaps(t *testing.T) {
	ctx := context.Background()
	nodes := newTestNodes(t, datapath.ModeVXLAN)
	n, other := nodes[0], nodes[1]
	n.addPod(t, 1450)
	must(t, ensureBPFFS(n.bpfDir))

	old := pinMaps(t, n.bpfDir, b1590d9Maps())
	type oldLPMKey struct {
		Prefixlen uint32
		Addr      [4]byte
	}
	must(t, old[MapPeers].Put(oldLPMKey{24, other.subnet.Addr().As4()}, [16]byte{}))
	rx := perCPUCount(0)
	must(t, old[MapTraffic].Put(uint32(weftCounterCOUNTER_VXLAN_RX), rx))
	oldIDs := map[string]ebpf.MapID{}
	for name, m := range old {
		oldIDs[name] = mapID(t, m)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "weft_old", Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}, // TCX_NEXT
	})
	must(t, err)
	t.Cleanup(func() { prog.Close() })
	oldProg, err := programID(prog)
	must(t, err)
	ifaces := []string{"eth0", "vethpod"}
	must(t, n.ns.Do(func() error {
		for _, name := range ifaces {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			tcx, err := link.AttachTCX(link.TCXOptions{Interface: l.Attrs().Index, Program: prog, Attach: ebpf.AttachTCXIngress})
			if err != nil {
				return err
			}
			err = tcx.Pin(attachment{iface: name, hook: ingress}.pin(n.bpfDir))
			tcx.Close()
			if err != nil {
				return err
			}
		}
		return nil
	}))
	// programs returns the programs attached through the pinned links.
	programs := func() map[string]ebpf.ProgramID {
		t.Helper()
		out := map[string]ebpf.ProgramID{}
		for _, name := range ifaces {
			l, err := link.LoadPinnedLink(attachment{iface: name, hook: ingress}.pin(n.bpfDir), nil)
			must(t, err)
			info, err := l.Info()
			l.Close()
			must(t, err)
			out[name] = info.Program
		}
		return out
	}
	checkOld := func(when string) {
		t.Helper()
		for name, id := range programs() {
			if id != oldProg {
				t.Errorf("%s: %s runs program %d, want the old one (%d) until the first sync", when, name, id, oldProg)
			}
		}
		for name, id := range oldIDs {
			if got := pinnedID(t, n.bpfDir, name); got != id {
				t.Errorf("%s: pin of %s replaced (map %d, was %d) before the programs were swapped", when, name, got, id)
			}
		}
	}

	dp := n.startEBPF(t, AttachTCX)
	checkOld("after setup")
	dp.relink("vethpod")
	checkOld("after a link event")
	dp.mu.Lock()
	var cfg weftNodeConfig
	must(t, dp.objs.WeftConfig.Lookup(configKey, &cfg))
	dp.mu.Unlock()
	if c := decodeConfig(cfg); c.NodeIP != n.node.NodeIP || c.Subnet != n.subnet {
		t.Errorf("new config map before the first sync: %+v, want node %s, subnet %s", c, n.node.NodeIP, n.subnet)
	}
	stats, err := dp.Stats()
	must(t, err)
	var rxPackets uint64
	for _, c := range rx {
		rxPackets += c.Packets
	}
	if c := stats[1]; c.Backend != BackendVXLAN || c.Direction != "rx" || c.Packets != rxPackets {
		t.Errorf("counter %+v, want the old map's %d vxlan-ebpf rx packets", c, rxPackets)
	}

	peers := []datapath.Peer{{Subnet: other.subnet, NodeIP: other.node.NodeIP, VtepMAC: net.HardwareAddr{0x02, 0xfe, 0, 0, 0, 2}}}
	must(t, dp.Sync(ctx, peers))
	dp.mu.Lock()
	want := map[string]*ebpf.Program{"eth0": dp.objs.WeftUplinkIngress, "vethpod": dp.objs.WeftVethIngress}
	pinned := map[string]*ebpf.Map{MapPeers: dp.objs.WeftPeers, MapConfig: dp.objs.WeftConfig, MapEndpoints: dp.objs.WeftEndpoints,
		MapPods: dp.objs.WeftPods, MapNodes: dp.objs.WeftNodes, MapTraffic: dp.objs.WeftTraffic, MapDrops: dp.objs.WeftDrops,
		MapCTRequests: dp.objs.WeftCtRequests}
	staged := len(dp.staged)
	dp.mu.Unlock()
	for name, id := range programs() {
		if w, err := programID(want[name]); err != nil || id != w {
			t.Errorf("after the first sync %s runs program %d, want %d (%v)", name, id, w, err)
		}
	}
	for name, m := range pinned {
		if pinnedID(t, n.bpfDir, name) != mapID(t, m) {
			t.Errorf("after the first sync the pin of %s is not the new map", name)
		}
	}
	if staged != 0 {
		t.Errorf("%d pins still staged after the first sync", staged)
	}
	checkMaps(t, n, peers)
	if c, err := ReadConfig(n.bpfDir); err != nil || c.NodeIP != n.node.NodeIP || c.Subnet != n.subnet {
		t.Errorf("pinned config after the upgrade: %+v, %v; want node %s, subnet %s", c, err, n.node.NodeIP, n.subnet)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(n.bpfDir, "*-new")); len(leftovers) != 0 {
		t.Errorf("temporary pins left: %v", leftovers)
	}

	objs, again, err := loadPinned(n.bpfDir)
	must(t, err)
	objs.Close()
	if len(again) != 0 {
		t.Errorf("a restart after the upgrade stages %s, want the pinned maps adopted", describe(again))
	}
}

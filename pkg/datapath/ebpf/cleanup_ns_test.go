package ebpf

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/datapath/kernel"
)

// TestPinnedMapsNamedWeft: Cleanup recognises weft's pins by name, so every
// map weft pins must be named weft_*.
func TestPinnedMapsNamedWeft(t *testing.T) {
	spec, err := loadWeft()
	must(t, err)
	for name, m := range spec.Maps {
		if m.Pinning == ebpf.PinByName && !strings.HasPrefix(name, namePrefix) {
			t.Errorf("pinned map %s is not named %s*: Cleanup would leave its pin", name, namePrefix)
		}
	}
}

// TestCleanupLeftovers switches a node from the ebpf datapath to the kernel
// one as weftd does: a Datapath that was never set up removes every weft
// program (pinned tcx links, an unpinned one, tc filters; on the uplink,
// the bridge, the pod veth and another interface) and every weft pin, also
// one no current map has; a foreign program and pin stay. The kernel
// datapath then carries ping and TCP both ways.
func TestCleanupLeftovers(t *testing.T) {
	for _, mode := range []string{AttachTCX, AttachTC} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			nodes := runningNodes(t, datapath.ModeVXLAN, mode)
			n, other := nodes[0], nodes[1]
			n.ns.MustRun(t, "ip", "link", "add", "spare0", "type", "veth", "peer", "name", "spare1")
			foreign := addLeftovers(t, n, mode)
			must(t, n.dp.Close())

			var dp *Datapath
			must(t, n.ns.Do(func() error {
				var err error
				dp, err = New(n.options(mode))
				return err
			}))
			n.dp = dp // the test's cleanup cleans up with it
			must(t, dp.Cleanup(ctx))

			var everywhere, pinned []Attachment
			must(t, n.ns.Do(func() error {
				var err error
				if everywhere, err = ReadNamespaceAttachments(); err != nil {
					return err
				}
				pinned, err = ReadAttachments(n.bpfDir)
				return err
			}))
			if len(everywhere) != 0 || len(pinned) != 0 {
				t.Errorf("after cleanup: attached %v, by pins %v; want none", everywhere, pinned)
			}
			if pins := pinsIn(t, n.bpfDir); !slices.Equal(pins, []string{"other"}) {
				t.Errorf("pins after cleanup %v, want only the foreign one", pins)
			}
			if !foreign() {
				t.Error("the foreign program on spare0 egress was removed")
			}
			if out, err := n.ns.Run("nft", "list", "table", "ip", trackingTable); err == nil {
				t.Errorf("table ip %s left after cleanup:\n%s", trackingTable, out)
			}

			slow := kernel.New()
			peers := []datapath.Peer{{Subnet: other.subnet, NodeIP: other.node.NodeIP, VtepMAC: other.info.VtepMAC}}
			must(t, n.ns.Do(func() error {
				if _, err := slow.Setup(ctx, n.node); err != nil {
					return err
				}
				if err := slow.SetSubnet(ctx, n.subnet); err != nil {
					return err
				}
				return slow.Sync(ctx, peers)
			}))
			rx := func() uint64 {
				var stats []datapath.Counter
				must(t, n.ns.Do(func() (err error) { stats, err = slow.Stats(); return err }))
				return stats[0].Packets // vxlan-kernel rx
			}
			before := rx()
			const pings = 10
			pingSeries(t, n.pod, other.podIP, pings, "0.05")
			pingSeries(t, other.pod, n.podIP, pings, "0.05")
			tcpTransfer(t, n, other, 1<<20)
			tcpTransfer(t, other, n, 1<<20)
			if got := rx() - before; got < 2*pings {
				t.Errorf("flannel.1 received %d packets, want >= %d: the kernel datapath did not carry the traffic", got, 2*pings)
			}
		})
	}
}

// addLeftovers adds to n what an ebpf run may leave besides its usual
// attachments: weft's veth program on spare0's ingress without a pin in
// n.bpfDir, and a pin of a map no current version has; and what Cleanup
// must leave alone: a foreign program on spare0's egress and a foreign pin.
// It returns a check that the foreign program is still attached.
func addLeftovers(t *testing.T, n *testNode, mode string) func() bool {
	t.Helper()
	dp := n.dp.(*Datapath)
	dp.mu.Lock()
	weftProg := dp.objs.WeftVethIngress
	dp.mu.Unlock()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "other_prog", Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	must(t, err)
	t.Cleanup(func() { prog.Close() })
	for _, name := range []string{"weft_gone", "other"} {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Name: name, Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		must(t, err)
		must(t, m.Pin(filepath.Join(n.bpfDir, name)))
		m.Close()
	}
	var spare netlink.Link
	must(t, n.ns.Do(func() error {
		var err error
		if spare, err = netlink.LinkByName("spare0"); err != nil {
			return err
		}
		for _, a := range []attachment{{"spare0", ingress, weftProg, weftProgWeftVethIngress}, {"spare0", egress, prog, "other_prog"}} {
			if mode == AttachTC {
				if err := attachTC(a, spare); err != nil {
					return err
				}
				continue
			}
			l, err := link.AttachTCX(link.TCXOptions{Interface: spare.Attrs().Index, Program: a.prog, Attach: a.hook.tcx})
			if err != nil {
				return err
			}
			t.Cleanup(func() { l.Close() })
		}
		return nil
	}))
	return func() bool {
		var found bool
		must(t, n.ns.Do(func() error {
			if mode == AttachTC {
				filters, err := netlink.FilterList(spare, egress.tcParent)
				found = slices.ContainsFunc(filters, func(f netlink.Filter) bool {
					bf, ok := f.(*netlink.BpfFilter)
					return ok && bf.Name == "other_prog"
				})
				return err
			}
			res, err := link.QueryPrograms(link.QueryOptions{Target: spare.Attrs().Index, Attach: egress.tcx})
			if err != nil {
				return err
			}
			want, err := programID(prog)
			found = slices.ContainsFunc(res.Programs, func(p link.AttachedProgram) bool { return p.ID == want })
			return err
		}))
		return found
	}
}

// pinsIn lists dir's files but the kernel's own (maps.debug, progs.debug
// at the root of a bpffs), sorted.
func pinsIn(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".debug") {
			out = append(out, e.Name())
		}
	}
	return out
}

package ebpf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/test/testns"
)

// BenchmarkProgram measures the programs' per-packet cost with
// BPF_PROG_TEST_RUN. Each packet runs once per syscall (Repeat 1): the
// kernel reuses the skb across repeats and encap/decap would see their own
// output. ns/packet is the kernel's in-run time, without syscall and skb
// setup; ns/op is the whole syscall. "baseline-empty" (a program that only
// returns TC_ACT_OK) shows the measuring overhead included in ns/packet.
// The forwarded flows are established and liberal in conntrack, so the
// fast-path cases pay for the conntrack lookup as on a node.
func BenchmarkProgram(b *testing.B) {
	e := newProgEnv(b)
	e.track(b, true, vxlanFlow, hostGWFlow)
	// The test runs' skb arrives on lo: make lo the pod's veth, so that
	// encap-vxlan-veth includes the pod source check (and, there, the
	// endpoint naming the veth the packet came from).
	must(b, e.WeftPods.Put(uint32(1), podEntry(localPod)))
	onLo := func(b *testing.B) {
		ep := weftEndpoint{HostIfindex: 1, Mac: mac6(podMAC)}
		must(b, e.WeftEndpoints.Put(addrKey(localPod), ep))
		b.Cleanup(func() {
			ep.HostIfindex = uint32(e.veth)
			must(b, e.WeftEndpoints.Put(addrKey(localPod), ep))
		})
	}
	empty, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, tcActOK), asm.Return()},
		License:      "GPL",
	})
	if err != nil {
		b.Fatal(err)
	}
	defer empty.Close()
	for _, c := range []struct {
		name    string
		prog    *ebpf.Program
		in      []byte
		verdict uint32
	}{
		{"baseline-empty", empty, podFrame(vxlanFlow.packet()), tcActOK},
		{"encap-vxlan", e.WeftPodIngress, podFrame(vxlanFlow.packet()), tcActRedirect},
		{"encap-vxlan-veth", e.WeftVethIngress, podFrame(vxlanFlow.packet()), tcActRedirect},
		{"tx-host-gw", e.WeftPodIngress, podFrame(hostGWFlow.packet()), tcActRedirect},
		{"decap-vxlan", e.WeftUplinkIngress, fromPeer(vxlanFlow.reply()), tcActRedirect},
		{"rx-host-gw", e.WeftUplinkIngress, fromPeer(hostGWFlow.reply()), tcActRedirect},
		{"pass-pod-to-outside", e.WeftPodIngress, podFrame(tcpPacket(localPod, netip.MustParseAddr("192.0.2.80"), 40000, 443)), tcActOK},
		{"pass-uplink-to-node", e.WeftUplinkIngress, ethernet(bridgeMAC, peerMAC, etherTypeIPv4, tcpPacket(vxlanNode, nodeIP, 40000, 22).bytes()), tcActOK},
	} {
		b.Run(c.name, func(b *testing.B) {
			if c.prog == e.WeftVethIngress {
				onLo(b)
			}
			if c.prog == e.WeftUplinkIngress {
				// Host-gw traffic is taken only on the uplink: make lo,
				// where the test runs' skb arrives, the uplink.
				e.setUplink(b, 1)
				defer e.setUplink(b, e.uplink)
			}
			var (
				inRun time.Duration
				n     int
			)
			// The conntrack lookups see the namespace of the calling thread.
			must(b, e.ns.Do(func() error {
				for b.Loop() {
					verdict, d, err := c.prog.Benchmark(c.in, 1, nil)
					if err != nil {
						return err
					}
					if verdict != c.verdict {
						return fmt.Errorf("verdict %d, want %d", verdict, c.verdict)
					}
					inRun += d
					n++
				}
				return nil
			}))
			b.ReportMetric(float64(inRun.Nanoseconds())/float64(n), "ns/packet")
		})
	}
}

// BenchmarkApply measures Apply's part on the maps (selection, bookkeeping
// and map writes; the kernel slow path has its own benchmark) for one
// change against 1000 and 10,000 peers: a peer added or removed, in turn.
// "rewrite" is what the Apply after a failed one pays: the whole selection
// written again, reading the maps back.
func BenchmarkApply(b *testing.B) {
	testns.RequireRoot(b)
	node := datapath.Node{NodeIP: netip.MustParseAddr("192.168.0.1"), Network: netip.MustParsePrefix("10.0.0.0/8"), Backend: datapath.ModeVXLAN}
	// peer i leases 10.<i/256>.<i%256>.0/24 from node IP 172.16.<i/256>.<i%256>.
	peer := func(i int) datapath.Peer {
		hi, lo := byte(i>>8), byte(i)
		return datapath.Peer{
			Subnet:  netip.PrefixFrom(netip.AddrFrom4([4]byte{10, hi, lo, 0}), 24),
			NodeIP:  netip.AddrFrom4([4]byte{172, 16, hi, lo}),
			VtepMAC: net.HardwareAddr{2, 0, 0, 0, hi, lo},
		}
	}
	for _, n := range []int{1000, 10000} {
		for _, rewrite := range []bool{false, true} {
			name := fmt.Sprintf("peers=%d/apply", n)
			if rewrite {
				name = fmt.Sprintf("peers=%d/rewrite", n)
			}
			b.Run(name, func(b *testing.B) {
				objs, err := loadUnpinned()
				must(b, err)
				defer objs.Close()
				d := &Datapath{objs: objs, node: node, sel: datapath.NewSelector(node, netip.MustParsePrefix("10.255.255.0/24"))}
				peers := make([]datapath.Peer, n)
				for i := range peers {
					peers[i] = peer(i)
				}
				// Apply without the kernel slow path.
				apply := func(ch datapath.Changes) error {
					delta, err := d.sel.Update(ch)
					return errors.Join(err, d.applyMaps(delta))
				}
				must(b, apply(datapath.Changes{Set: peers}))
				extra := peer(n)
				changes := [2]datapath.Changes{{Set: []datapath.Peer{extra}}, {Removed: []datapath.PeerKey{extra.Key()}}}
				i := 0
				for b.Loop() {
					if rewrite {
						d.last = nil
					}
					must(b, apply(changes[i%2]))
					i++
				}
				if got := len(d.last.peers.have); got != n+i%2 {
					b.Fatalf("%d remote subnets written, want %d", got, n+i%2)
				}
			})
		}
	}
}

// setUplink makes ifindex the uplink in the node config.
func (e *progEnv) setUplink(b *testing.B, ifindex int) {
	var cfg weftNodeConfig
	must(b, e.WeftConfig.Lookup(configKey, &cfg))
	cfg.UplinkIfindex = uint32(ifindex)
	must(b, e.WeftConfig.Put(configKey, cfg))
}

package ebpf

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// BenchmarkProgram measures the programs' per-packet cost with
// BPF_PROG_TEST_RUN. Each packet runs once per syscall (Repeat 1): the
// kernel reuses the skb across repeats and encap/decap would see their own
// output. ns/packet is the kernel's in-run time, without syscall and skb
// setup; ns/op is the whole syscall. "baseline-empty" (a program that only
// returns TC_ACT_OK) shows the measuring overhead included in ns/packet.
func BenchmarkProgram(b *testing.B) {
	objs := loadTestObjects(b)
	empty, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, tcActOK), asm.Return()},
		License:      "GPL",
	})
	if err != nil {
		b.Fatal(err)
	}
	defer empty.Close()
	fromPeer := net.HardwareAddr{2, 0, 0, 0, 0, 3}
	for _, c := range []struct {
		name    string
		prog    *ebpf.Program
		in      []byte
		verdict uint32
	}{
		{"baseline-empty", empty, podFrame(tcpPacket(localPod, vxlanPod, 40000, 80)), tcActOK},
		{"encap-vxlan", objs.WeftPodIngress, podFrame(tcpPacket(localPod, vxlanPod, 40000, 80)), tcActRedirect},
		{"encap-vxlan-veth", objs.WeftVethIngress, podFrame(tcpPacket(localPod, vxlanPod, 40000, 80)), tcActRedirect},
		{"tx-host-gw", objs.WeftPodIngress, podFrame(tcpPacket(localPod, hostGWPod, 40000, 80)), tcActRedirect},
		{"decap-vxlan", objs.WeftUplinkIngress, vxlanFrame(vxlanNode, testVNI, tcpPacket(vxlanPod, localPod, 40000, 80)), tcActRedirect},
		{"rx-host-gw", objs.WeftUplinkIngress, ethernet(bridgeMAC, fromPeer, etherTypeIPv4, tcpPacket(hostGWPod, localPod, 40000, 80).bytes()), tcActRedirect},
		{"pass-pod-to-outside", objs.WeftPodIngress, podFrame(tcpPacket(localPod, netip.MustParseAddr("192.0.2.80"), 40000, 443)), tcActOK},
		{"pass-uplink-to-node", objs.WeftUplinkIngress, ethernet(bridgeMAC, fromPeer, etherTypeIPv4, tcpPacket(vxlanNode, nodeIP, 40000, 22).bytes()), tcActOK},
		{"record-bridge-egress", objs.WeftPodEgress, ethernet(podMAC, bridgeMAC, etherTypeIPv4, tcpPacket(vxlanPod, localPod, 40000, 8080).bytes()), tcActOK},
	} {
		b.Run(c.name, func(b *testing.B) {
			var (
				inRun time.Duration
				n     int
			)
			for b.Loop() {
				verdict, d, err := c.prog.Benchmark(c.in, 1, nil)
				if err != nil {
					b.Fatal(err)
				}
				if verdict != c.verdict {
					b.Fatalf("verdict %d, want %d", verdict, c.verdict)
				}
				inRun += d
				n++
			}
			b.ReportMetric(float64(inRun.Nanoseconds())/float64(n), "ns/packet")
		})
	}
}

package ebpf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/cilium/ebpf"
)

// tcActRedirect is the programs' verdict for a packet they forward.
const tcActRedirect = 7

// Supported reports whether this kernel can run the ebpf datapath: nil, or
// why not. It loads the programs (the verifier must accept them) and runs
// one encapsulation and one decapsulation with BPF_PROG_TEST_RUN, which
// needs the bpf_skb_adjust_room decap flags of Linux >= 6.3. It attaches
// nothing; attaching falls back from tcx to tc, which any such kernel has.
func Supported() error {
	objs, err := loadUnpinned()
	if err != nil {
		return fmt.Errorf("ebpf datapath unsupported: %w", err)
	}
	defer objs.Close()
	if err := selfTest(objs); err != nil {
		return fmt.Errorf("ebpf datapath unsupported: %w", err)
	}
	return nil
}

// loadUnpinned loads the programs with fresh, unpinned maps.
func loadUnpinned() (*weftObjects, error) {
	spec, err := loadWeft()
	if err != nil {
		return nil, err
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	objs := new(weftObjects)
	if err := spec.LoadAndAssign(objs, nil); err != nil {
		return nil, fmt.Errorf("load eBPF programs: %w", verifierDetail(err))
	}
	return objs, nil
}

// selfTest encapsulates and decapsulates one packet in objs' fresh maps.
func selfTest(objs *weftObjects) error {
	var (
		local, remote  = netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
		pod, remotePod = netip.MustParseAddr("10.0.1.5"), netip.MustParseAddr("10.0.2.5")
		podMAC, vtep   = net.HardwareAddr{2, 0, 0, 0, 1, 5}, net.HardwareAddr{2, 0, 0, 0, 2, 0}
		remoteSubnet   = netip.MustParsePrefix("10.0.2.0/24")
		cfg            = weftNodeConfig{NodeIp: be32(local), Vni: 1, Port: 8472, UplinkIfindex: 1}
		key            = weftLpmKey{Prefixlen: 24, Addr: be32(remoteSubnet.Addr())}
		inner          = ipv4Packet{src: remotePod, dst: pod, proto: protoICMP}.bytes()
		outbound       = ipv4Packet{src: pod, dst: remotePod, proto: protoICMP}.bytes()
		innerFrame     = ethernet(vtep, vtep, etherTypeIPv4, inner)
		vxlanFrame     = ethernet(podMAC, podMAC, etherTypeIPv4, vxlanPacket(remote, local, 8472, 1, innerFrame))
		outboundFrame  = ethernet(podMAC, podMAC, etherTypeIPv4, outbound)
	)
	err := errors.Join(
		objs.WeftConfig.Put(configKey, cfg),
		objs.WeftPeers.Put(key, weftPeer{NodeIp: be32(remote), VtepMac: mac6(vtep), Mode: uint8(weftModeMODE_VXLAN)}),
		objs.WeftNodes.Put(be32(remote), weftKnownNode{Subnet: key.Addr, Prefixlen: key.Prefixlen}),
		objs.WeftEndpoints.Put(be32(pod), weftEndpoint{HostIfindex: 1, Mac: mac6(podMAC)}))
	if err != nil {
		return fmt.Errorf("fill maps: %w", err)
	}
	for _, c := range []struct {
		what    string
		prog    *ebpf.Program
		in      []byte
		wantLen int
	}{
		{"vxlan encapsulation", objs.WeftPodIngress, outboundFrame, len(outboundFrame) + vxlanOverhead},
		{"vxlan decapsulation (needs the bpf_skb_adjust_room decap flags of Linux >= 6.3)",
			objs.WeftUplinkIngress, vxlanFrame, len(vxlanFrame) - vxlanOverhead},
	} {
		verdict, out, err := run(c.prog, c.in)
		if err != nil {
			return fmt.Errorf("%s: %w", c.what, err)
		}
		if verdict != tcActRedirect || len(out) != c.wantLen {
			return fmt.Errorf("%s: verdict %d and %d bytes, want redirect and %d bytes", c.what, verdict, len(out), c.wantLen)
		}
	}
	return nil
}

// run runs prog once on a copy of frame and returns the verdict and the frame after.
func run(prog *ebpf.Program, frame []byte) (uint32, []byte, error) {
	opts := &ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+256)}
	verdict, err := prog.Run(opts)
	if err != nil {
		return 0, nil, fmt.Errorf("test run: %w", err)
	}
	return verdict, opts.DataOut, nil
}

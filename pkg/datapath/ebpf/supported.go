package ebpf

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// vxlanOverhead is what VXLAN encapsulation adds to a frame: outer
// Ethernet, IPv4, UDP and VXLAN headers (the pod's frame keeps its own).
const vxlanOverhead = 50

// Supported reports whether this kernel can run the ebpf datapath: nil, or
// why not. The programs must load (the verifier accepts them and the kernel
// has the conntrack kfuncs they call) and bpf_skb_adjust_room must know the
// decapsulation flags of Linux >= 6.3. It attaches nothing; attaching falls
// back from tcx to tc, which any such kernel has.
func Supported() error {
	objs, err := loadUnpinned()
	if err != nil {
		return fmt.Errorf("ebpf datapath unsupported: %w", err)
	}
	objs.Close()
	if err := probeDecap(); err != nil {
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

// probeDecap runs bpf_skb_adjust_room(skb, -50, BPF_ADJ_ROOM_MAC,
// DECAP_L3_IPV4 | FIXED_GSO), what VXLAN decapsulation does, on a frame with
// BPF_PROG_TEST_RUN: older kernels reject the flag.
func probeDecap() error {
	const (
		adjRoomMAC = 1
		fixedGSO   = 1 << 0
		decapL3v4  = 1 << 7 // WEFT_ADJ_ROOM_DECAP_L3_IPV4
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SchedCLS,
		License: "Dual BSD/GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R2, -vxlanOverhead),
			asm.Mov.Imm(asm.R3, adjRoomMAC),
			asm.LoadImm(asm.R4, decapL3v4|fixedGSO, asm.DWord),
			asm.FnSkbAdjustRoom.Call(),
			asm.Return(),
		},
	})
	if err != nil {
		return fmt.Errorf("load decapsulation probe: %w", err)
	}
	defer prog.Close()
	// Ethernet + IPv4 + room for the 50 bytes VXLAN adds.
	frame := make([]byte, 14+20+vxlanOverhead+20)
	frame[12], frame[13] = 0x08, 0x00
	frame[14] = 0x45
	ret, err := prog.Run(&ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+64)})
	if err != nil {
		return fmt.Errorf("run decapsulation probe: %w", err)
	}
	if ret != 0 {
		return fmt.Errorf("bpf_skb_adjust_room has no decapsulation flags (errno %d): Linux >= 6.3 needed", -int32(ret))
	}
	return nil
}

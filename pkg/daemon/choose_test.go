package daemon

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/netconf"
	"github.com/weftnet/weft/pkg/subnetfile"
)

// namedDatapath is a datapath of which chooseDatapath only asks the name.
type namedDatapath struct {
	datapath.Datapath
	name string
}

func (d namedDatapath) Name() string { return d.name }

// fakeFactory builds named datapaths and records RemoveEBPF calls.
type fakeFactory struct {
	ebpfErr, removeErr error
	removed            int
}

func (f *fakeFactory) Kernel() datapath.Datapath { return namedDatapath{name: netconf.DatapathKernel} }

func (f *fakeFactory) EBPF() (datapath.Datapath, error) {
	if f.ebpfErr != nil {
		return nil, f.ebpfErr
	}
	return namedDatapath{name: netconf.DatapathEBPF}, nil
}

func (f *fakeFactory) BPFDir() string { return "/sys/fs/bpf/weft" }

func (f *fakeFactory) EndpointDir() string { return "/run/weft/endpoints" }

func (f *fakeFactory) RemoveEBPF(context.Context) error {
	f.removed++
	return f.removeErr
}

// TestChooseDatapathRemovesEBPF: whichever way the kernel datapath is
// chosen, an earlier eBPF run's programs and the subnet file's WEFT_BPF_DIR
// are removed first, and a failure to remove them does not stop the node;
// the eBPF datapath leaves them in place.
func TestChooseDatapathRemovesEBPF(t *testing.T) {
	unsupported := errors.New("no eBPF here")
	for _, c := range []struct {
		name               string
		netconf, override  string
		ebpfErr, removeErr error
		want               string
	}{
		{"configured kernel", netconf.DatapathKernel, "", nil, nil, netconf.DatapathKernel},
		{"--datapath kernel", netconf.DatapathEBPF, netconf.DatapathKernel, nil, nil, netconf.DatapathKernel},
		{"auto falls back", netconf.DatapathAuto, "", unsupported, nil, netconf.DatapathKernel},
		{"removal fails", netconf.DatapathKernel, "", nil, errors.New("denied"), netconf.DatapathKernel},
		{"configured ebpf", netconf.DatapathEBPF, "", nil, nil, netconf.DatapathEBPF},
		{"auto picks ebpf", netconf.DatapathAuto, "", nil, nil, netconf.DatapathEBPF},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "subnet.env")
			env := subnetfile.Env{
				Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.3.0/24"),
				MTU: 1450, IPMasq: true, BPFDir: "/sys/fs/bpf/weft", EndpointDir: "/run/weft/endpoints",
			}
			if err := subnetfile.Write(path, env); err != nil {
				t.Fatal(err)
			}
			f := &fakeFactory{ebpfErr: c.ebpfErr, removeErr: c.removeErr}
			d := New(Config{SubnetFile: path, Datapath: c.override, Datapaths: f}, nil)
			dp, err := d.chooseDatapath(t.Context(), netconf.Backend{Datapath: c.netconf})
			if err != nil {
				t.Fatal(err)
			}
			if dp.Name() != c.want {
				t.Errorf("datapath %s, want %s", dp.Name(), c.want)
			}
			kernel := c.want == netconf.DatapathKernel
			if wantRemoved := map[bool]int{true: 1}[kernel]; f.removed != wantRemoved {
				t.Errorf("RemoveEBPF called %d times, want %d", f.removed, wantRemoved)
			}
			got, err := subnetfile.Read(path)
			if err != nil {
				t.Fatal(err)
			}
			if kernel {
				env.BPFDir, env.EndpointDir = "", ""
			}
			if got != env {
				t.Errorf("subnet file %+v, want %+v", got, env)
			}
		})
	}
}

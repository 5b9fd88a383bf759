package cni

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/weftnet/weft/pkg/endpoint"
)

// saveRecords stores a record for each attachment "containerID:ifName"
// (":hostIf" for an adopted one) and returns the store.
func saveRecords(t *testing.T, names ...string) endpoint.Store {
	t.Helper()
	s := endpoint.Store{Dir: filepath.Join(t.TempDir(), "endpoints")}
	for i, name := range names {
		r := endpoint.Record{HostIfName: "veth" + string(rune('a'+i)), MAC: "0a:58:0a:f4:01:02",
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 244, 1, byte(2 + i)})}}
		id, ifName, _ := strings.Cut(name, ":")
		if id == "" {
			r.HostIfName = ifName
		} else {
			r.ContainerID, r.IfName = id, ifName
		}
		if err := s.Save(r); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// names lists the store's records as "containerID:ifName" (":hostIf" when
// adopted), sorted.
func names(t *testing.T, s endpoint.Store) []string {
	t.Helper()
	records, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range records {
		if r.ContainerID == "" {
			out = append(out, ":"+r.HostIfName)
		} else {
			out = append(out, r.ContainerID+":"+r.IfName)
		}
	}
	slices.Sort(out)
	return out
}

func TestForgetRecord(t *testing.T) {
	s := saveRecords(t, "c1:eth0", "c2:eth0")
	forgetEndpoint("", s.Dir, "c1", "eth0")
	forgetEndpoint("", s.Dir, "c1", "eth0") // DEL is idempotent
	forgetEndpoint("", s.Dir, "bad/id", "eth0")
	if got, want := names(t, s), []string{"c2:eth0"}; !slices.Equal(got, want) {
		t.Errorf("records after DEL of c1: %v, want %v", got, want)
	}
}

// TestCollectRecords: GC removes the records of attachments the runtime
// no longer knows, and only those of this network's plugin.
func TestCollectRecords(t *testing.T) {
	s := saveRecords(t, "keep:eth0", "gone:eth0", "keep:net1", "anyif:eth0", "other:eth0", ":vethadopted")
	dataDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dataDir, "other"), []byte(`{"name":"othernet","type":"bridge"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	collectRecords(s.Dir, dataDir, "cbr0", []types.GCAttachment{
		{ContainerID: "keep", IfName: "eth0"},
		{ContainerID: "anyif"}, // a runtime that names no interface
	})
	want := []string{":vethadopted", "anyif:eth0", "keep:eth0", "other:eth0"}
	if got := names(t, s); !slices.Equal(got, want) {
		t.Errorf("records after GC: %v, want %v", got, want)
	}
}

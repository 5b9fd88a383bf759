package endpoint

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestStoreRoundTrip(t *testing.T) {
	s := Store{Dir: filepath.Join(t.TempDir(), "endpoints")}
	if got, err := s.List(); err != nil || len(got) != 0 {
		t.Fatalf("List of a missing dir = %v, %v; want empty", got, err)
	}
	pod := Record{ContainerID: "c_1.a-b", IfName: "eth0", HostIfName: "veth1234", MAC: "0a:58:0a:f4:01:02",
		IPs: []netip.Addr{netip.MustParseAddr("10.244.1.2"), netip.MustParseAddr("fd10::2")}}
	adopted := Record{HostIfName: "veth9", MAC: "0a:58:0a:f4:01:09", IPs: []netip.Addr{netip.MustParseAddr("10.244.1.9")}}
	for _, r := range []Record{pod, adopted} {
		if err := s.Save(r); err != nil {
			t.Fatal(err)
		}
	}
	// Not a record: ignored. A broken record: skipped.
	os.WriteFile(filepath.Join(s.Dir, ".tmp.json"), []byte("{"), 0o600)
	os.WriteFile(filepath.Join(s.Dir, "broken:eth0.json"), []byte("{"), 0o600)
	got, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !slices.ContainsFunc(got, func(r Record) bool { return r.ContainerID == pod.ContainerID && len(r.IPs) == 2 }) {
		t.Fatalf("List = %+v, want the pod and the adopted record", got)
	}
	if r, err := s.Load(pod.ContainerID, pod.IfName); err != nil || r.HostIfName != pod.HostIfName || len(r.IPs) != 2 {
		t.Fatalf("Load = %+v, %v; want the pod's record", r, err)
	}
	if _, err := s.Load("other", "eth0"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of no record: %v, want fs.ErrNotExist", err)
	}
	pod.IPs = pod.IPs[:1]
	if err := s.Save(pod); err != nil { // replaces
		t.Fatal(err)
	}
	if err := s.Remove(adopted); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(adopted); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	got, _ = s.List()
	if len(got) != 1 || len(got[0].IPs) != 1 {
		t.Fatalf("after replace and remove: %+v", got)
	}
}

func TestSaveRejects(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	ok := Record{ContainerID: "c", IfName: "eth0", HostIfName: "veth1", MAC: "0a:58:0a:f4:01:02", IPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}
	for name, mut := range map[string]func(*Record){
		"no host if":    func(r *Record) { r.HostIfName = "" },
		"bad MAC":       func(r *Record) { r.MAC = "zz" },
		"no IP":         func(r *Record) { r.IPs = nil },
		"mapped IP":     func(r *Record) { r.IPs = []netip.Addr{netip.MustParseAddr("::ffff:10.0.0.1")} },
		"path in ID":    func(r *Record) { r.ContainerID = "../x" },
		"colon in name": func(r *Record) { r.IfName = "a:b" },
	} {
		r := ok
		mut(&r)
		if err := s.Save(r); err == nil {
			t.Errorf("%s: Save accepted %+v", name, r)
		}
	}
}

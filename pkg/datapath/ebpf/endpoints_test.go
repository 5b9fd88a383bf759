package ebpf

import (
	"encoding/binary"
	"maps"
	"net"
	"net/netip"
	"reflect"
	"testing"

	"github.com/weftnet/weft/pkg/endpoint"
)

var (
	macA = net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 1}
	macB = net.HardwareAddr{0x02, 0xbb, 0, 0, 0, 2}
)

// rec is a record of the pod behind host with mac and ips.
func rec(id, host string, mac net.HardwareAddr, ips ...string) endpoint.Record {
	r := endpoint.Record{ContainerID: id, IfName: "eth0", HostIfName: host, MAC: mac.String()}
	for _, ip := range ips {
		r.IPs = append(r.IPs, netip.MustParseAddr(ip))
	}
	return r
}

// epEntry is the endpoints map's entry of ip behind ifindex with mac.
func epEntry(ip string, ifindex int, mac net.HardwareAddr) (weftAddr, weftEndpoint) {
	return addrKey(netip.MustParseAddr(ip)), weftEndpoint{HostIfindex: uint32(ifindex), Mac: mac6(mac)}
}

// podOf is the pods map's entry of a pod with mac and ips.
func podOf(mac net.HardwareAddr, ips ...string) weftPod {
	p := weftPod{Mac: mac6(mac)}
	for _, ip := range ips {
		a := netip.MustParseAddr(ip)
		p.Ip[familyOf(a)] = addrKey(a)
	}
	return p
}

// TestDesiredEndpoints: live records (veth on the bridge) give both maps'
// entries; records of veths elsewhere, broken records and conflicts give
// none, and a conflict costs a pod its source check, never its frames.
func TestDesiredEndpoints(t *testing.T) {
	veths := map[string]int{"veth1": 11, "veth2": 12, "veth3": 13, "veth4": 14, "veth5": 15}
	records := []endpoint.Record{
		rec("a", "veth1", macA, "10.244.1.2", "fd10::2"),
		rec("gone", "vethgone", macA, "10.244.1.9"),
		// veth2 and veth3 both claim 10.244.1.3; veth3's IPv6 address
		// is its own.
		rec("b", "veth2", macB, "10.244.1.3"),
		rec("c", "veth3", macA, "10.244.1.3", "fd10::3"),
		// Two records of veth4.
		rec("d", "veth4", macA, "10.244.1.4"),
		rec("e", "veth4", macB, "10.244.1.5"),
		// Not usable: a multicast MAC, two IPv4 addresses.
		rec("f", "veth5", net.HardwareAddr{0x03, 0, 0, 0, 0, 1}, "10.244.1.6"),
		rec("g", "veth5", macA, "10.244.1.7", "10.244.1.8"),
	}
	got := desiredEndpoints(records, veths)
	want := endpointEntries{endpoints: map[weftAddr]weftEndpoint{}, pods: map[uint32]weftPod{
		11: podOf(macA, "10.244.1.2", "fd10::2"),
	}}
	for _, e := range []struct {
		ip      string
		ifindex int
		mac     net.HardwareAddr
	}{{"10.244.1.2", 11, macA}, {"fd10::2", 11, macA}, {"fd10::3", 13, macA}} {
		k, v := epEntry(e.ip, e.ifindex, e.mac)
		want.endpoints[k] = v
	}
	if !maps.Equal(got.endpoints, want.endpoints) {
		t.Errorf("endpoints\n%v\nwant\n%v", got.endpoints, want.endpoints)
	}
	if !maps.Equal(got.pods, want.pods) {
		t.Errorf("pods\n%v\nwant\n%v", got.pods, want.pods)
	}
}

// TestDecodeMapEndpoint: both key layouts weft has written decode, others
// are refused.
func TestDecodeMapEndpoint(t *testing.T) {
	value := make([]byte, 12)
	binary.NativeEndian.PutUint32(value, 7)
	copy(value[4:], macA)
	mapped := netip.MustParseAddr("::ffff:10.244.1.5").As16()
	v6 := netip.MustParseAddr("fd10::5").As16()
	for _, c := range []struct {
		name string
		key  []byte
		want netip.Addr
	}{
		{"IPv4, 4-byte key (before issue 11)", []byte{10, 244, 1, 5}, netip.MustParseAddr("10.244.1.5")},
		{"IPv4 mapped, 16-byte key", mapped[:], netip.MustParseAddr("10.244.1.5")},
		{"IPv6, 16-byte key", v6[:], netip.MustParseAddr("fd10::5")},
	} {
		e, err := decodeMapEndpoint(c.key, value)
		if err != nil || e.ip != c.want || e.ifindex != 7 || e.mac.String() != macA.String() {
			t.Errorf("%s: %+v, %v; want %s at ifindex 7 with %s", c.name, e, err, c.want, macA)
		}
	}
	if _, err := decodeMapEndpoint(make([]byte, 8), value); err == nil {
		t.Error("an 8-byte key decoded")
	}
	if _, err := decodeMapEndpoint([]byte{10, 244, 1, 5}, value[:8]); err == nil {
		t.Error("an 8-byte value decoded")
	}
}

// TestAdoptable: map entries no record backs become one record per veth
// still on the bridge, both families merged; backed, gone and disagreeing
// ones do not.
func TestAdoptable(t *testing.T) {
	entry := func(ip string, ifindex int, mac net.HardwareAddr) mapEndpoint {
		return mapEndpoint{netip.MustParseAddr(ip), ifindex, mac}
	}
	veths := map[string]int{"veth1": 11, "veth2": 12, "veth3": 13, "veth4": 14}
	entries := []mapEndpoint{
		entry("fd10::2", 11, macA), entry("10.244.1.2", 11, macA), // adopted, merged
		entry("10.244.1.3", 12, macA),                                // its address has a record
		entry("10.244.1.4", 13, macA),                                // its veth has a record
		entry("10.244.1.5", 14, macA), entry("10.244.1.6", 14, macA), // two IPv4 addresses
		entry("10.244.1.7", 99, macA), // no such veth on the bridge
	}
	records := []endpoint.Record{rec("x", "vethx", macB, "10.244.1.3"), rec("y", "veth3", macB, "10.244.1.8")}
	got := adoptable(entries, records, veths)
	want := []endpoint.Record{{HostIfName: "veth1", MAC: macA.String(),
		IPs: []netip.Addr{netip.MustParseAddr("10.244.1.2"), netip.MustParseAddr("fd10::2")}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("adopted %+v, want %+v", got, want)
	}
	mixed := []mapEndpoint{entry("10.244.1.2", 11, macA), entry("fd10::2", 11, macB)}
	if got := adoptable(mixed, nil, veths); len(got) != 0 {
		t.Errorf("entries of one veth with two MACs adopted as %+v", got)
	}
}

// TestDiffCounts: diff counts the writes and deletes that change a map.
func TestDiffCounts(t *testing.T) {
	have := map[uint32]uint32{1: 1, 2: 2, 3: 3}
	want := map[uint32]uint32{1: 1, 2: 20, 4: 4}
	if n := diff(have, want).len(); n != 3 { // change 2, add 4, delete 3
		t.Errorf("diff of %v to %v: %d edits, want 3", have, want, n)
	}
	if n := diff(want, want).len(); n != 0 {
		t.Errorf("diff of equal maps: %d edits", n)
	}
}

package kernel

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/datapath"
)

var (
	network = netip.MustParsePrefix("10.244.0.0/16")
	own     = netip.MustParsePrefix("10.244.1.0/24")
	mac2    = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
	mac3    = net.HardwareAddr{0x02, 0, 0, 0, 0, 3}
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

func TestBuildDesired(t *testing.T) {
	peers := []datapath.Peer{
		{Subnet: pfx("10.244.3.0/24"), NodeIP: ip("192.168.0.3"), VtepMAC: mac3, Mode: datapath.ModeVXLAN},
		{Subnet: pfx("10.244.2.0/24"), NodeIP: ip("192.168.0.2"), VtepMAC: mac2, Mode: datapath.ModeVXLAN},
		{Subnet: pfx("10.244.4.0/24"), NodeIP: ip("192.168.0.4"), Mode: datapath.ModeHostGW},
		// The node of 10.244.2.0/24 with the same MAC on its IPv6 device:
		// the two devices' entries are apart.
		{Subnet: pfx("fd10:244:0:2::/64"), NodeIP: ip("fd00::2"), VtepMAC: mac2, Mode: datapath.ModeVXLAN},
		{Subnet: pfx("fd10:244:0:4::/64"), NodeIP: ip("fd00::4"), Mode: datapath.ModeHostGW},
	}
	d := buildDesired(peers, [2]int{7, 8}, 2)
	wantRoutes := map[netip.Prefix]route{
		pfx("10.244.2.0/24"):     {dst: pfx("10.244.2.0/24"), gw: ip("10.244.2.0"), link: 7, onlink: true},
		pfx("10.244.3.0/24"):     {dst: pfx("10.244.3.0/24"), gw: ip("10.244.3.0"), link: 7, onlink: true},
		pfx("10.244.4.0/24"):     {dst: pfx("10.244.4.0/24"), gw: ip("192.168.0.4"), link: 2},
		pfx("fd10:244:0:2::/64"): {dst: pfx("fd10:244:0:2::/64"), gw: ip("fd10:244:0:2::"), link: 8, onlink: true},
		pfx("fd10:244:0:4::/64"): {dst: pfx("fd10:244:0:4::/64"), gw: ip("fd00::4"), link: 2},
	}
	if len(d.routes) != len(wantRoutes) {
		t.Fatalf("routes %v, want %v", d.routes, wantRoutes)
	}
	for k, w := range wantRoutes {
		if d.routes[k] != w {
			t.Errorf("route %s = %+v, want %+v", k, d.routes[k], w)
		}
	}
	if neighs := d.neighs(ipv4); len(neighs) != 2 || neighs[ip("10.244.2.0")].String() != mac2.String() || neighs[ip("10.244.3.0")].String() != mac3.String() {
		t.Errorf("IPv4 neighs %v", neighs)
	}
	if neighs := d.neighs(ipv6); len(neighs) != 1 || neighs[ip("fd10:244:0:2::")].String() != mac2.String() {
		t.Errorf("IPv6 neighs %v", neighs)
	}
	if fdb := d.fdbOf(ipv4); len(fdb) != 2 || fdb[keyOf(mac2, ipv4)].dst != ip("192.168.0.2") || fdb[keyOf(mac3, ipv4)].dst != ip("192.168.0.3") {
		t.Errorf("IPv4 fdb %v", fdb)
	}
	if fdb := d.fdbOf(ipv6); len(fdb) != 1 || fdb[keyOf(mac2, ipv6)].dst != ip("fd00::2") {
		t.Errorf("IPv6 fdb %v", fdb)
	}
}

func TestPlanRoutes(t *testing.T) {
	vx := route{dst: pfx("10.244.2.0/24"), gw: ip("10.244.2.0"), link: 7, onlink: true}
	moved := route{dst: pfx("10.244.3.0/24"), gw: ip("192.168.0.3"), link: 2}
	flagsOnly := route{dst: pfx("10.244.4.0/24"), gw: ip("10.244.4.0"), link: 7, onlink: true}
	missing := route{dst: pfx("10.244.5.0/24"), gw: ip("10.244.5.0"), link: 7, onlink: true}
	want := map[netip.Prefix]route{vx.dst: vx, moved.dst: moved, flagsOnly.dst: flagsOnly, missing.dst: missing}

	kernelRoute := func(r route) netlink.Route { return r.netlink() }
	wasVXLAN := kernelRoute(route{dst: moved.dst, gw: ip("10.244.3.0"), link: 7, onlink: true})
	noOnlink := kernelRoute(flagsOnly)
	noOnlink.Flags = 0
	metric := kernelRoute(vx)
	metric.Priority = 100
	stale := kernelRoute(route{dst: pfx("10.244.9.0/24"), gw: ip("10.244.9.0"), link: 7, onlink: true})
	// The kernel lists an IPv6 route added without a metric with 1024:
	// that is the wanted route, kept; one with metric 0 differs.
	vx6 := route{dst: pfx("fd10:244:0:2::/64"), gw: ip("fd10:244:0:2::"), link: 8, onlink: true}
	missing6 := route{dst: pfx("fd10:244:0:5::/64"), gw: ip("fd10:244:0:5::"), link: 8, onlink: true}
	want[vx6.dst], want[missing6.dst] = vx6, missing6
	listed6 := kernelRoute(vx6)
	listed6.Priority = 1024
	metric0v6 := kernelRoute(missing6)
	current := []netlink.Route{kernelRoute(vx), wasVXLAN, noOnlink, metric, stale, listed6, metric0v6}

	replace, del := planRoutes(current, want)
	wantReplace := []route{moved, flagsOnly, missing, missing6}
	if len(replace) != len(wantReplace) {
		t.Fatalf("replace %+v, want %+v", replace, wantReplace)
	}
	for i := range replace {
		if replace[i] != wantReplace[i] {
			t.Errorf("replace[%d] = %+v, want %+v", i, replace[i], wantReplace[i])
		}
	}
	// The old vxlan route of the moved peer, the extra metric and the stale
	// one go; the flags-only difference is replaced in place.
	if len(del) != 4 || routeOf(del[0]) != routeOf(wasVXLAN) || del[1].Priority != 100 || routeOf(del[2]) != routeOf(stale) ||
		routeOf(del[3]) != missing6 || del[3].Priority != 0 {
		t.Errorf("del %v", del)
	}
}

func TestPlanNeighs(t *testing.T) {
	want := map[netip.Addr]net.HardwareAddr{ip("10.244.2.0"): mac2, ip("10.244.3.0"): mac3}
	current := []netlink.Neigh{
		{LinkIndex: 7, IP: net.ParseIP("10.244.2.0"), HardwareAddr: mac2, State: netlink.NUD_PERMANENT},
		{LinkIndex: 7, IP: net.ParseIP("10.244.3.0"), HardwareAddr: mac2, State: netlink.NUD_PERMANENT}, // MAC changed
		{LinkIndex: 7, IP: net.ParseIP("10.244.9.0"), HardwareAddr: mac3, State: netlink.NUD_PERMANENT}, // stale
		{LinkIndex: 7, IP: net.ParseIP("10.244.8.0"), State: netlink.NUD_NOARP},                         // kernel's
	}
	set, del := planNeighs(current, want, 7)
	if len(set) != 1 || !net.IP(set[0].IP).Equal(net.ParseIP("10.244.3.0")) || set[0].HardwareAddr.String() != mac3.String() ||
		set[0].State != netlink.NUD_PERMANENT || set[0].LinkIndex != 7 {
		t.Errorf("set %v", set)
	}
	if len(del) != 1 || !del[0].IP.Equal(net.ParseIP("10.244.9.0")) {
		t.Errorf("del %v", del)
	}
}

func TestPlanFDB(t *testing.T) {
	want := map[macKey]fdbEntry{
		keyOf(mac2, ipv4): {mac: mac2, dst: ip("192.168.0.2")},
		keyOf(mac3, ipv4): {mac: mac3, dst: ip("192.168.0.3")},
	}
	mac9 := net.HardwareAddr{2, 0, 0, 0, 0, 9}
	learned := net.HardwareAddr{2, 0, 0, 0, 0, 8}
	fdb := func(mac net.HardwareAddr, dst string, state int) netlink.Neigh {
		return netlink.Neigh{LinkIndex: 7, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, HardwareAddr: mac, IP: net.ParseIP(dst).To4(), State: state}
	}
	current := []netlink.Neigh{
		fdb(mac2, "192.168.0.2", netlink.NUD_PERMANENT),
		fdb(mac3, "192.168.0.33", netlink.NUD_PERMANENT), // node IP changed
		fdb(mac9, "192.168.0.9", netlink.NUD_PERMANENT),  // stale
		fdb(learned, "192.168.0.8", netlink.NUD_REACHABLE),
	}
	for _, learning := range []bool{false, true} {
		set, del := planFDB(current, want, 7, ipv4, learning)
		if len(set) != 1 || set[0].HardwareAddr.String() != mac3.String() || !set[0].IP.Equal(net.ParseIP("192.168.0.3")) ||
			set[0].Family != unix.AF_BRIDGE || set[0].Flags != netlink.NTF_SELF || set[0].State != netlink.NUD_PERMANENT {
			t.Errorf("learning=%v: set %v", learning, set)
		}
		wantDel := 3 // old destination of mac3, mac9, the learned entry
		if learning {
			wantDel = 2
		}
		if len(del) != wantDel || !del[0].IP.Equal(net.ParseIP("192.168.0.33")) || del[1].HardwareAddr.String() != mac9.String() {
			t.Errorf("learning=%v: del %v", learning, del)
		}
	}
}

func TestOwnedUplinkDst(t *testing.T) {
	cases := map[string]bool{
		"10.244.2.0/24":   true,
		"10.244.1.0/24":   false, // own subnet
		"10.244.1.128/25": false,
		"10.244.0.0/16":   false, // contains the own subnet
		"10.0.0.0/8":      false,
		"0.0.0.0/0":       false,
		"192.168.0.0/24":  false,
	}
	for dst, want := range cases {
		if got := ownedUplinkDst(network, own, pfx(dst)); got != want {
			t.Errorf("ownedUplinkDst(%s) = %v, want %v", dst, got, want)
		}
	}
	if !ownedUplinkDst(network, netip.Prefix{}, own) {
		t.Error("with the own subnet unknown, every route inside Network is owned")
	}
	network6, own6 := pfx("fd10:244::/56"), pfx("fd10:244:0:1::/64")
	for dst, want := range map[string]bool{"fd10:244:0:2::/64": true, "fd10:244:0:1::/64": false, "::/0": false, "10.244.2.0/24": false} {
		if got := ownedUplinkDst(network6, own6, pfx(dst)); got != want {
			t.Errorf("ownedUplinkDst(%s) = %v, want %v", dst, got, want)
		}
	}
}

func TestTrailingZeros(t *testing.T) {
	for a, want := range map[string]int{"10.244.2.0": 9, "10.244.0.0": 18, "0.0.0.0": 32, "fd10:244:0:2::": 65, "::": 128, "::1": 0} {
		if got := trailingZeros(ip(a)); got != want {
			t.Errorf("trailingZeros(%s) = %d, want %d", a, got, want)
		}
	}
}

func TestNormalize(t *testing.T) {
	n, err := normalize(datapath.Node{NodeIP: ip("192.168.0.1"), Uplink: "eth0", Network: pfx("10.244.7.0/16"), Backend: datapath.ModeVXLAN, VNI: 1})
	if err != nil {
		t.Fatal(err)
	}
	if n.Port != DefaultPort || n.Network != network {
		t.Errorf("normalize filled port %d network %s", n.Port, n.Network)
	}
	n, err = normalize(datapath.Node{NodeIP: ip("192.168.0.1"), Uplink: "eth0", Network: network, Backend: datapath.ModeUDP})
	if err != nil || n.Port != DefaultUDPPort {
		t.Errorf("normalize udp: port %d, %v; want %d", n.Port, err, DefaultUDPPort)
	}
	network6 := pfx("fd10:244::/56")
	for _, good := range []datapath.Node{
		{NodeIP: ip("192.168.0.1"), NodeIPv6: ip("fd00::1"), Uplink: "eth0", Network: network, IPv6Network: network6, Backend: datapath.ModeVXLAN},
		{NodeIPv6: ip("fd00::1"), Uplink: "eth0", IPv6Network: pfx("fd10:244::1/56"), Backend: datapath.ModeHostGW},
	} {
		n, err := normalize(good)
		if err != nil || n.IPv6Network != network6 {
			t.Errorf("normalize(%+v) = %v, IPv6Network %s", good, err, n.IPv6Network)
		}
	}
	bad := []datapath.Node{
		{Uplink: "eth0", Backend: datapath.ModeVXLAN}, // no family
		{NodeIPv6: ip("192.168.0.1"), Uplink: "eth0", IPv6Network: network6, Backend: datapath.ModeVXLAN},
		{NodeIPv6: ip("fd00::1"), Uplink: "eth0", IPv6Network: network, Backend: datapath.ModeVXLAN},
		{NodeIPv6: ip("fd00::1"), Uplink: "eth0", Backend: datapath.ModeVXLAN},
		{NodeIP: ip("192.168.0.1"), Uplink: "eth0", Network: network, IPv6Network: network6, Backend: datapath.ModeVXLAN},
		{NodeIP: ip("192.168.0.1"), NodeIPv6: ip("fd00::1"), Uplink: "eth0", Network: network, IPv6Network: network6, Backend: datapath.ModeUDP},
		{NodeIPv6: ip("fd00::1"), Uplink: "eth0", IPv6Network: network6, Backend: datapath.ModeWireGuard, WireGuard: datapath.WireGuard{KeyFile: "k"}},
		{NodeIP: ip("192.168.0.1"), Uplink: "eth0", Network: network, Backend: datapath.ModeWireGuard},
		{NodeIP: ip("192.168.0.1"), Uplink: "eth0", Network: network, Backend: datapath.ModeUDP, Port: -1},
		{NodeIP: ip("fd00::1"), Uplink: "eth0", Network: network, Backend: datapath.ModeVXLAN},
		{NodeIP: ip("192.168.0.1"), Network: network, Backend: datapath.ModeVXLAN},
		{NodeIP: ip("192.168.0.1"), Uplink: "eth0", Backend: datapath.ModeVXLAN},
		{NodeIP: ip("192.168.0.1"), Uplink: "eth0", Network: network, Backend: datapath.ModeVXLAN, VNI: 1 << 24},
		{NodeIP: ip("192.168.0.1"), Uplink: "eth0", Network: network, Backend: datapath.ModeVXLAN, Port: 70000},
		{NodeIP: ip("192.168.0.1"), Uplink: "eth0", Network: network, Backend: datapath.ModeVXLAN, MTU: -1},
	}
	for _, b := range bad {
		if _, err := normalize(b); err == nil {
			t.Errorf("normalize(%+v) accepted a bad node", b)
		}
	}
}

package ebpf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/weftnet/weft/pkg/conntrack"
	"github.com/weftnet/weft/test/testns"
)

// ioTimeout bounds every wait for test traffic.
const ioTimeout = 10 * time.Second

// Conntrack status bits (IPS_*) the tests look at.
const (
	ipsSeenReply = 1 << 1
	ipsNATMask   = 1<<4 | 1<<5 // IPS_SRC_NAT | IPS_DST_NAT
)

// progEnv is the programs loaded with unpinned maps filled for the test
// node (prog_test.go), and the network namespace their BPF_PROG_TEST_RUN
// runs in: the kernel helpers the programs call (conntrack lookups, FIB
// lookups, MTU checks) act in the namespace of the test run's skb, which is
// the calling thread's. The namespace has what those helpers look at on a
// node: the uplink (with the node IP, MTU 1500 and the default route), the
// bridge and the local pod's host veth (stand-ins), forwarding on (as weftd
// turns it on), conntrack on (as any NAT or firewall rule turns it on), and
// the test addresses on lo so that track can make real traffic between them.
type progEnv struct {
	*weftObjects
	ns *testns.NS
	// Interface indexes in ns: the uplink, the bridge and the local pod's
	// host veth (registered in the endpoints and pods maps). Another veth,
	// vethother, has no pod registered.
	uplink, bridge, veth int
	ct                   *conntrack.Conn
	requests             *ringbuf.Reader
}

// newProgEnv loads the programs into a fresh namespace set up as above.
func newProgEnv(t testing.TB) *progEnv {
	t.Helper()
	testns.RequireRoot(t)
	e := &progEnv{ns: testns.New(t, testns.Prefix(), "prog")}
	e.uplink, e.bridge, e.veth = e.addDevice(t, "uplink", 1500), e.addDevice(t, "cni0", 1500), e.addDevice(t, "vethpod", 1500)
	e.addDevice(t, "vethother", 1500)
	e.ns.MustRun(t, "ip", "addr", "add", nodeIP.String()+"/24", "dev", "uplink")
	e.ns.MustRun(t, "ip", "route", "add", "default", "via", "192.168.10.254", "dev", "uplink")
	e.ns.MustRun(t, "ip", "addr", "add", nodeIP6.String()+"/64", "dev", "uplink", "nodad")
	e.ns.MustRun(t, "ip", "-6", "route", "add", "default", "via", "fd00:10::fe", "dev", "uplink")
	for _, a := range []netip.Addr{localPod, otherPod, vxlanPod, hostGWPod, vxlanSubnet.Addr(), vxlanNode,
		localPod6, otherPod6, vxlanPod6, hostGWPod6, vxlanSubnet6.Addr(), vxlanNode6} {
		e.ns.MustRun(t, "ip", "addr", "add", netip.PrefixFrom(a, a.BitLen()).String(), "dev", "lo")
	}
	e.ns.MustRun(t, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	enableConntrack(t, e.ns)

	objs, err := loadUnpinned()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	e.weftObjects = objs
	cfg := weftNodeConfig{
		Family: [weftFamilyFAMILY_MAX]weftFamilyConfig{
			familyConfig(nodeIP, netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("10.244.0.0/16"), localVTEP),
			familyConfig(nodeIP6, ownSubnet6, network6, localVTEP6),
		},
		Vni: testVNI, Port: vxlanPort, BridgeMac: mac6(bridgeMAC), UplinkIfindex: uint32(e.uplink), BridgeIfindex: uint32(e.bridge),
		CtRefreshJiffies: ctRefreshJiffies(),
	}
	must(t, objs.WeftConfig.Put(configKey, cfg))
	for _, p := range []struct {
		subnet netip.Prefix
		node   netip.Addr
		vtep   net.HardwareAddr
		mode   weftMode
	}{
		{vxlanSubnet, vxlanNode, remoteVTEP, weftModeMODE_VXLAN},
		{hostGWSubnet, hostGWNode, nil, weftModeMODE_HOST_GW},
		{vxlanSubnet6, vxlanNode6, remoteVTEP6, weftModeMODE_VXLAN},
		{hostGWSubnet6, hostGWNode6, nil, weftModeMODE_HOST_GW},
	} {
		key := lpmKey(p.subnet)
		must(t, objs.WeftPeers.Put(key, weftPeer{NodeIp: addrKey(p.node), VtepMac: mac6(p.vtep), Mode: uint8(p.mode)}))
		must(t, objs.WeftNodes.Put(addrKey(p.node), weftKnownNode{Leases: 1}))
	}
	// What RegisterEndpoint writes for the pod behind vethpod.
	for _, ip := range []netip.Addr{localPod, localPod6} {
		must(t, objs.WeftEndpoints.Put(addrKey(ip), weftEndpoint{HostIfindex: uint32(e.veth), Mac: mac6(podMAC)}))
	}
	must(t, objs.WeftPods.Put(uint32(e.veth), podEntry(localPod, localPod6)))

	if e.ct, err = conntrack.Open(e.ns.Handle()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.ct.Close() })
	if e.requests, err = ringbuf.NewReader(objs.WeftCtRequests); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.requests.Close() })
	return e
}

// enableConntrack makes conntrack track the namespace's IPv4 and IPv6
// traffic, as any rule that uses it does on a node (NAT, masquerade, a
// firewall).
func enableConntrack(t testing.TB, ns *testns.NS) {
	t.Helper()
	ns.MustRun(t, "nft", "add table inet wt_ct { chain out { type filter hook output priority 0; ct state invalid counter; }; }")
}

// podEntry is the pods map's entry of the test pod (podMAC) with the
// addresses ips.
func podEntry(ips ...netip.Addr) weftPod {
	p := weftPod{Mac: mac6(podMAC)}
	for _, ip := range ips {
		p.Ip[familyOf(ip)] = addrKey(ip)
	}
	return p
}

// addDevice adds an interface name to e's namespace with the MTU mtu, up
// (one end of a veth pair: the programs only look at its index and MTU),
// and returns its index.
func (e *progEnv) addDevice(t testing.TB, name string, mtu int) int {
	t.Helper()
	e.ns.MustRun(t, "ip", "link", "add", name, "mtu", fmt.Sprint(mtu), "type", "veth", "peer", "name", name+"-p")
	e.ns.MustRun(t, "ip", "link", "set", name, "up")
	return ifindex(t, e.ns, name)
}

// setConfig changes the node config with change.
func (e *progEnv) setConfig(t testing.TB, change func(*weftNodeConfig)) {
	t.Helper()
	var cfg weftNodeConfig
	must(t, e.WeftConfig.Lookup(configKey, &cfg))
	change(&cfg)
	must(t, e.WeftConfig.Put(configKey, cfg))
}

// skbContext is struct __sk_buff up to ifindex: what the test runs set of
// the context (the rest stays zero).
type skbContext struct {
	_              [9]uint32 // len to priority
	IngressIfindex uint32
	Ifindex        uint32
}

// runOn is testRun in e's namespace.
func (e *progEnv) runOn(prog *ebpf.Program, ifindex int, frame []byte) (uint32, []byte, error) {
	return testRun(e.ns, prog, ifindex, frame)
}

// testRun runs prog once on a copy of frame in ns, as if the frame arrived
// on the interface ifindex there, and returns the verdict and the frame
// after.
func testRun(ns *testns.NS, prog *ebpf.Program, ifindex int, frame []byte) (uint32, []byte, error) {
	opts := &ebpf.RunOptions{
		Data:    frame,
		DataOut: make([]byte, len(frame)+256),
		Context: skbContext{IngressIfindex: uint32(ifindex), Ifindex: uint32(ifindex)},
	}
	var verdict uint32
	err := ns.Do(func() (err error) {
		verdict, err = prog.Run(opts)
		return err
	})
	if err != nil {
		return 0, nil, fmt.Errorf("test run: %w", err)
	}
	return verdict, opts.DataOut, nil
}

// attachedTo is the interface a node attaches prog to: the pod's veth, the
// bridge or the uplink.
func (e *progEnv) attachedTo(prog *ebpf.Program) int {
	switch prog {
	case e.WeftVethIngress:
		return e.veth
	case e.WeftPodIngress:
		return e.bridge
	}
	return e.uplink
}

// attachedProg is one of the programs and the interface it runs on.
type attachedProg struct {
	name    string
	prog    *ebpf.Program
	ifindex int
}

// podSide lists the programs a pod's traffic meets: at its veth, then at
// the bridge (for veths without a program yet).
func (e *progEnv) podSide() []attachedProg {
	return []attachedProg{
		{weftProgWeftVethIngress, e.WeftVethIngress, e.veth},
		{weftProgWeftPodIngress, e.WeftPodIngress, e.bridge},
	}
}

// run is runOn with the interface prog is attached to.
func (e *progEnv) run(prog *ebpf.Program, frame []byte) (uint32, []byte, error) {
	return e.runOn(prog, e.attachedTo(prog), frame)
}

// mustRun is run that fails t on error.
func (e *progEnv) mustRun(t testing.TB, prog *ebpf.Program, frame []byte) (uint32, []byte) {
	t.Helper()
	verdict, out, err := e.run(prog, frame)
	must(t, err)
	return verdict, out
}

// requested drains the conntrack offload requests the programs made.
func (e *progEnv) requested(t testing.TB) []conntrack.Tuple {
	t.Helper()
	var out []conntrack.Tuple
	e.requests.SetDeadline(time.Now()) // read what is there, do not wait
	for {
		rec, err := e.requests.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		must(t, err)
		tuple, err := decodeFlow(rec.RawSample)
		must(t, err)
		out = append(out, tuple)
	}
}

// flow is a connection between test addresses. Its client sends from src
// to dst (the tuple of its conntrack entry's original direction); a NAT
// rule may deliver it to server instead (zero: dst). ICMP flows are echo
// requests with ID 1, as ipPacket sends them; their ports are unused.
type flow struct {
	proto    uint8
	src, dst netip.AddrPort
	server   netip.AddrPort
}

// tcpFlow is the TCP flow src:sport -> dst:dport.
func tcpFlow(src netip.Addr, sport uint16, dst netip.Addr, dport uint16) flow {
	return flow{proto: protoTCP, src: netip.AddrPortFrom(src, sport), dst: netip.AddrPortFrom(dst, dport)}
}

// packet is a packet of f from its client (TCP: an ACK with payload).
func (f flow) packet() ipPacket {
	return ipPacket{src: f.src.Addr(), dst: f.dst.Addr(), proto: f.proto, sport: f.src.Port(), dport: f.dst.Port(),
		flags: tcpACK, payload: []byte("weft payload")}
}

// reply is a packet of f from its server, as the server sends it.
func (f flow) reply() ipPacket {
	server := f.serverAddr()
	return ipPacket{src: server.Addr(), dst: f.src.Addr(), proto: f.proto, sport: server.Port(), dport: f.src.Port(),
		flags: tcpACK, payload: []byte("weft reply")}
}

// tuple is f's original direction as conntrack keys it.
func (f flow) tuple() conntrack.Tuple {
	return conntrack.Tuple{Src: f.src, Dst: f.dst, Proto: f.proto}
}

// track makes conntrack in e's namespace hold an entry for each flow, made
// with real traffic as netfilter sees a pod's: the client, bound to src,
// reaches dst, the server answers, and both stay open until the test ends.
// TCP entries are then established, and liberal in both directions when
// liberal is set (as weftd makes them on the programs' request); the others
// have seen a reply. It fails t unless conntrack shows that, and returns
// the entries.
func (e *progEnv) track(t testing.TB, liberal bool, flows ...flow) []conntrack.Entry {
	t.Helper()
	var entries []conntrack.Entry
	for _, f := range flows {
		var err error
		switch f.proto {
		case protoTCP:
			err = e.connectTCP(t, f)
		case protoUDP:
			err = e.exchangeUDP(t, f)
		case protoICMP:
			err = e.ping(t, f)
		default:
			err = fmt.Errorf("no traffic for IP protocol %d", f.proto)
		}
		if err != nil {
			t.Fatalf("traffic of %s: %v", f.tuple(), err)
		}
		entry := e.waitEntry(t, f.tuple())
		if liberal && f.proto == protoTCP {
			must(t, e.ct.MarkLiberal(f.tuple()))
			if entry, err = e.ct.Get(f.tuple()); err != nil || !entry.Liberal() {
				t.Fatalf("entry of %s not liberal after MarkLiberal: %+v, %v", f.tuple(), entry, err)
			}
		}
		entries = append(entries, entry)
	}
	return entries
}

// waitEntry polls the entry of tuple until it has seen a reply (and, for
// TCP, is established). pkg/conntrack reads TCP and UDP entries: an ICMP
// echo's is checked with the conntrack tool, and returned as the zero Entry.
func (e *progEnv) waitEntry(t testing.TB, tuple conntrack.Tuple) conntrack.Entry {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		var (
			entry conntrack.Entry
			err   error
		)
		if tuple.Proto == protoICMP {
			var out string
			out, err = e.ns.Run("conntrack", "-G", "-p", "icmp", "-s", tuple.Src.Addr().String(), "-d", tuple.Dst.Addr().String(),
				"--icmp-type", "8", "--icmp-code", "0", "--icmp-id", "1")
			if err == nil && !strings.Contains(out, "UNREPLIED") {
				return entry
			}
		} else if entry, err = e.ct.Get(tuple); err == nil && entry.Status&ipsSeenReply != 0 &&
			(tuple.Proto != protoTCP || entry.TCPState == conntrack.TCPEstablished) {
			return entry
		}
		if time.Now().After(deadline) {
			t.Fatalf("conntrack entry of %s not ready after %v: %+v, %v", tuple, ioTimeout, entry, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serverAddr is where f's server listens.
func (f flow) serverAddr() netip.AddrPort {
	if f.server.IsValid() {
		return f.server
	}
	return f.dst
}

// connectTCP opens f's connection; both ends close when t ends.
func (e *progEnv) connectTCP(t testing.TB, f flow) error {
	var (
		ln     net.Listener
		client net.Conn
	)
	err := e.ns.Do(func() (err error) {
		if ln, err = net.Listen("tcp", f.serverAddr().String()); err != nil {
			return err
		}
		d := net.Dialer{Timeout: ioTimeout, LocalAddr: net.TCPAddrFromAddrPort(f.src)}
		client, err = d.Dial("tcp", f.dst.String())
		return err
	})
	if ln != nil {
		defer ln.Close()
	}
	if err != nil {
		return err
	}
	t.Cleanup(func() { client.Close() })
	if err := ln.(*net.TCPListener).SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		return err
	}
	server, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	t.Cleanup(func() { server.Close() })
	return nil
}

// exchangeUDP sends a datagram of f and its answer; both sockets close when
// t ends.
func (e *progEnv) exchangeUDP(t testing.TB, f flow) error {
	var server, client *net.UDPConn
	err := e.ns.Do(func() (err error) {
		if server, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(f.serverAddr())); err != nil {
			return err
		}
		client, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(f.src), net.UDPAddrFromAddrPort(f.dst))
		return err
	})
	if server != nil {
		t.Cleanup(func() { server.Close() })
	}
	if err != nil {
		return err
	}
	t.Cleanup(func() { client.Close() })
	deadline := time.Now().Add(ioTimeout)
	buf := make([]byte, 64)
	if err := errors.Join(server.SetDeadline(deadline), client.SetDeadline(deadline)); err != nil {
		return err
	}
	if _, err := client.Write([]byte("request")); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	_, from, err := server.ReadFromUDPAddrPort(buf)
	if err != nil {
		return fmt.Errorf("server receive: %w", err)
	}
	if _, err := server.WriteToUDPAddrPort([]byte("answer"), from); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	if _, err := client.Read(buf); err != nil {
		return fmt.Errorf("client receive: %w", err)
	}
	return nil
}

// ping sends f's echo request from src to dst and waits for the kernel's
// echo reply.
func (e *progEnv) ping(t testing.TB, f flow) error {
	var c net.PacketConn
	err := e.ns.Do(func() (err error) {
		c, err = net.ListenPacket("ip4:icmp", f.src.Addr().String())
		return err
	})
	if err != nil {
		return err
	}
	t.Cleanup(func() { c.Close() })
	echo := ipPacket{src: f.src.Addr(), dst: f.dst.Addr(), proto: protoICMP}.bytes()[20:]
	if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		return err
	}
	if _, err := c.WriteTo(echo, &net.IPAddr{IP: f.dst.Addr().AsSlice()}); err != nil {
		return fmt.Errorf("send echo request: %w", err)
	}
	buf := make([]byte, 1500)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("wait for echo reply: %w", err)
		}
		if n >= 8 && buf[0] == 0 { // echo reply
			return nil
		}
	}
}

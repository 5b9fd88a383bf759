package conntrack_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/conntrack"
	"github.com/weftnet/weft/test/testns"
)

const ioTimeout = 10 * time.Second

// pair is a client and a server namespace on a veth. The server tracks
// connections (an nftables ct rule turns conntrack on there); the client does
// not.
type pair struct {
	client, server *testns.NS
	// clientIP and serverIP are the ends' addresses, IPv4 and IPv6.
	clientIP, serverIP [2]netip.Addr
}

func newPair(t *testing.T) *pair {
	t.Helper()
	p := testns.Prefix()
	pr := &pair{
		client:   testns.New(t, p, "client"),
		server:   testns.New(t, p, "server"),
		clientIP: [2]netip.Addr{netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("fd00:99::1")},
		serverIP: [2]netip.Addr{netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("fd00:99::2")},
	}
	pr.client.MustRun(t, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", pr.server.Name)
	for _, end := range []struct {
		ns  *testns.NS
		ips [2]netip.Addr
	}{{pr.client, pr.clientIP}, {pr.server, pr.serverIP}} {
		end.ns.MustRun(t, "ip", "addr", "add", end.ips[0].String()+"/24", "dev", "eth0")
		end.ns.MustRun(t, "ip", "addr", "add", end.ips[1].String()+"/64", "dev", "eth0", "nodad")
		end.ns.MustRun(t, "ip", "link", "set", "eth0", "up")
	}
	// Conntrack tracks a namespace's packets only once a rule there uses it.
	pr.server.MustRun(t, "nft", "add table inet wt { chain in { type filter hook input priority 0; ct state invalid counter; }; }")
	return pr
}

// open opens a conntrack.Conn in ns, closed when t ends.
func open(t *testing.T, ns netns.NsHandle) *conntrack.Conn {
	t.Helper()
	c, err := conntrack.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// flow is an open TCP connection from the client to the server.
type flow struct {
	client, server net.Conn
	// tuple is the original direction, as the client sent the SYN.
	tuple conntrack.Tuple
}

// connect opens a TCP connection from the client to the server's address
// of family fam (0 IPv4, 1 IPv6), closed when t ends.
func (pr *pair) connect(t *testing.T, fam int) *flow {
	t.Helper()
	var ln net.Listener
	err := pr.server.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(pr.serverIP[fam], 0).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f := &flow{}
	err = pr.client.Do(func() (err error) {
		d := net.Dialer{Timeout: ioTimeout}
		f.client, err = d.Dial("tcp", ln.Addr().String())
		return err
	})
	if err != nil {
		t.Fatalf("connect to %s: %v", ln.Addr(), err)
	}
	t.Cleanup(func() { f.client.Close() })
	if err := ln.(*net.TCPListener).SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	if f.server, err = ln.Accept(); err != nil {
		t.Fatalf("accept on %s: %v", ln.Addr(), err)
	}
	t.Cleanup(func() { f.server.Close() })
	f.tuple = conntrack.Tuple{
		Src:   f.client.LocalAddr().(*net.TCPAddr).AddrPort(),
		Dst:   f.client.RemoteAddr().(*net.TCPAddr).AddrPort(),
		Proto: unix.IPPROTO_TCP,
	}
	return f
}

// echo sends a line from the client, which the server sends back.
func (f *flow) echo(t *testing.T, msg string) {
	t.Helper()
	for _, c := range []net.Conn{f.client, f.server} {
		if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fmt.Fprintln(f.client, msg); err != nil {
		t.Fatalf("client write: %v", err)
	}
	line, err := bufio.NewReader(f.server).ReadString('\n')
	if err != nil {
		t.Fatalf("server read: %v", err)
	}
	if _, err := f.server.Write([]byte(line)); err != nil {
		t.Fatalf("server write: %v", err)
	}
	back, err := bufio.NewReader(f.client).ReadString('\n')
	if err != nil || back != msg+"\n" {
		t.Fatalf("client read %q, %v; want %q", back, err, msg+"\n")
	}
}

// reverse is the tuple of t's other direction (the flows are not NATed).
func reverse(t conntrack.Tuple) conntrack.Tuple {
	return conntrack.Tuple{Src: t.Dst, Dst: t.Src, Proto: t.Proto}
}

// unmapped is t as the kernel reports it (net.TCPAddr holds IPv4 as mapped IPv6).
func unmapped(t conntrack.Tuple) conntrack.Tuple {
	return conntrack.Tuple{
		Src:   netip.AddrPortFrom(t.Src.Addr().Unmap(), t.Src.Port()),
		Dst:   netip.AddrPortFrom(t.Dst.Addr().Unmap(), t.Dst.Port()),
		Proto: t.Proto,
	}
}

// established polls the entry of tuple until conntrack has it established.
func established(t *testing.T, c *conntrack.Conn, tuple conntrack.Tuple) conntrack.Entry {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		e, err := c.Get(tuple)
		if err == nil && e.TCPState == conntrack.TCPEstablished {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("entry of %s not established after %v: %+v, %v", tuple, ioTimeout, e, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMarkLiberal marks real connections' entries liberal through the tuple
// of either direction, over IPv4 and IPv6, and checks that only the liberal
// flags changed and that the connections still carry data.
func TestMarkLiberal(t *testing.T) {
	pr := newPair(t)
	c := open(t, pr.server.Handle())
	for fam, name := range []string{"ipv4", "ipv6"} {
		for _, reply := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reply=%v", name, reply), func(t *testing.T) {
				f := pr.connect(t, fam)
				f.echo(t, "before") // the entry is assured before we look
				orig := unmapped(f.tuple)
				before := established(t, c, f.tuple)
				if before.Orig != orig || before.Reply != reverse(orig) {
					t.Fatalf("entry tuples %s / %s, want %s / %s", before.Orig, before.Reply, orig, reverse(orig))
				}
				if before.TCPFlags[0]&conntrack.FlagBeLiberal != 0 || before.TCPFlags[1]&conntrack.FlagBeLiberal != 0 {
					t.Fatalf("entry liberal before MarkLiberal: flags %#x/%#x", before.TCPFlags[0], before.TCPFlags[1])
				}

				mark := f.tuple
				if reply {
					mark = reverse(f.tuple)
				}
				if err := c.MarkLiberal(mark); err != nil {
					t.Fatal(err)
				}

				after, err := c.Get(reverse(f.tuple)) // read through the other direction
				if err != nil {
					t.Fatal(err)
				}
				if !after.Liberal() {
					t.Fatalf("entry not liberal after MarkLiberal(%s): flags %#x/%#x", mark, after.TCPFlags[0], after.TCPFlags[1])
				}
				want := before
				want.TCPFlags[0] |= conntrack.FlagBeLiberal
				want.TCPFlags[1] |= conntrack.FlagBeLiberal
				if after != want {
					t.Fatalf("entry after MarkLiberal:\n %+v\nwant (only the liberal flags changed):\n %+v", after, want)
				}
				f.echo(t, "after")
				if e := established(t, c, f.tuple); !e.Liberal() {
					t.Fatalf("entry lost the liberal flags once traffic flowed: flags %#x/%#x", e.TCPFlags[0], e.TCPFlags[1])
				}
			})
		}
	}
}

// TestNotFound: a tuple without an entry is ErrNotFound, in a namespace that
// tracks connections and in one that does not; nothing is created.
func TestNotFound(t *testing.T) {
	pr := newPair(t)
	tuple := conntrack.Tuple{
		Src:   netip.AddrPortFrom(pr.clientIP[0], 1),
		Dst:   netip.AddrPortFrom(pr.serverIP[0], 2),
		Proto: unix.IPPROTO_TCP,
	}
	for _, ns := range []*testns.NS{pr.server, pr.client} {
		c := open(t, ns.Handle())
		if err := c.MarkLiberal(tuple); !errors.Is(err, conntrack.ErrNotFound) {
			t.Errorf("MarkLiberal(%s) in %s: %v, want ErrNotFound", tuple, ns.Name, err)
		}
		if e, err := c.Get(tuple); !errors.Is(err, conntrack.ErrNotFound) {
			t.Errorf("Get(%s) in %s after MarkLiberal: %+v, %v; want ErrNotFound", tuple, ns.Name, e, err)
		}
	}
}

// TestBadInput: errors for tuples MarkLiberal cannot act on, before the
// kernel is asked (not ErrNotFound), and for a closed namespace handle.
func TestBadInput(t *testing.T) {
	c := open(t, testns.New(t, testns.Prefix(), "ct").Handle())
	v4 := netip.MustParseAddrPort("10.99.0.1:1")
	for _, tuple := range []conntrack.Tuple{
		{Src: v4, Dst: netip.MustParseAddrPort("10.99.0.2:2"), Proto: unix.IPPROTO_UDP},
		{Src: v4, Dst: netip.MustParseAddrPort("[fd00:99::2]:2"), Proto: unix.IPPROTO_TCP},
		{Src: v4, Proto: unix.IPPROTO_TCP},
	} {
		err := c.MarkLiberal(tuple)
		if err == nil || errors.Is(err, conntrack.ErrNotFound) {
			t.Errorf("MarkLiberal(%+v): %v, want an input error", tuple, err)
		}
	}
	if c, err := conntrack.Open(netns.None()); err == nil {
		c.Close()
		t.Error("Open(netns.None()) succeeded, want an error")
	}
}

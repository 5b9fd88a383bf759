package etcd

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/test/testns"
)

// silentDetection is how long a connection to etcd may stay silent before
// the client gives up on it, and silentRecovery how long after connectivity
// returns a change made meanwhile may take to reach Watch (detection, if it
// has not happened yet, then a reconnect).
const (
	silentDetection = keepAliveTime + keepAliveTimeout
	silentRecovery  = silentDetection + reconnectMaxDelay + connectTimeout
)

// TestWatchRecoversFromSilentConnection cuts the watcher's connection to
// etcd without a reset (its packets vanish, as when etcd's host dies or a
// NAT drops the flow) and checks that a lease added meanwhile reaches Watch
// once etcd is reachable again, although the old connection stays dead.
func TestWatchRecoversFromSilentConnection(t *testing.T) {
	t.Parallel()
	ns := testns.New(t, testns.Prefix(), "etcd")
	e := newEnvIn(t, ns, netConf)
	// The watcher connects from 127.0.0.2, the test's client from
	// 127.0.0.1, so the cut below spares the test's writes.
	watcherIP := netip.MustParseAddr("127.0.0.2")
	conns := &trackedConns{dial: e.srv.Dialer(watcherIP)}
	m := e.manager(func(c *Config) {
		c.dial = func(ctx context.Context, addr string) (net.Conn, error) { return conns.open(ctx, addr) }
	})
	rec := watch(t, m)
	e.put(subnetKey("10.5.1.0/24"), leaseJSON("192.168.64.1"))
	rec.waitSet(t, "10.5.1.0/24=192.168.64.1")
	old := conns.live()
	if len(old) == 0 {
		t.Fatal("the watcher has no open connection to etcd")
	}

	port := netip.MustParseAddrPort(e.srv.Endpoint[len("http://"):]).Port()
	ns.MustRun(t, "nft", "add", "table", "inet", "cut")
	ns.MustRun(t, "nft", "add", "chain", "inet", "cut", "in", "{ type filter hook input priority 0; }")
	// The cut: everything between the watcher and etcd vanishes.
	dropBetween(t, ns, "ip saddr "+watcherIP.String(), "ip daddr "+watcherIP.String(), port)
	cut := time.Now()
	e.put(subnetKey("10.5.2.0/24"), leaseJSON("192.168.64.2"))

	eventually(t, silentDetection+5*time.Second, func() error {
		for _, c := range old {
			if !c.closed.Load() {
				return fmt.Errorf("the client still holds its silent connection from port %d", c.port())
			}
		}
		return nil
	})
	t.Logf("silent connection dropped %v after the cut (bound %v)", time.Since(cut).Round(100*time.Millisecond), silentDetection)

	// Lift the cut for new connections; the old flows stay dead, as behind
	// a NAT that forgot them.
	ns.MustRun(t, "nft", "flush", "chain", "inet", "cut", "in")
	for _, c := range old {
		p := strconv.Itoa(int(c.port()))
		dropBetween(t, ns, "tcp sport "+p, "tcp dport "+p, port)
	}
	lifted := time.Now()
	rec.waitSetWithin(t, silentRecovery+5*time.Second, "10.5.1.0/24=192.168.64.1", "10.5.2.0/24=192.168.64.2")
	t.Logf("lease added during the cut reached Watch %v after the cut was lifted (bound %v)", time.Since(lifted).Round(100*time.Millisecond), silentRecovery)
}

// dropBetween drops, on input in ns, packets to etcd's port matching
// toEtcd and packets from it matching fromEtcd.
func dropBetween(t *testing.T, ns *testns.NS, toEtcd, fromEtcd string, etcdPort uint16) {
	t.Helper()
	p := strconv.Itoa(int(etcdPort))
	ns.MustRun(t, "nft", "add", "rule", "inet", "cut", "in", toEtcd+" tcp dport "+p+" drop")
	ns.MustRun(t, "nft", "add", "rule", "inet", "cut", "in", fromEtcd+" tcp sport "+p+" drop")
}

func leaseJSON(publicIP string) string {
	return `{"PublicIP":"` + publicIP + `","BackendType":"host-gw"}`
}

// trackedConns opens connections with dial and remembers them.
type trackedConns struct {
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
	mu    sync.Mutex
	conns []*trackedConn
}

func (cs *trackedConns) open(ctx context.Context, addr string) (net.Conn, error) {
	c, err := cs.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.conns = append(cs.conns, tc)
	return tc, nil
}

// live returns the connections not closed yet.
func (cs *trackedConns) live() []*trackedConn {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var out []*trackedConn
	for _, c := range cs.conns {
		if !c.closed.Load() {
			out = append(out, c)
		}
	}
	return out
}

// trackedConn notes when its user closes it.
type trackedConn struct {
	net.Conn
	closed atomic.Bool
}

func (c *trackedConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

func (c *trackedConn) port() uint16 {
	return c.LocalAddr().(*net.TCPAddr).AddrPort().Port()
}

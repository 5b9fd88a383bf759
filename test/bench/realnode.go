package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/test/cluster"
)

// A real Kubernetes node does more around a serving pod than the plain
// configurations: the kubelet probes the pod's port from the node, and
// kube-proxy DNATs Service addresses to the pod. The real-node variants
// add both, so that the benchmark shows what they cost the stream.

// probeInterval is how often the server's node probes the server pod (the
// kubelet's periodSeconds is 10 by default; every second is the busy end).
const probeInterval = time.Second

// probeTimeout bounds one probe, as the kubelet's default timeoutSeconds.
const probeTimeout = time.Second

// prober is a TCP readiness probe as the kubelet does it: from the node's
// namespace, connect to the pod's address and port, and close.
type prober struct {
	node  *cluster.Node
	to    netip.AddrPort
	stopc chan struct{}
	done  chan struct{}

	mu       sync.Mutex
	ok, fail int
	firstErr error
}

// startProber probes to from node once, which must succeed, and then every
// probeInterval until stop.
func startProber(ctx context.Context, node *cluster.Node, to netip.AddrPort) (*prober, error) {
	p := &prober{node: node, to: to, stopc: make(chan struct{}), done: make(chan struct{})}
	if err := p.probe(ctx); err != nil {
		return nil, fmt.Errorf("first probe: %w", err)
	}
	p.ok++
	go p.loop()
	return p, nil
}

// loop probes every probeInterval and counts the outcomes.
func (p *prober) loop() {
	defer close(p.done)
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for {
		select {
		case <-p.stopc:
			return
		case <-tick.C:
		}
		err := p.probe(context.Background())
		p.mu.Lock()
		if err == nil {
			p.ok++
		} else {
			p.fail++
			if p.firstErr == nil {
				p.firstErr = err
			}
		}
		p.mu.Unlock()
	}
}

// probe connects to the pod and closes the connection. Like the kubelet's
// probe dialer it sets SO_LINGER to 1 s; the close still sends a FIN, not
// a reset.
func (p *prober) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var conn net.Conn
	err := p.node.NS.Do(func() (err error) {
		d := net.Dialer{Control: lingerOneSecond}
		conn, err = d.DialContext(ctx, "tcp", p.to.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("probe %s from %s: %w", p.to, p.node.Name, err)
	}
	if err := conn.Close(); err != nil {
		return fmt.Errorf("probe %s from %s: close: %w", p.to, p.node.Name, err)
	}
	return nil
}

// lingerOneSecond is a net.Dialer Control that sets SO_LINGER to 1 s.
func lingerOneSecond(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 1})
	})
	return errors.Join(err, serr)
}

// stop ends the probing and waits for the last probe.
func (p *prober) stop() {
	select {
	case <-p.stopc:
	default:
		close(p.stopc)
	}
	<-p.done
}

// String summarises the probes so far.
func (p *prober) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := fmt.Sprintf("%d probes from %s to %s", p.ok+p.fail, p.node.Name, p.to)
	if p.fail == 0 {
		return s + ", all connected"
	}
	return fmt.Sprintf("%s, %d failed (first: %v)", s, p.fail, p.firstErr)
}

// clusterIP is the Service address of the ClusterIP variants, from
// kubeadm's default service range 10.96.0.0/12.
var clusterIP = netip.MustParseAddr("10.96.0.20")

// addClusterIP makes clusterIP:port a Service in front of to:port on
// node, as kube-proxy's iptables mode does at its core: a DNAT in the nat
// table for connections from pods (PREROUTING) and from the node itself
// (OUTPUT). The pods reach clusterIP through their default route, the
// bridge's gateway. The rules go away with the node's namespace.
func addClusterIP(ctx context.Context, node *cluster.Node, port int, to netip.Addr) error {
	dest := netip.AddrPortFrom(to, uint16(port)).String()
	for _, chain := range []string{"PREROUTING", "OUTPUT"} {
		if _, err := node.Exec(ctx, "iptables", "-w", "-t", "nat", "-A", chain, "-d", clusterIP.String()+"/32",
			"-p", "tcp", "--dport", strconv.Itoa(port), "-j", "DNAT", "--to-destination", dest); err != nil {
			return fmt.Errorf("ClusterIP %s on %s: %w", clusterIP, node.Name, err)
		}
	}
	return nil
}

// Package etcdtest runs a real single-member etcd for tests and benchmarks:
// loopback-only (of the test's namespace, or of one the test owns) on random
// free ports, with its own data directory, stopped
// by PID and removed when the test ends. Stop and Start simulate an outage
// (same data directory and ports, so revisions and leases survive).
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/weftnet/weft/test/testns"
)

// BinaryEnv names the environment variable that overrides the etcd binary
// (default: /usr/bin/etcd, else etcd from PATH).
const BinaryEnv = "WEFT_ETCD"

// startTimeout bounds how long etcd may take to become healthy.
const startTimeout = 20 * time.Second

// Server is one etcd process owned by a test. Start and Stop are meant for
// the test goroutine, not for concurrent use.
type Server struct {
	// Endpoint is the client URL, e.g. http://127.0.0.1:40123.
	Endpoint string

	tb      testing.TB
	ns      *testns.NS // nil: the test's own namespace
	bin     string
	dir     string
	peerURL string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// Start starts etcd and registers its stop and removal with tb.Cleanup. It
// skips tb when no etcd binary is installed, or fails it under
// CI=true/WEFT_E2E=1 (see testns.Strict).
func Start(tb testing.TB) *Server {
	tb.Helper()
	return StartIn(tb, nil)
}

// StartIn is Start with etcd on the loopback of ns (nil: the test's own
// namespace); the Server's clients and health checks dial into ns.
func StartIn(tb testing.TB, ns *testns.NS) *Server {
	tb.Helper()
	bin, err := binary()
	if err != nil {
		if testns.Strict() {
			tb.Fatal(err)
		}
		tb.Skip(err)
	}
	dir := tb.TempDir() // registered before the stop below, so removed after it
	ports, err := freePorts(2)
	if err != nil {
		tb.Fatalf("etcdtest: %v", err)
	}
	s := &Server{
		Endpoint: fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		tb:       tb,
		ns:       ns,
		bin:      bin,
		dir:      dir,
		peerURL:  fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
	}
	tb.Cleanup(func() {
		s.Stop()
		if tb.Failed() {
			s.dumpLog()
		}
	})
	s.Start()
	return s
}

func binary() (string, error) {
	if b := os.Getenv(BinaryEnv); b != "" {
		return b, nil
	}
	if _, err := os.Stat("/usr/bin/etcd"); err == nil {
		return "/usr/bin/etcd", nil
	}
	b, err := exec.LookPath("etcd")
	if err != nil {
		return "", fmt.Errorf("etcdtest: no etcd binary: install etcd-server or set %s", BinaryEnv)
	}
	return b, nil
}

// freePorts asks the kernel for n distinct free loopback ports. They are
// released before etcd binds them; a collision in between is unlikely.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Endpoints returns the client endpoints, for clientv3.Config.Endpoints.
func (s *Server) Endpoints() []string { return []string{s.Endpoint} }

// Start (re)starts etcd on the same data directory and ports and waits until
// it is healthy. It does nothing if etcd is running.
func (s *Server) Start() {
	s.tb.Helper()
	if s.cmd != nil {
		return
	}
	log, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.tb.Fatalf("etcdtest: %v", err)
	}
	defer log.Close()
	cmd := exec.Command(s.bin,
		"--name", "etcdtest",
		"--data-dir", filepath.Join(s.dir, "data"),
		"--listen-client-urls", s.Endpoint,
		"--advertise-client-urls", s.Endpoint,
		"--listen-peer-urls", s.peerURL,
		"--initial-advertise-peer-urls", s.peerURL,
		"--initial-cluster", "etcdtest="+s.peerURL,
		"--initial-cluster-state", "new",
		"--logger", "zap",
		"--log-outputs", "stderr",
		"--log-level", "warn",
	)
	cmd.Stdout, cmd.Stderr = log, log
	// Own process group, so a signal to the test's group does not reach it
	// first and the stop below is the only way it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.inNS(cmd.Start); err != nil {
		s.tb.Fatalf("etcdtest: start %s: %v", s.bin, err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func(exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(s.exited)
	if err := s.waitHealthy(); err != nil {
		s.Stop()
		s.dumpLog()
		s.tb.Fatalf("etcdtest: %v", err)
	}
}

func (s *Server) waitHealthy() error {
	deadline := time.Now().Add(startTimeout)
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: s.Dialer(netip.Addr{})}}
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("etcd exited during start-up (log %s)", s.logPath())
		default:
		}
		resp, err := client.Get(s.Endpoint + "/health")
		if err == nil {
			healthy := resp.StatusCode == http.StatusOK
			resp.Body.Close()
			if healthy {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd not healthy at %s after %v (last error: %v)", s.Endpoint, startTimeout, err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval, not synchronisation
	}
}

// Stop ends etcd (SIGTERM, SIGKILL after 10 s) and waits for it to exit. It
// does nothing if etcd is not running.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Client returns a client for s that is closed when the test ends.
func (s *Server) Client() *clientv3.Client {
	s.tb.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   s.Endpoints(),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return s.Dialer(netip.Addr{})(ctx, "tcp", addr)
		})},
	})
	if err != nil {
		s.tb.Fatalf("etcdtest: client: %v", err)
	}
	s.tb.Cleanup(func() { c.Close() })
	return c
}

// Compact compacts etcd's history up to the current revision, so watches
// from older revisions fail with ErrCompacted. Compacting twice at one
// revision is not an error.
func (s *Server) Compact(ctx context.Context) {
	s.tb.Helper()
	c := s.Client()
	resp, err := c.Get(ctx, "\x00")
	if err != nil {
		s.tb.Fatalf("etcdtest: read revision: %v", err)
	}
	_, err = c.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical())
	if err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
		s.tb.Fatalf("etcdtest: compact: %v", err)
	}
}

// Dialer returns a net.Dialer.DialContext for clients of s: it connects from
// the namespace etcd runs in, from the local address from (zero: any, else
// a loopback address such as 127.0.0.2 that tells this client's traffic
// apart).
func (s *Server) Dialer(from netip.Addr) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{}
	if from.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: from.AsSlice()}
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := s.inNS(func() (err error) {
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// inNS runs f inside etcd's namespace; sockets and processes f opens stay
// there.
func (s *Server) inNS(f func() error) error {
	if s.ns == nil {
		return f()
	}
	return s.ns.Do(f)
}

func (s *Server) logPath() string { return filepath.Join(s.dir, "etcd.log") }

// dumpLog shows the end of etcd's log to explain a failure.
func (s *Server) dumpLog() {
	b, err := os.ReadFile(s.logPath())
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	s.tb.Logf("etcdtest: last lines of %s:\n%s", s.logPath(), strings.Join(lines, "\n"))
}

package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// PingResult summarises one ping run.
type PingResult struct {
	Sent, Received int
	// RTT is the average round trip time; 0 if nothing came back.
	RTT time.Duration
	// Output is ping's output, for failure messages.
	Output string
}

// Lost is how many echo requests got no reply.
func (r PingResult) Lost() int { return r.Sent - r.Received }

// Loss is the lost fraction (0..1).
func (r PingResult) Loss() float64 {
	if r.Sent == 0 {
		return 1
	}
	return float64(r.Lost()) / float64(r.Sent)
}

var (
	pingCounts = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)
	pingRTT    = regexp.MustCompile(`= [\d.]+/([\d.]+)/`)
)

// Pinger is a ping running in the background (see StartPing).
type Pinger struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan struct{}
	err  error
}

// StartPing starts `ping -c count -i interval to` inside the namespace; it
// ends after count probes or when ctx ends.
func (n *Netns) StartPing(ctx context.Context, to netip.Addr, count int, interval time.Duration) (*Pinger, error) {
	p := &Pinger{done: make(chan struct{})}
	p.cmd = n.Command(ctx, "ping", "-n", "-c", strconv.Itoa(count),
		"-i", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64), "-W", "1", to.String())
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start ping %s in %s: %w", to, n.Name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Running reports whether the ping is still going.
func (p *Pinger) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Wait waits for the ping to end and parses its summary. Losses are not an
// error (see PingResult.Lost); an unreadable summary is.
func (p *Pinger) Wait() (PingResult, error) {
	<-p.done
	res := PingResult{Output: p.out.String()}
	m := pingCounts.FindStringSubmatch(res.Output)
	if m == nil {
		return res, fmt.Errorf("ping: no summary (%v): %s", p.err, res.Output)
	}
	res.Sent, _ = strconv.Atoi(m[1])
	res.Received, _ = strconv.Atoi(m[2])
	if m := pingRTT.FindStringSubmatch(res.Output); m != nil {
		ms, _ := strconv.ParseFloat(m[1], 64)
		res.RTT = time.Duration(ms * float64(time.Millisecond))
	}
	return res, nil
}

// Ping pings to from inside the namespace and waits for the result.
func (n *Netns) Ping(ctx context.Context, to netip.Addr, count int, interval time.Duration) (PingResult, error) {
	p, err := n.StartPing(ctx, to, count, interval)
	if err != nil {
		return PingResult{}, err
	}
	return p.Wait()
}

// EchoServer is a TCP server in a namespace that sends back what it reads.
type EchoServer struct {
	ln net.Listener
	wg sync.WaitGroup
}

// ServeEcho starts an echo server on port (all addresses) in the namespace.
func (n *Netns) ServeEcho(port uint16) (*EchoServer, error) {
	s := &EchoServer{}
	err := n.Do(func() error {
		ln, err := net.Listen("tcp4", fmt.Sprintf(":%d", port))
		s.ln = ln
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("echo server in %s: %w", n.Name, err)
	}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *EchoServer) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(2 * time.Minute))
			if _, err := io.Copy(conn, conn); err == nil {
				conn.(*net.TCPConn).CloseWrite()
			}
		}()
	}
}

// Close stops accepting and waits for open connections to finish.
func (s *EchoServer) Close() error {
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

// EchoRoundTrip connects from inside the namespace to an echo server at
// to, sends size pseudo-random bytes while reading the echo, and checks
// that exactly the same bytes came back (SHA-256): a TCP transfer in both
// directions at once.
func (n *Netns) EchoRoundTrip(ctx context.Context, to netip.AddrPort, size int) error {
	var conn net.Conn
	err := n.Do(func() error {
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err := d.DialContext(ctx, "tcp4", to.String())
		conn = c
		return err
	})
	if err != nil {
		return fmt.Errorf("connect %s from %s: %w", to, n.Name, err)
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	conn.SetDeadline(deadline)

	sent := sha256.New()
	var seed [32]byte
	src := io.LimitReader(rand.NewChaCha8(seed), int64(size))
	werr := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.MultiWriter(conn, sent), src)
		if err == nil {
			err = conn.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got := sha256.New()
	nread, rerr := io.Copy(got, conn)
	if err := errors.Join(<-werr, rerr); err != nil {
		return fmt.Errorf("echo %s from %s after %d of %d bytes back: %w", to, n.Name, nread, size, err)
	}
	if nread != int64(size) || !bytes.Equal(sent.Sum(nil), got.Sum(nil)) {
		return fmt.Errorf("echo %s from %s: got %d bytes back, want %d identical ones", to, n.Name, nread, size)
	}
	return nil
}

// WaitReach pings to from inside the namespace until a reply comes back
// (the datapaths on both ends know each other) or timeout passes. It
// asserts nothing about loss.
func (n *Netns) WaitReach(ctx context.Context, to netip.Addr, timeout time.Duration) error {
	return Eventually(ctx, timeout, fmt.Sprintf("%s reaches %s", n.Name, to), func() error {
		r, err := n.Ping(ctx, to, 1, 200*time.Millisecond)
		if err != nil {
			return err
		}
		if r.Received == 0 {
			return fmt.Errorf("no reply:\n%s", r.Output)
		}
		return nil
	})
}

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

// StartPing starts `ping -c count -i interval [flags] to` inside the
// namespace (to of either family: iputils' ping picks ICMPv6 for an IPv6
// address) (flags are more ping options, e.g. "-s", "1400" for 1400
// bytes of payload); it ends after count probes or when ctx ends.
func (n *Netns) StartPing(ctx context.Context, to netip.Addr, count int, interval time.Duration, flags ...string) (*Pinger, error) {
	p := &Pinger{done: make(chan struct{})}
	args := append([]string{"-n", "-c", strconv.Itoa(count),
		"-i", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64), "-W", "1"}, flags...)
	p.cmd = n.Command(ctx, "ping", append(args, to.String())...)
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

// Ping pings to from inside the namespace (with more ping flags, see
// StartPing) and waits for the result.
func (n *Netns) Ping(ctx context.Context, to netip.Addr, count int, interval time.Duration, flags ...string) (PingResult, error) {
	p, err := n.StartPing(ctx, to, count, interval, flags...)
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

// ServeEcho starts an echo server on port (all addresses of both families)
// in the namespace.
func (n *Netns) ServeEcho(port uint16) (*EchoServer, error) {
	s := &EchoServer{}
	err := n.Do(func() error {
		ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
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
// to (either family), sends size pseudo-random bytes while reading the echo, and checks
// that exactly the same bytes came back (SHA-256): a TCP transfer in both
// directions at once.
func (n *Netns) EchoRoundTrip(ctx context.Context, to netip.AddrPort, size int) error {
	_, err := n.echo(ctx, to, io.LimitReader(pseudoRandom(), int64(size)))
	return err
}

// EchoStream is EchoRoundTrip for a duration instead of a size: it sends
// pseudo-random bytes over one connection for d, at most rate bytes per
// second (0: as fast as TCP goes), checks the echo and returns how many
// bytes went each way.
func (n *Netns) EchoStream(ctx context.Context, to netip.AddrPort, d time.Duration, rate int) (int64, error) {
	return n.echo(ctx, to, &pacedReader{src: pseudoRandom(), rate: rate, start: time.Now(), end: time.Now().Add(d)})
}

// pseudoRandom is the bytes every echo sends: the same for every run.
func pseudoRandom() io.Reader {
	var seed [32]byte
	return rand.NewChaCha8(seed)
}

// pacedReader reads src until end, at most rate bytes per second since
// start (0: unlimited).
type pacedReader struct {
	src        io.Reader
	rate       int
	start, end time.Time
	read       int64
}

// pacedChunk bounds one read of a paced stream, so the pace stays even.
const pacedChunk = 16 << 10

func (r *pacedReader) Read(p []byte) (int, error) {
	now := time.Now()
	if !now.Before(r.end) {
		return 0, io.EOF
	}
	if r.rate > 0 {
		p = p[:min(len(p), pacedChunk)]
		due := r.start.Add(time.Duration(float64(r.read) / float64(r.rate) * float64(time.Second)))
		if wait := due.Sub(now); wait > 0 {
			time.Sleep(min(wait, r.end.Sub(now))) // pacing the sender, not waiting for an event
		}
	}
	k, err := r.src.Read(p)
	r.read += int64(k)
	return k, err
}

// echo connects to the echo server at to, sends what src yields while
// reading the echo, and checks that the same bytes came back; it returns
// how many bytes were sent.
func (n *Netns) echo(ctx context.Context, to netip.AddrPort, src io.Reader) (int64, error) {
	var conn net.Conn
	err := n.Do(func() error {
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err := d.DialContext(ctx, "tcp", to.String())
		conn = c
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("connect %s from %s: %w", to, n.Name, err)
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	conn.SetDeadline(deadline)

	sent := sha256.New()
	type result struct {
		n   int64
		err error
	}
	wres := make(chan result, 1)
	go func() {
		k, err := io.Copy(io.MultiWriter(conn, sent), src)
		if err == nil {
			err = conn.(*net.TCPConn).CloseWrite()
		}
		wres <- result{k, err}
	}()
	got := sha256.New()
	nread, rerr := io.Copy(got, conn)
	w := <-wres
	if err := errors.Join(w.err, rerr); err != nil {
		return w.n, fmt.Errorf("echo %s from %s after %d of %d bytes back: %w", to, n.Name, nread, w.n, err)
	}
	if nread != w.n || !bytes.Equal(sent.Sum(nil), got.Sum(nil)) {
		return w.n, fmt.Errorf("echo %s from %s: got %d bytes back, want %d identical ones", to, n.Name, nread, w.n)
	}
	return w.n, nil
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

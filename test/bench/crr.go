package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/weftnet/weft/test/procstat"
)

// Connection rate, like netperf's TCP_CRR (Debian has no netperf): every
// transaction is a new TCP connection that carries one small request and
// one small reply. The server closes first after its reply, as HTTP/1.0
// servers do, so TIME_WAIT stays on the server and the client never runs
// out of ports; the client counts a transaction once it has read the
// reply and the server's FIN, then closes too. Both run as subcommands of
// this program inside the pods: `weft-bench crr-server` and
// `weft-bench crr-client`.

// crrSize is the request and the reply size in bytes.
const crrSize = 64

// crrTimeout bounds one transaction, on both ends.
const crrTimeout = 5 * time.Second

// crrResult is the client's report, one JSON object on stdout.
type crrResult struct {
	// Transactions completed in Seconds.
	Transactions int64   `json:"transactions"`
	Seconds      float64 `json:"seconds"`
	// CPUSeconds is the client's user + system time during the loop.
	CPUSeconds float64 `json:"cpu_seconds"`
}

// crrServerMain is `weft-bench crr-server`: it answers transactions one
// at a time until it is killed.
func crrServerMain(args []string) error {
	fs := flag.NewFlagSet("crr-server", flag.ContinueOnError)
	listen := fs.String("listen", fmt.Sprintf(":%d", crrPort), "TCP address to listen on")
	size := fs.Int("size", crrSize, "request and reply size in bytes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *size < 1 {
		return errors.New("-size must be at least 1")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("crr-server: %w", err)
	}
	return crrServe(ln, *size)
}

// crrServe answers each connection ln accepts, one at a time: read size
// bytes, send them back, close. A failed transaction is reported on stderr
// and does not stop the server.
func crrServe(ln net.Listener, size int) error {
	buf := make([]byte, size)
	for {
		conn, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("crr-server: accept: %w", err)
		}
		if err := crrAnswer(conn, buf); err != nil {
			fmt.Fprintf(os.Stderr, "crr-server: %s: %v\n", conn.RemoteAddr(), err)
		}
	}
}

// crrAnswer serves one transaction on conn and closes it.
func crrAnswer(conn net.Conn, buf []byte) (err error) {
	defer func() { err = errors.Join(err, conn.Close()) }()
	if err := conn.SetDeadline(time.Now().Add(crrTimeout)); err != nil {
		return err
	}
	if _, err := io.ReadFull(conn, buf); err != nil {
		return fmt.Errorf("read request: %w", err)
	}
	if _, err := conn.Write(buf); err != nil {
		return fmt.Errorf("write reply: %w", err)
	}
	return nil
}

// crrClientMain is `weft-bench crr-client`: transactions back to back for
// the duration, then the result as JSON on stdout.
func crrClientMain(args []string) error {
	fs := flag.NewFlagSet("crr-client", flag.ContinueOnError)
	to := fs.String("to", "", "server address, ip:port")
	d := fs.Duration("d", 5*time.Second, "how long to run")
	size := fs.Int("size", crrSize, "request and reply size in bytes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *to == "" || *d <= 0 || *size < 1 {
		return errors.New("crr-client needs -to ip:port, a positive -d and -size at least 1")
	}
	res, err := crrRun(context.Background(), *to, *d, *size)
	if err != nil {
		return fmt.Errorf("crr-client: %w", err)
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// crrRun runs transactions against to, one after the other, for d. Any
// failed transaction ends the run with an error: a datapath that loses
// connections gets no rate.
func crrRun(ctx context.Context, to string, d time.Duration, size int) (crrResult, error) {
	req, reply := make([]byte, size), make([]byte, size)
	var n int64
	cpu := procstat.SelfCPU()
	start := time.Now()
	for end := start.Add(d); time.Now().Before(end); n++ {
		if err := crrTransact(ctx, to, req, reply); err != nil {
			return crrResult{}, fmt.Errorf("transaction %d to %s: %w", n+1, to, err)
		}
	}
	return crrResult{
		Transactions: n,
		Seconds:      time.Since(start).Seconds(),
		CPUSeconds:   (procstat.SelfCPU() - cpu).Seconds(),
	}, nil
}

// crrTransact is one transaction: connect, send req, read the reply into
// reply, wait for the server's FIN, close.
func crrTransact(ctx context.Context, to string, req, reply []byte) (err error) {
	ctx, cancel := context.WithTimeout(ctx, crrTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", to)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, conn.Close()) }()
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	if _, err := conn.Write(req); err != nil {
		return fmt.Errorf("write request: %w", err)
	}
	if _, err := io.ReadFull(conn, reply); err != nil {
		return fmt.Errorf("read reply: %w", err)
	}
	var extra [1]byte
	if n, err := conn.Read(extra[:]); !errors.Is(err, io.EOF) {
		return fmt.Errorf("after the reply: read %d more bytes (%v), want the server's close", n, err)
	}
	return nil
}

// parseCRR reads crr-client's report.
func parseCRR(out string) (crrResult, error) {
	var r crrResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return r, fmt.Errorf("crr-client output is not its JSON report (%w): %.300s", err, out)
	}
	if r.Transactions <= 0 || r.Seconds <= 0 {
		return r, fmt.Errorf("crr-client: no transaction completed: %.300s", out)
	}
	return r, nil
}

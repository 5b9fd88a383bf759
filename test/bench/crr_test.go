package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// listenLoopback listens on a free loopback port and closes it when t ends.
func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func TestCRRLoopback(t *testing.T) {
	ln := listenLoopback(t)
	served := make(chan error, 1)
	go func() { served <- crrServe(ln, crrSize) }()
	r, err := crrRun(context.Background(), ln.Addr().String(), 300*time.Millisecond, crrSize)
	if err != nil {
		t.Fatal(err)
	}
	if r.Transactions < 10 || r.Seconds < 0.3 || r.Seconds > 10 {
		t.Errorf("crrRun = %+v, want at least 10 transactions in about 0.3 s", r)
	}
	ln.Close()
	select {
	case err := <-served:
		if err == nil || !strings.Contains(err.Error(), "accept") {
			t.Errorf("crrServe after the listener closed: %v, want an accept error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("crrServe did not return after its listener closed")
	}
}

// A server that sends more than the reply is not a CRR server: the
// client's transaction fails instead of counting.
func TestCRRTransactWantsClose(t *testing.T) {
	ln := listenLoopback(t)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		buf := make([]byte, crrSize+1)
		conn.Read(buf[:crrSize]) // the test fails below if the exchange does not happen
		conn.Write(buf)
	}()
	req, reply := make([]byte, crrSize), make([]byte, crrSize)
	err := crrTransact(context.Background(), ln.Addr().String(), req, reply)
	if err == nil || !strings.Contains(err.Error(), "want the server's close") {
		t.Errorf("crrTransact against a server that keeps sending: %v", err)
	}
}

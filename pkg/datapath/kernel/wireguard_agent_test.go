package kernel_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/datapath/kernel"
	"github.com/weftnet/weft/pkg/wireguard"
)

// A userspace wireguard device keeps its UAPI socket at a fixed path
// (/var/run/wireguard/flannel-wg.sock), and runs goroutines that must stay
// in its node's namespace. So each wireguard test node runs its datapath in
// an agent: this test binary started in the node's network namespace with
// a private tmpfs on /run, driven by JSON requests on stdin.

// agentEnv makes the test binary run as an agent.
const agentEnv = "WEFT_WG_AGENT"

// TestMain runs the agent when agentEnv asks for it, else the tests.
func TestMain(m *testing.M) {
	if os.Getenv(agentEnv) == "1" {
		if err := runAgent(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "agent:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// agentRequest is one call to an agent's datapath.
type agentRequest struct {
	// Op is setup (Setup and SetSubnet of each of Subnets), sync, apply,
	// peers (Device's peers as wgctrl reads them), stats, cleanup or close
	// (Close, then exit).
	Op      string
	Node    datapath.Node
	Subnets []netip.Prefix
	Peers   []datapath.Peer
	Changes datapath.Changes
	Device  string
}

// agentPeer is a device peer as wgctrl reads it.
type agentPeer struct {
	PublicKey  string
	Endpoint   string
	AllowedIPs []string
}

// agentResponse is an agent's answer; Err is "" on success.
type agentResponse struct {
	Err   string
	Info  datapath.Info
	Peers []agentPeer
	Stats []datapath.Counter
}

// runAgent serves requests until close or the end of in.
func runAgent(in io.Reader, out io.Writer) error {
	dp := kernel.New()
	dec, enc := json.NewDecoder(in), json.NewEncoder(out)
	ctx := context.Background()
	for {
		var req agentRequest
		if err := dec.Decode(&req); err != nil {
			return errors.Join(err, dp.Close())
		}
		var (
			resp agentResponse
			err  error
		)
		switch req.Op {
		case "setup":
			resp.Info, err = dp.Setup(ctx, req.Node)
			for _, s := range req.Subnets {
				if err == nil {
					err = dp.SetSubnet(ctx, s)
				}
			}
		case "sync":
			err = dp.Sync(ctx, req.Peers)
		case "apply":
			err = dp.Apply(ctx, req.Changes)
		case "peers":
			var peers []wgtypes.Peer
			if peers, err = wireguard.Peers(req.Device); err == nil {
				resp.Peers = agentPeers(peers)
			}
		case "stats":
			resp.Stats, err = dp.Stats()
		case "close":
			err = dp.Close()
		case "cleanup":
			err = dp.Cleanup(ctx)
		default:
			err = fmt.Errorf("unknown op %q", req.Op)
		}
		if err != nil {
			resp.Err = err.Error()
		}
		if err := enc.Encode(resp); err != nil || req.Op == "close" {
			return err
		}
	}
}

// agentPeers converts what wgctrl read.
func agentPeers(peers []wgtypes.Peer) []agentPeer {
	out := make([]agentPeer, len(peers))
	for i, p := range peers {
		out[i] = agentPeer{PublicKey: p.PublicKey.String(), Endpoint: p.Endpoint.String()}
		for _, a := range p.AllowedIPs {
			out[i].AllowedIPs = append(out[i].AllowedIPs, a.String())
		}
	}
	return out
}

// agent is a running agent process.
type agent struct {
	cmd *exec.Cmd
	in  *json.Encoder
	out *json.Decoder
}

// startAgent starts an agent in network namespace ns, failing t if it
// cannot, and stops it when owner (t or a test that encloses it) ends.
func startAgent(t, owner *testing.T, ns string) *agent {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private",
		"sh", "-c", `mount -t tmpfs weft-test /run && exec "$0" -test.run='^$'`, self)
	cmd.Env = append(os.Environ(), agentEnv+"=1")
	cmd.Stderr = &testLog{t: owner, prefix: filepath.Base(ns)}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start agent in %s: %v", ns, err)
	}
	a := &agent{cmd: cmd, in: json.NewEncoder(stdin), out: json.NewDecoder(bufio.NewReader(stdout))}
	owner.Cleanup(func() {
		_ = stdin.Close()
		a.stop(owner)
	})
	return a
}

// stop waits for the agent to exit, killing it after a timeout.
func (a *agent) stop(t *testing.T) {
	done := make(chan error, 1)
	go func() { done <- a.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Errorf("agent %d did not exit: killing it", a.cmd.Process.Pid)
		_ = a.cmd.Process.Kill()
		<-done
	}
}

// call sends req and returns the answer, failing t on a transport error or
// after a timeout; the datapath's error is in the answer.
func (a *agent) call(t *testing.T, req agentRequest) agentResponse {
	t.Helper()
	if err := a.in.Encode(req); err != nil {
		t.Fatalf("send %s to agent: %v", req.Op, err)
	}
	type result struct {
		resp agentResponse
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		var r result
		r.err = a.out.Decode(&r.resp)
		ch <- r
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("read agent's answer to %s: %v", req.Op, r.err)
		}
		return r.resp
	case <-time.After(30 * time.Second):
		_ = a.cmd.Process.Kill()
		t.Fatalf("agent did not answer %s within 30s", req.Op)
		return agentResponse{}
	}
}

// must is call that fails t when the datapath returned an error.
func (a *agent) must(t *testing.T, req agentRequest) agentResponse {
	t.Helper()
	resp := a.call(t, req)
	if resp.Err != "" {
		t.Fatalf("%s: %s", req.Op, resp.Err)
	}
	return resp
}

// testLog writes an agent's log lines to the test log.
type testLog struct {
	t      *testing.T
	prefix string
}

func (l *testLog) Write(p []byte) (int, error) {
	l.t.Logf("%s: %s", l.prefix, p)
	return len(p), nil
}

package kubetest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// process is a daemon a test started; its output goes to a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logFile string
	done    chan struct{} // closed when it exited
	err     error         // its exit status, valid after done
}

// startProcess runs bin with args (inside netnsName via ip netns exec if
// set) and stops it by PID when t ends: SIGTERM, then SIGKILL after 10 s.
func startProcess(t testing.TB, dir, netnsName, name, bin string, args ...string) *process {
	t.Helper()
	argv := append([]string{bin}, args...)
	if netnsName != "" {
		// ip netns exec execs the command in place, so the PID stays ours.
		argv = append([]string{"ip", "netns", "exec", netnsName}, argv...)
	}
	p := &process{name: name, logFile: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	log, err := os.Create(p.logFile)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = daemonEnv()
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		log.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		log.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s log (%s), last lines:\n%s", name, p.logFile, p.logTail(30))
		}
	})
	return p
}

// daemonEnv is the test's environment without ETCD_* variables, which etcd
// would read as flags (ETCD_VERSION selects the build, not etcd's version).
func daemonEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") {
			env = append(env, kv)
		}
	}
	return env
}

func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// exited returns an error describing the exit if p is no longer running.
func (p *process) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v); last log lines:\n%s", p.name, p.err, p.logTail(30))
	default:
		return nil
	}
}

func (p *process) logTail(n int) string {
	data, err := os.ReadFile(p.logFile)
	if err != nil {
		return err.Error()
	}
	return tail(string(data), n)
}

// DialFunc dials a network address.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// dialer returns a DialFunc whose sockets are created inside network
// namespace name (the root process stays where it is), or a plain dialer
// for "".
func dialer(name string) DialFunc {
	var d net.Dialer
	if name == "" {
		return d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			// The thread is never unlocked: it dies with this goroutine
			// instead of returning to the pool inside the namespace.
			runtime.LockOSThread()
			h, err := netns.GetFromName(name)
			if err != nil {
				ch <- result{nil, fmt.Errorf("open netns %s: %w", name, err)}
				return
			}
			defer h.Close()
			if err := netns.Set(h); err != nil {
				ch <- result{nil, fmt.Errorf("enter netns %s: %w", name, err)}
				return
			}
			c, err := d.DialContext(ctx, network, addr)
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}

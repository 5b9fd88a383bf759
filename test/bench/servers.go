package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/test/cluster"
	"github.com/weftnet/weft/test/procstat"
)

// Server ports in the server pod.
const (
	iperfPort    = 5201
	crrPort      = 5202
	sockperfPort = 11111
)

// listenTimeout bounds the wait until a server listens.
const listenTimeout = 10 * time.Second

// servers are the iperf3, sockperf and crr servers in the server pod,
// started by this program and stopped by PID.
type servers struct {
	procs []*exec.Cmd
	// crrPID is the crr server's PID, whose CPU time the connection rate
	// counts.
	crrPID int
}

// startServers starts iperf3 (TCP and UDP tests, one at a time, on both
// families), self's crr-server (connection rate) and, for an IPv4 addr,
// sockperf (UDP ping-pong) on the pod's address addr in pod and waits
// until all listen.
func startServers(ctx context.Context, pod *cluster.Pod, addr netip.Addr, sc sched, self string) (*servers, error) {
	s := &servers{}
	cmds := [][]string{
		{"iperf3", "-s", "-p", strconv.Itoa(iperfPort)},
		{self, "crr-server", "-listen", netip.AddrPortFrom(addr, crrPort).String()},
	}
	// listens are the ss options and port of each server's socket.
	type listen struct{ proto, port string }
	listens := []listen{{"-ltn", strconv.Itoa(iperfPort)}, {"-ltn", strconv.Itoa(crrPort)}}
	if addr.Is4() { // Debian's sockperf has no IPv6 (see hasSockperf)
		cmds = append(cmds, []string{"sockperf", "server", "-i", addr.String(), "-p", strconv.Itoa(sockperfPort)})
		listens = append(listens, listen{"-lun", strconv.Itoa(sockperfPort)})
	}
	for _, args := range cmds {
		name, argv := sc.wrap(serverCPU, args[0], args[1:])
		cmd := pod.NS.Command(context.Background(), name, argv...)
		// Own process group, so Ctrl-C reaches only this program, which
		// stops the servers itself; Pdeathsig, so they never outlive it.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return s, errors.Join(fmt.Errorf("start %s in %s: %w", args[0], pod.ID, err), s.stop())
		}
		s.procs = append(s.procs, cmd)
		if args[0] == self {
			s.crrPID = cmd.Process.Pid
		}
	}
	for _, l := range listens {
		err := cluster.Eventually(ctx, listenTimeout, "server on port "+l.port+" in "+pod.ID, func() error {
			out, err := pod.NS.Exec(ctx, "ss", "-H", l.proto, "sport = :"+l.port)
			if err == nil && strings.TrimSpace(out) == "" {
				err = errors.New("not listening yet")
			}
			return err
		})
		if err != nil {
			return s, errors.Join(err, s.stop())
		}
	}
	if err := procstat.CheckComm(s.crrPID, filepath.Base(self)); err != nil {
		return s, errors.Join(err, s.stop())
	}
	return s, nil
}

// stop kills the servers (by PID) and reaps them.
func (s *servers) stop() error {
	var errs []error
	for _, cmd := range s.procs {
		if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("kill pid %d: %w", cmd.Process.Pid, err))
			continue
		}
		cmd.Wait() // killed: the exit status says so, nothing to report
	}
	s.procs = nil
	return errors.Join(errs...)
}

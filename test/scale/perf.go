package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

// recording is a `perf record` of one weftd phase, for finding hot spots
// (-perf DIR). Go binaries keep frame pointers, so -g gives full stacks;
// read it with `perf report -i FILE --children`.
type recording struct {
	cmd  *exec.Cmd
	done chan error
}

// startPerf records pid's on-CPU stacks into dir/name.perf.data until stop.
// Without dir it records nothing and returns nil.
func startPerf(dir, name string, pid int) (*recording, error) {
	if dir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("perf output dir: %w", err)
	}
	out := filepath.Join(dir, name+".perf.data")
	cmd := exec.Command("perf", "record", "-q", "-F", "997", "-g", "-o", out, "-p", strconv.Itoa(pid))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C reaches the harness, which stops perf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start perf record (install linux-perf or drop -perf): %w", err)
	}
	r := &recording{cmd: cmd, done: make(chan error, 1)}
	go func() { r.done <- cmd.Wait() }()
	return r, nil
}

// stop ends the recording (SIGINT makes perf write its file) and waits. It
// does nothing for a nil recording.
func (r *recording) stop() error {
	if r == nil {
		return nil
	}
	if err := r.cmd.Process.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop perf (pid %d): %w", r.cmd.Process.Pid, err)
	}
	err := <-r.done
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() <= 0 {
		return nil // ended by our signal
	}
	if err != nil {
		return fmt.Errorf("perf record: %w", err)
	}
	return nil
}

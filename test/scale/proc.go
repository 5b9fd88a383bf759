package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// userHZ is the unit of /proc/<pid>/stat's CPU times (USER_HZ, fixed at 100
// in Linux's user ABI).
const userHZ = 100

// usage is a process's resource use so far.
type usage struct {
	// PeakRSS is the high-water mark of the resident set (VmHWM).
	PeakRSS int64 // bytes
	// RSSAnon and RSSFile split the current resident set into heap and
	// stacks, and mapped files (mostly weftd's own binary).
	RSSAnon, RSSFile int64 // bytes
	// CPU is user + system CPU time.
	CPU time.Duration
}

// readUsage reads pid's peak RSS and CPU time from /proc.
func readUsage(pid int) (usage, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return usage{}, fmt.Errorf("read usage of pid %d: %w", pid, err)
	}
	var u usage
	fields := map[string]*int64{"VmHWM": &u.PeakRSS, "RssAnon": &u.RSSAnon, "RssFile": &u.RSSFile}
	for line := range strings.Lines(string(status)) {
		name, rest, _ := strings.Cut(line, ":")
		dst, ok := fields[name]
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return usage{}, fmt.Errorf("pid %d: %s %q: %w", pid, name, rest, err)
		}
		*dst = kb << 10
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return usage{}, fmt.Errorf("read usage of pid %d: %w", pid, err)
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15.
	after := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(after) < 13 {
		return usage{}, fmt.Errorf("pid %d: short /proc stat %q", pid, stat)
	}
	var ticks int64
	for _, f := range after[11:13] {
		t, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return usage{}, fmt.Errorf("pid %d: CPU ticks %q: %w", pid, f, err)
		}
		ticks += t
	}
	u.CPU = time.Duration(ticks) * time.Second / userHZ
	return u, nil
}

// checkComm makes sure pid is the named program (ip netns exec execs it,
// so the PID the harness started is the daemon's own).
func checkComm(pid int, name string) error {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return fmt.Errorf("read comm of pid %d: %w", pid, err)
	}
	if got := strings.TrimSpace(string(comm)); got != name {
		return fmt.Errorf("pid %d is %q, not %s: resource use would be measured on the wrong process", pid, got, name)
	}
	return nil
}

// selfCPU is this process's user + system CPU time so far.
func selfCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Package procstat reads what benchmarks need to know about a process from
// /proc: its CPU time and its name.
package procstat

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

// CPU is pid's user + system CPU time so far (10 ms resolution).
func CPU(pid int) (time.Duration, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of pid %d: %w", pid, err)
	}
	cpu, err := parseStatCPU(stat)
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	return cpu, nil
}

// parseStatCPU reads utime + stime from a /proc/<pid>/stat line.
func parseStatCPU(stat []byte) (time.Duration, error) {
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15.
	after := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(after) < 13 {
		return 0, fmt.Errorf("short /proc stat %q", stat)
	}
	var ticks int64
	for _, f := range after[11:13] {
		t, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("CPU ticks %q in /proc stat: %w", f, err)
		}
		ticks += t
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// SelfCPU is this process's user + system CPU time so far (0 if the kernel
// does not say).
func SelfCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// commLen is the longest command name the kernel keeps (TASK_COMM_LEN
// less its terminating NUL).
const commLen = 15

// CheckComm makes sure pid is the named program (ip netns exec, nice and
// taskset exec what they run, so the PID a harness started is the
// program's own). Names longer than the kernel keeps are compared by
// their start.
func CheckComm(pid int, name string) error {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return fmt.Errorf("read comm of pid %d: %w", pid, err)
	}
	if got := strings.TrimSpace(string(comm)); !commMatches(got, name) {
		return fmt.Errorf("pid %d is %q, not %s: resource use would be measured on the wrong process", pid, got, name)
	}
	return nil
}

// commMatches reports whether the kernel's command name comm is name's.
func commMatches(comm, name string) bool { return comm == name[:min(len(name), commLen)] }

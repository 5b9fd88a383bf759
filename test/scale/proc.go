package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/test/procstat"
)

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
	if u.CPU, err = procstat.CPU(pid); err != nil {
		return usage{}, err
	}
	return u, nil
}

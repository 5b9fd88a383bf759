// Package benchdoc writes benchmark reports: the machine they ran on, and
// one section of docs/benchmarks.md in place, so several benchmarks share the
// file.
package benchdoc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Machine names the host: CPUs, CPU model, kernel, and the load
// average when the benchmark started (other work on the machine skews it).
func Machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := "unknown kernel"
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		kernel = "Linux " + unix.ByteSliceToString(u.Release[:])
	}
	return fmt.Sprintf("%d CPUs (%s), %s, load average at start %s", runtime.NumCPU(), model, kernel, LoadAverage())
}

// LoadAverage is the machine's load average over 1, 5 and 15 minutes now,
// or "unknown".
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// WriteSection puts section into the markdown file at path in place of the
// section with the same heading (up to the next "## " heading); a new
// section goes before the first "## " heading, a missing file is created
// with a title. The rest of the file is kept byte for byte.
func WriteSection(path, section string) error {
	old, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		old, err = []byte("# weft benchmarks\n"), nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := os.WriteFile(path, []byte(ReplaceSection(string(old), section)), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ReplaceSection returns doc with section (which starts with its "## "
// heading line) in place of the old one, or inserted before the first
// "## " heading, or appended.
func ReplaceSection(doc, section string) string {
	heading, _, _ := strings.Cut(section, "\n")
	section = strings.TrimRight(section, "\n") + "\n"
	lines := strings.SplitAfter(doc, "\n")
	isHeading := func(l string) bool { return strings.HasPrefix(l, "## ") }
	start := slices.IndexFunc(lines, func(l string) bool { return strings.TrimRight(l, "\n") == heading })
	end := start
	if start >= 0 {
		end = start + 1
		for end < len(lines) && !isHeading(lines[end]) {
			end++
		}
	} else if start = slices.IndexFunc(lines, isHeading); start >= 0 {
		end = start
	} else {
		return strings.TrimRight(doc, "\n") + "\n\n" + section
	}
	rest := strings.Join(lines[end:], "")
	if rest != "" {
		section += "\n"
	}
	return strings.Join(lines[:start], "") + section + rest
}

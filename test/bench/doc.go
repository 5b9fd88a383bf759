package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
)

// writeSection puts section into the markdown file at path in place of the
// section with the same heading (up to the next "## " heading); a new
// section goes before the first "## " heading, a missing file is created
// with a title. The rest of the file is kept byte for byte.
func writeSection(path, section string) error {
	old, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		old, err = []byte("# weft benchmarks\n"), nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := os.WriteFile(path, []byte(replaceSection(string(old), section)), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// replaceSection returns doc with section (which starts with its "## "
// heading line) in place of the old one, or inserted before the first
// "## " heading, or appended.
func replaceSection(doc, section string) string {
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

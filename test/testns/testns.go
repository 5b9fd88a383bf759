// Package testns gives privileged tests uniquely named network namespaces
// (prefix "wt-") that are deleted when the test ends, and the rule for when a
// privileged test may skip: never under CI=true or WEFT_E2E=1.
package testns

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// Strict reports whether privileged tests must run (CI=true or WEFT_E2E=1).
func Strict() bool {
	return os.Getenv("CI") == "true" || os.Getenv("WEFT_E2E") == "1"
}

// RequireRoot skips t when not root, or fails it when Strict.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if Strict() {
		t.Fatal("privileged test needs root (CI=true or WEFT_E2E=1 forbids skipping)")
	}
	t.Skip("privileged test: run as root, or set WEFT_E2E=1 to make this a failure")
}

// Prefix returns a fresh "wt-<6 hex>-" prefix for one test's names.
func Prefix() string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "wt-" + hex.EncodeToString(b) + "-"
}

// NS is a named network namespace owned by one test.
type NS struct {
	// Name is the namespace's name under /run/netns.
	Name   string
	handle netns.NsHandle
}

// New creates the namespace prefix+name (see Prefix) with its loopback up and
// deletes it when t ends.
func New(t testing.TB, prefix, name string) *NS {
	t.Helper()
	RequireRoot(t)
	n := &NS{Name: prefix + name}
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", n.Name, err, out)
	}
	t.Cleanup(func() {
		n.handle.Close()
		if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.Name, err, out)
		}
	})
	h, err := netns.GetFromName(n.Name)
	if err != nil {
		t.Fatalf("open netns %s: %v", n.Name, err)
	}
	n.handle = h
	n.MustRun(t, "ip", "link", "set", "lo", "up")
	return n
}

// Handle is the namespace's file handle (valid until the test ends).
func (n *NS) Handle() netns.NsHandle { return n.handle }

// Do runs f on a locked OS thread that is inside the namespace.
func (n *NS) Do(f func() error) error { return Enter(n.handle, n.Name, f) }

// Enter runs f on a locked OS thread inside the namespace h (named name, for
// errors), then returns the thread to its namespace. Sockets f opens stay in
// h; processes f starts inherit it.
func Enter(h netns.NsHandle, name string, f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(h); err != nil {
		return fmt.Errorf("enter netns %s: %w", name, err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(fmt.Sprintf("restore netns: %v", err)) // never run on in the wrong namespace
		}
	}()
	return f()
}

// Run runs a command inside the namespace (ip netns exec) and returns its
// combined output.
func (n *NS) Run(name string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), n.Name, err, out)
	}
	return string(out), nil
}

// MustRun is Run that fails t on error.
func (n *NS) MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := n.Run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

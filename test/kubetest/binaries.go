// Package kubetest runs a real etcd and kube-apiserver for tests: RBAC on,
// TLS with a generated CA, an admin token, ServiceAccount tokens, on loopback
// or on any address inside a named network namespace. Processes are stopped
// by PID when the test ends.
package kubetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftnet/weft/test/testns"
)

// Versions the shared build script builds by default.
const (
	defaultKubeVersion = "1.37.2"
	defaultEtcdVersion = "3.7.0"
)

// buildScript finds the script that builds kube-apiserver and etcd from the
// Go module proxy: $WEFT_KUBE_SCRIPT, else the shared tools directory.
func buildScript(t testing.TB) string {
	if s := os.Getenv("WEFT_KUBE_SCRIPT"); s != "" {
		return s
	}
	// The team's shared/ folder sits beside the repository (as in CI).
	return filepath.Join(RepoRoot(t), "..", "shared", "tools", "kube-apiserver-for-tests.sh")
}

// CacheDir is where the build scripts keep the programs they build:
// $WEFT_KUBE_CACHE, else ~/.cache/weft-kube.
func CacheDir() string {
	if d := os.Getenv("WEFT_KUBE_CACHE"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "weft-kube")
}

// Binaries returns the kube-apiserver and etcd to run. It uses the cached
// build (KUBE_VERSION, ETCD_VERSION select versions), else builds it with
// the shared script when testns.Strict or WEFT_KUBE_BUILD=1 (about 8 minutes
// cold), else skips t. etcd falls back to /usr/bin/etcd when no etcd was
// built.
func Binaries(t testing.TB) (apiserver, etcd string) {
	t.Helper()
	kv := envOr("KUBE_VERSION", defaultKubeVersion)
	ev := envOr("ETCD_VERSION", defaultEtcdVersion)
	apiserver = filepath.Join(CacheDir(), "kube-apiserver-v"+kv)
	etcd = filepath.Join(CacheDir(), "etcd-v"+ev)
	if !executable(apiserver) {
		if !testns.Strict() && os.Getenv("WEFT_KUBE_BUILD") != "1" {
			t.Skipf("no kube-apiserver at %s: build it once with `ETCD_VERSION=%s bash %s` (~8 min), or set WEFT_KUBE_BUILD=1 or WEFT_E2E=1 to build it here", apiserver, ev, buildScript(t))
		}
		t.Logf("building kube-apiserver v%s and etcd v%s with %s (cold: ~8 minutes)", kv, ev, buildScript(t))
		cmd := exec.Command("bash", buildScript(t), CacheDir())
		cmd.Env = append(os.Environ(), "KUBE_VERSION="+kv, "ETCD_VERSION="+ev)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("build kube-apiserver: %v\n%s", err, tail(string(out), 40))
		}
	}
	if !executable(etcd) {
		etcd = "/usr/bin/etcd"
		if !executable(etcd) {
			t.Fatalf("no etcd: build one with ETCD_VERSION=%s bash %s, or apt-get install etcd-server", ev, buildScript(t))
		}
	}
	return apiserver, etcd
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

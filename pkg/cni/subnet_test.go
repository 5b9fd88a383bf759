package cni

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const flannelEnv = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"

// writeFile writes content to path, mode 0644, creating its directory.
func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFindSubnetFile(t *testing.T) {
	dir := t.TempDir()
	weft, flannel := filepath.Join(dir, "weft.env"), filepath.Join(dir, "flannel.env")
	candidates := []string{weft, flannel}

	if _, err := findSubnetFile("", candidates); err == nil || !strings.Contains(err.Error(), "is weftd running") ||
		!strings.Contains(err.Error(), weft+" or "+flannel) {
		t.Errorf("no files: error %v", err)
	}
	writeFile(t, flannel, flannelEnv)
	if got, err := findSubnetFile("", candidates); err != nil || got != flannel {
		t.Errorf("fallback: %q, %v", got, err)
	}
	writeFile(t, weft, flannelEnv)
	if got, err := findSubnetFile("", candidates); err != nil || got != weft {
		t.Errorf("weft's first: %q, %v", got, err)
	}
	if got, err := findSubnetFile("/configured", candidates); err != nil || got != "/configured" {
		t.Errorf("configured: %q, %v", got, err)
	}
}

func TestLoadSubnetEnv(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, filepath.Join(dir, "subnet.env"), flannelEnv)
	env, path, err := LoadSubnetEnv(good)
	if err != nil {
		t.Fatal(err)
	}
	if path != good || env.Subnet != netip.MustParsePrefix("10.244.1.0/24") ||
		env.Network != netip.MustParsePrefix("10.244.0.0/16") || env.MTU != 1450 || !env.IPMasq {
		t.Errorf("got %+v from %s", env, path)
	}

	if _, _, err := LoadSubnetEnv(filepath.Join(dir, "missing.env")); err == nil || !strings.Contains(err.Error(), "is weftd running") {
		t.Errorf("missing file: error %v", err)
	}
	bad := writeFile(t, filepath.Join(dir, "bad.env"), "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=nonsense\n")
	if _, _, err := LoadSubnetEnv(bad); err == nil || !strings.Contains(err.Error(), "bad subnet file "+bad) {
		t.Errorf("bad file: error %v", err)
	}
}

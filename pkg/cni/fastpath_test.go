package cni

import (
	"bytes"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/types/create"

	"github.com/weftnet/weft/pkg/endpoint"
	"github.com/weftnet/weft/pkg/subnetfile"
)

// loResult is a bridge result whose host veth is "lo", so that the
// registration gets as far as the (missing) endpoint maps.
func loResult(t *testing.T) types.Result {
	t.Helper()
	res, err := create.CreateFromBytes([]byte(`{"cniVersion":"1.0.0",
		"interfaces":[{"name":"cni0","mac":"aa:aa:aa:aa:aa:01"},{"name":"lo","mac":"aa:aa:aa:aa:aa:02"},
			{"name":"eth0","mac":"aa:aa:aa:aa:aa:03","sandbox":"/run/netns/pod"}],
		"ips":[{"address":"10.244.1.5/24","gateway":"10.244.1.1","interface":2}]}`))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// captureLog sends the default logger to a buffer for the test.
func captureLog(t *testing.T) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })
	return &buf
}

// TestAfterAddWithoutPins: a subnet file without WEFT_BPF_DIR (the kernel
// datapath), or one still naming a pin directory the ebpf datapath no
// longer has (weftd switching to the kernel datapath), costs the pod at
// most the fast path, never its ADD.
func TestAfterAddWithoutPins(t *testing.T) {
	for _, env := range []subnetfile.Env{{}, {BPFDir: t.TempDir(), EndpointDir: t.TempDir()}} {
		if err := afterAdd(env, map[string]any{"bridge": "cni0"}, "c1", "eth0", loResult(t)); err != nil {
			t.Errorf("ADD with WEFT_BPF_DIR=%q: %v", env.BPFDir, err)
		}
	}
}

// TestAfterAddRecords: with the ebpf datapath the record is saved before
// the registration; a record that cannot be saved means no registration
// (weftd would remove the entry) but a successful ADD; an older weftd's
// subnet file (no WEFT_ENDPOINT_DIR) means a record in the default
// directory, where the new weftd looks.
func TestAfterAddRecords(t *testing.T) {
	const notRegistered = "pod not registered with the ebpf datapath" // registerEndpoint's, on the missing maps
	dir := filepath.Join(t.TempDir(), "endpoints")
	fallback := filepath.Join(t.TempDir(), "default")
	prev := fallbackEndpointDir
	t.Cleanup(func() { fallbackEndpointDir = prev })
	fallbackEndpointDir = fallback
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		endpointDir  string
		recordDir    string
		wantRecord   bool
		wantRegister bool
	}{
		{"recorded", dir, dir, true, true},
		{"record fails", filepath.Join(notADir, "endpoints"), filepath.Join(notADir, "endpoints"), false, false},
		{"older weftd", "", fallback, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := captureLog(t)
			env := subnetfile.Env{BPFDir: t.TempDir(), EndpointDir: tc.endpointDir}
			if err := afterAdd(env, map[string]any{"bridge": "cni0"}, "c1", "eth0", loResult(t)); err != nil {
				t.Fatalf("ADD: %v", err)
			}
			if got := strings.Contains(logs.String(), notRegistered); got != tc.wantRegister {
				t.Errorf("registration tried = %v, want %v; log:\n%s", got, tc.wantRegister, logs)
			}
			records, err := endpoint.Store{Dir: tc.recordDir}.List()
			if err != nil && tc.wantRecord {
				t.Fatal(err)
			}
			want := []endpoint.Record{{ContainerID: "c1", IfName: "eth0", HostIfName: "lo", MAC: "aa:aa:aa:aa:aa:03",
				IPs: []netip.Addr{netip.MustParseAddr("10.244.1.5")}}}
			if got := reflect.DeepEqual(records, want); got != tc.wantRecord {
				t.Errorf("records %+v, want recorded=%v", records, tc.wantRecord)
			}
		})
	}
}

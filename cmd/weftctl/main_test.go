package main

import (
	"bytes"
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftnet/weft/pkg/subnetfile"
)

func TestRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subnet.env")
	env := subnetfile.Env{
		Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.5.0/24"),
		MTU: 1450, IPMasq: true,
	}
	if err := subnetfile.Write(path, env); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "none.env")
	tests := []struct {
		name        string
		args        []string
		code        int
		stdout      string // exact, when set
		stdoutHas   string
		stderrHas   string
		quietStdout bool // nothing at all on stdout
	}{
		{name: "docker-opts", args: []string{"docker-opts", "--subnet-file", path}, code: 0,
			stdout: "DOCKER_OPT_BIP=\"--bip=10.244.5.1/24\"\nDOCKER_OPT_IPMASQ=\"--ip-masq=false\"\n" +
				"DOCKER_OPT_MTU=\"--mtu=1450\"\nDOCKER_OPTS=\"--bip=10.244.5.1/24 --ip-masq=false --mtu=1450\"\n"},
		{name: "single dash flag", args: []string{"docker-opts", "-subnet-file=" + path}, code: 0, stdoutHas: "DOCKER_OPTS="},
		{name: "missing subnet file", args: []string{"docker-opts", "--subnet-file", missing}, code: 1,
			stderrHas: "weftctl docker-opts: read subnet file: open " + missing, quietStdout: true},
		{name: "no args", args: nil, code: 2, stderrHas: "docker-opts", quietStdout: true},
		{name: "help", args: []string{"-h"}, code: 0, stdoutHas: "docker-opts"},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2,
			stderrHas: `weftctl: unknown command "frobnicate"`, quietStdout: true},
		{name: "subcommand help", args: []string{"docker-opts", "-h"}, code: 0,
			stderrHas: "usage: weftctl docker-opts [--subnet-file F]", quietStdout: true},
		{name: "subcommand help shows default", args: []string{"docker-opts", "--help"}, code: 0,
			stderrHas: subnetfile.DefaultPath, quietStdout: true},
		{name: "bad flag", args: []string{"docker-opts", "--nope"}, code: 2,
			stderrHas: "flag provided but not defined: -nope", quietStdout: true},
		{name: "bad output format", args: []string{"status", "-o", "yaml"}, code: 2,
			stderrHas: `output format "yaml": use table or json`, quietStdout: true},
		{name: "maps bad arguments", args: []string{"maps", "frob"}, code: 2,
			stderrHas: `unexpected arguments ["frob"]`, quietStdout: true},
		{name: "maps unknown map", args: []string{"maps", "dump", "routes", "--bpf-dir", missing}, code: 2,
			stderrHas: `no map "routes": use one of weft_config`, quietStdout: true},
		{name: "maps not pinned", args: []string{"maps", "dump", "peers", "--bpf-dir", missing}, code: 1,
			stderrHas: "map weft_peers is not pinned in " + missing, quietStdout: true},
		{name: "maps dump ring buffer", args: []string{"maps", "dump", "ct_requests", "--bpf-dir", missing}, code: 2,
			stderrHas: "weft_ct_requests is a ring buffer that weftd consumes: it has nothing to dump", quietStdout: true},
		{name: "maps documents the new maps", args: []string{"maps", "-h"}, code: 0,
			stderrHas: `weft_pods:       {"host_ifindex", "ip", "ipv6", "mac"}`, quietStdout: true},
		{name: "json documented", args: []string{"peers", "-h"}, code: 0,
			stderrHas: `"status": "ok"|"mismatch"|"own"|"unchecked"`, quietStdout: true},
		{name: "watch flags", args: []string{"counters", "--watch", "--interval", "0s"}, code: 2,
			stderrHas: "--interval must be positive", quietStdout: true},
		{name: "extra argument", args: []string{"docker-opts", "extra"}, code: 2,
			stderrHas: `unexpected argument "extra"`, quietStdout: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit code %d, want %d (stderr: %s)", code, tt.code, stderr.String())
			}
			if tt.stdout != "" && stdout.String() != tt.stdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout.String(), tt.stdout)
			}
			if !strings.Contains(stdout.String(), tt.stdoutHas) {
				t.Errorf("stdout %q does not contain %q", stdout.String(), tt.stdoutHas)
			}
			if !strings.Contains(stderr.String(), tt.stderrHas) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.stderrHas)
			}
			if tt.quietStdout && stdout.Len() != 0 {
				t.Errorf("unexpected stdout %q", stdout.String())
			}
		})
	}
}

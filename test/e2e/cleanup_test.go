package e2e

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/weftnet/weft/test/cluster"
)

// TestCleanup uninstalls weft from an ebpf node with `weftd --cleanup`: no
// pins, programs, vxlan device, masquerade or forward rules or subnet file
// are left; starting weftd again brings the node back, fast path included.
func TestCleanup(t *testing.T) {
	c := start(t, cluster.Options{NetConf: cluster.NetConf("vxlan", "ebpf", false)})
	ctx := t.Context()
	pods := addPods(t, c, 1)
	requireDatapaths(t, c, "ebpf")
	if err := waitReach(ctx, pods[0].NS, pods[1].IP); err != nil {
		t.Fatal(err)
	}
	n := c.Nodes[0]
	pins, err := os.ReadDir(n.BPFDir)
	if err != nil || len(pins) == 0 {
		t.Fatalf("before cleanup: pins in %s: %v %v", n.BPFDir, pins, err)
	}
	if err := n.StopWeftd(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if out, err := n.RunWeftd(ctx, "--cleanup"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}

	var left []string
	_ = filepath.WalkDir(n.BPFDir, func(p string, d fs.DirEntry, err error) error {
		// maps.debug and progs.debug are the kernel's (bpf_preload), at the
		// root of every bpffs mount.
		if err == nil && p != n.BPFDir && !strings.HasSuffix(p, ".debug") {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("pins left after cleanup: %v", left)
	}
	if _, err := os.Stat(n.SubnetFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("subnet file after cleanup: %v", err)
	}
	links, err := n.Exec(ctx, "ip", "-br", "link")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(links, "flannel.1") {
		t.Errorf("flannel.1 left after cleanup:\n%s", links)
	}
	if tables, err := n.Exec(ctx, "nft", "list", "tables"); err != nil || strings.Contains(tables, "weft") || strings.Contains(tables, "flannel") {
		t.Errorf("nft tables after cleanup: %q %v", tables, err)
	}
	if rules, err := n.Exec(ctx, "iptables-save"); err != nil || strings.Contains(rules, "FLANNEL") || !strings.Contains(rules, "*nat") {
		t.Errorf("iptables rules after cleanup (%v):\n%s", err, rules)
	}
	// tcx attachments are not visible to Debian's tc or bpftool: the
	// programs must be gone from the kernel's list of loaded programs with
	// this node's pins (none left is checked above), and traffic must no
	// longer be encapsulated by them: with flannel.1 and the peer entries
	// gone the pod cannot reach the other node.
	if r, err := pods[0].NS.Ping(ctx, pods[1].IP, 2, 0); err == nil && r.Received > 0 {
		t.Errorf("pod still reaches the other node after cleanup")
	}

	if err := n.StartWeftd(ctx); err != nil {
		t.Fatal(err)
	}
	requirePing(t, pods[0].NS, "ping after reinstall", pods[1].IP)
	serveEcho(t, pods[1:])
	if err := pods[0].NS.EchoRoundTrip(ctx, netip.AddrPortFrom(pods[1].IP, echoPort), transferSize); err != nil {
		t.Errorf("TCP after reinstall: %v", err)
	}
	expectCarried(t, n, "vxlan-ebpf")
}

// Package e2e runs weft end to end: real weftd and weft-cni binaries in
// namespace clusters (package test/cluster), pods talking across nodes for
// every datapath and backend, and the daemon's life cycle. Run as root:
//
//	WEFT_E2E=1 go test -count=1 -timeout 30m -v ./test/e2e/
package e2e

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/weftnet/weft/test/cluster"
	"github.com/weftnet/weft/test/testns"
)

// The binaries are built once for all tests, each on first use.
var build struct {
	sync.Mutex
	dir  string
	bins map[string]string
	errs map[string]error
}

func TestMain(m *testing.M) {
	cluster.CloseOnInterrupt()
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// binary builds the module's cmd/<name> on first use.
func binary(t *testing.T, name string) string {
	t.Helper()
	testns.RequireRoot(t)
	build.Lock()
	defer build.Unlock()
	if build.dir == "" {
		dir, err := os.MkdirTemp("", "weft-e2e-bin-")
		if err != nil {
			t.Fatal(err)
		}
		build.dir, build.bins, build.errs = dir, map[string]string{}, map[string]error{}
	}
	if _, tried := build.bins[name]; !tried {
		build.bins[name], build.errs[name] = cluster.BuildCommand(context.Background(), build.dir, name)
	}
	if err := build.errs[name]; err != nil {
		t.Fatalf("build %s: %v", name, err)
	}
	return build.bins[name]
}

// binaries builds weftd and weft-cni.
func binaries(t *testing.T) cluster.Binaries {
	t.Helper()
	return cluster.Binaries{Weftd: binary(t, "weftd"), CNI: binary(t, "weft-cni")}
}

// start builds a cluster for t, of the real binaries unless opts names
// others.
func start(t *testing.T, opts cluster.Options) *cluster.Cluster {
	t.Helper()
	if opts.Binaries == (cluster.Binaries{}) {
		opts.Binaries = binaries(t)
	}
	return cluster.Start(t, opts)
}

// addPods attaches perNode pods to every node, node by node.
func addPods(t *testing.T, c *cluster.Cluster, perNode int) []*cluster.Pod {
	t.Helper()
	var pods []*cluster.Pod
	for _, n := range c.Nodes {
		for range perNode {
			p, err := n.AddPod(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			pods = append(pods, p)
		}
	}
	return pods
}

// describe names a pod with its addresses.
func describe(p *cluster.Pod) string { return fmt.Sprintf("%s %v", p.ID, p.Addrs()) }

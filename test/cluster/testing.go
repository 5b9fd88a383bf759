package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/test/testns"
)

// logTail is how many lines of each weftd log a failed test shows.
const logTail = 150

// Start builds a cluster for t (see New; kube mode needs Start). It skips or
// fails t without root (testns.RequireRoot), fails t if the cluster cannot
// be built, and closes the cluster when t ends, after logging each node's
// weftd log and network state if t failed.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	testns.RequireRoot(t)
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	c, err := newCluster(opts)
	if err != nil {
		t.Fatal(err)
	}
	c.t = t
	// Registered before the build: in kube mode the build may end t early
	// (kubetest's t.Fatal or t.Skip).
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("tear down cluster %s: %v", c.Prefix, err)
		}
	})
	if err := c.build(context.Background()); err != nil {
		t.Fatalf("build cluster: %v", err)
	}
	// Registered after the build, so it runs first: while kube mode's API
	// server, which kubetest stops when t ends, still answers.
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(c.Diagnose(context.Background()))
		}
	})
	return c
}

// Diagnose describes the cluster for a failure report: the leases in etcd
// (the Node objects in kube mode) and, per node, the tail of weftd's log and
// the node's links, routes, neighbours and vxlan fdb.
func (c *Cluster) Diagnose(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var b strings.Builder
	fmt.Fprintf(&b, "=== cluster %s (dir %s)\n", c.Prefix, c.Dir)
	if c.Etcd != nil {
		kv, err := c.Etcd.List(ctx, EtcdPrefix)
		fmt.Fprintf(&b, "--- etcd %s (err %v)\n", EtcdPrefix, err)
		keys := make([]string, 0, len(kv))
		for k := range kv {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s = %s\n", k, kv[k])
		}
	}
	if c.Kube != nil {
		c.diagnoseKube(ctx, &b)
	}
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "=== node %s (%s %s, pid %d)\n", n.Name, n.IP, n.IPv6, n.WeftdPID())
		if log, err := os.ReadFile(n.LogPath()); err == nil {
			lines := strings.Split(strings.TrimRight(string(log), "\n"), "\n")
			fmt.Fprintf(&b, "--- weftd log (last %d lines)\n%s\n", logTail, strings.Join(lines[max(0, len(lines)-logTail):], "\n"))
		}
		if env, err := os.ReadFile(n.SubnetFile); err == nil {
			fmt.Fprintf(&b, "--- %s\n%s", n.SubnetFile, env)
		}
		cmds := [][]string{{"ip", "-d", "-br", "link"}, {"ip", "-br", "addr"}, {"ip", "route"}, {"ip", "neigh"},
			{"bridge", "fdb", "show", "dev", BackendDevice("vxlan", IPv4)}}
		if c.Stack().Has(IPv6) {
			cmds = append(cmds, []string{"ip", "-6", "route"}, []string{"bridge", "fdb", "show", "dev", BackendDevice("vxlan", IPv6)})
		}
		for _, cmd := range cmds {
			out, err := n.Exec(ctx, cmd[0], cmd[1:]...)
			if err != nil {
				out = err.Error() + "\n"
			}
			fmt.Fprintf(&b, "--- %s\n%s", strings.Join(cmd, " "), out)
		}
	}
	return b.String()
}

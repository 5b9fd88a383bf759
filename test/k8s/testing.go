package k8s

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/test/testns"
)

// diagLogLines is how many lines of each daemon's log a failure report
// shows.
const diagLogLines = 40

// Start builds a cluster for t (see New). It skips or fails t without root
// (testns.RequireRoot), fails t if the cluster does not come up, and
// closes the cluster when t ends, after logging Diagnose if t failed.
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
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(c.Diagnose(context.Background()))
		}
		if err := c.Close(); err != nil {
			t.Errorf("tear down cluster %s: %v", c.Prefix, err)
		}
	})
	start := time.Now()
	if err := c.build(t.Context()); err != nil {
		t.Fatalf("bring the cluster up: %v", err)
	}
	t.Logf("cluster %s up in %v: %s", c.Prefix, time.Since(start).Round(time.Millisecond), c.TimingSummary())
	return c
}

// TimingSummary lists the phases of Start with their durations.
func (c *Cluster) TimingSummary() string {
	var parts []string
	for _, tm := range c.Timings {
		parts = append(parts, fmt.Sprintf("%s %v", tm.Phase, tm.Duration.Round(time.Millisecond)))
	}
	return strings.Join(parts, ", ")
}

// Diagnose describes the cluster for a failure report: nodes, pods and
// events as kubectl shows them, weft's logs, and the tail of every
// daemon's log.
func (c *Cluster) Diagnose(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var b strings.Builder
	fmt.Fprintf(&b, "=== cluster %s (dir %s)\n", c.Prefix, c.Dir)
	if c.Client != nil {
		for _, args := range [][]string{
			{"get", "nodes", "-o", "wide"},
			{"get", "pods", "-A", "-o", "wide"},
			{"get", "events", "-A", "--sort-by=.lastTimestamp"},
			{"logs", "-n", WeftNamespace, "-l", "app=weft", "--all-containers", "--prefix", "--tail=40"},
		} {
			out, err := c.Kubectl(ctx, args...)
			if err != nil {
				out += err.Error() + "\n"
			}
			fmt.Fprintf(&b, "--- kubectl %s\n%s", strings.Join(args, " "), out)
		}
	}
	for _, d := range c.allDaemons() {
		fmt.Fprintf(&b, "--- %s (%s)\n%s\n", d.name, d.log, logTail(d.log, diagLogLines))
	}
	return b.String()
}

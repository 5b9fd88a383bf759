package metrics

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/reconcile"
)

// sample is what a busy eBPF node might report; the vxlan tx series comes in
// two parts that must be summed.
var sample = []datapath.Counter{
	{Backend: "vxlan-ebpf", Direction: "tx", Packets: 10, Bytes: 1500},
	{Backend: "vxlan-ebpf", Direction: "tx", Packets: 5, Bytes: 500},
	{Backend: "vxlan-ebpf", Direction: "rx", Packets: 7, Bytes: 700},
	{Backend: "host-gw-ebpf", Direction: "tx", Packets: 3, Bytes: 300},
	{Backend: "vxlan-ebpf", Reason: "unknown_node", Packets: 2, Bytes: 200},
	{Backend: "vxlan-ebpf", Reason: "spoofed_source", Packets: 1, Bytes: 60},
}

func TestExposition(t *testing.T) {
	dp := &fakeDatapath{}
	dp.set(sample, nil)
	m := newWith("v1.2.3", fakeSource{dp: dp})
	m.SetPeers(map[string]int{"vxlan-ebpf": 3})
	m.SetPeers(map[string]int{"vxlan-ebpf": 2}) // replaces, not adds
	m.LeaseEvent(LeaseAcquired)
	m.LeaseRenewed()
	m.LeaseRenewed()
	m.LeaseRenewFailed()
	for range 3 {
		m.LeaseEvent(LeaseSetChanged)
	}
	// Binary fractions of a second, so the histogram's sum prints exactly.
	m.ObserveReconcile(reconcile.Result{Peers: 2, Duration: time.Second / 256, Full: true})
	m.ObserveReconcile(reconcile.Result{Peers: 2, Duration: time.Second / 32, Full: true, Err: errors.New("route add failed")})
	m.ObserveReconcile(reconcile.Result{Peers: 2, Changes: 1, Duration: time.Second / 4096})

	want := `# HELP weft_build_info Always 1; the labels tell weftd's version and the Go version that built it.
# TYPE weft_build_info gauge
weft_build_info{goversion="` + runtime.Version() + `",version="v1.2.3"} 1
# HELP weft_datapath_bytes_total Bytes the datapath sent toward other nodes (tx) or received from them (rx).
# TYPE weft_datapath_bytes_total counter
weft_datapath_bytes_total{backend="host-gw-ebpf",direction="tx"} 300
weft_datapath_bytes_total{backend="vxlan-ebpf",direction="rx"} 700
weft_datapath_bytes_total{backend="vxlan-ebpf",direction="tx"} 2000
# HELP weft_datapath_drops_total Packets the datapath dropped, by reason.
# TYPE weft_datapath_drops_total counter
weft_datapath_drops_total{backend="vxlan-ebpf",reason="spoofed_source"} 1
weft_datapath_drops_total{backend="vxlan-ebpf",reason="unknown_node"} 2
# HELP weft_datapath_packets_total Packets the datapath sent toward other nodes (tx) or received from them (rx).
# TYPE weft_datapath_packets_total counter
weft_datapath_packets_total{backend="host-gw-ebpf",direction="tx"} 3
weft_datapath_packets_total{backend="vxlan-ebpf",direction="rx"} 7
weft_datapath_packets_total{backend="vxlan-ebpf",direction="tx"} 15
# HELP weft_datapath_stats_errors_total Scrapes at which the datapath's counters could not be read.
# TYPE weft_datapath_stats_errors_total counter
weft_datapath_stats_errors_total 0
# HELP weft_lease_events_total Events from the lease source (etcd or Kubernetes), by kind.
# TYPE weft_lease_events_total counter
weft_lease_events_total{event="acquired"} 1
weft_lease_events_total{event="set_changed"} 3
weft_lease_events_total{event="subnet_moved"} 0
# HELP weft_lease_renewal_failures_total Attempts to renew this node's subnet lease that failed (each is retried).
# TYPE weft_lease_renewal_failures_total counter
weft_lease_renewal_failures_total 1
# HELP weft_lease_renewals_total Renewals of this node's subnet lease that succeeded.
# TYPE weft_lease_renewals_total counter
weft_lease_renewals_total 2
# HELP weft_peers Other nodes the datapath is configured to reach, by backend.
# TYPE weft_peers gauge
weft_peers{backend="vxlan-ebpf"} 2
# HELP weft_reconcile_duration_seconds Duration of reconcile passes that make the datapath equal to the peer set, by pass: full (the whole set, read back and repaired) or change (only what changed).
# TYPE weft_reconcile_duration_seconds histogram
weft_reconcile_duration_seconds_bucket{pass="change",le="0.0001"} 0
weft_reconcile_duration_seconds_bucket{pass="change",le="0.00025"} 1
weft_reconcile_duration_seconds_bucket{pass="change",le="0.0005"} 1
weft_reconcile_duration_seconds_bucket{pass="change",le="0.001"} 1
weft_reconcile_duration_seconds_bucket{pass="change",le="0.0025"} 1
weft_reconcile_duration_seconds_bucket{pass="change",le="0.005"} 1
weft_reconcile_duration_seconds_bucket{pass="change",le="0.01"} 1
weft_reconcile_duration_seconds_bucket{pass="change",le="0.025"} 1
weft_reconcile_duration_seconds_bucket{pass="change",le="0.05"} 1
weft_reconcile_duration_seconds_bucket{pass="change",le="0.1"} 1
weft_reconcile_duration_seconds_bucket{pass="change",le="0.25"} 1
weft_reconcile_duration_seconds_bucket{pass="change",le="0.5"} 1
weft_reconcile_duration_seconds_bucket{pass="change",le="1"} 1
weft_reconcile_duration_seconds_bucket{pass="change",le="2.5"} 1
weft_reconcile_duration_seconds_bucket{pass="change",le="5"} 1
weft_reconcile_duration_seconds_bucket{pass="change",le="10"} 1
weft_reconcile_duration_seconds_bucket{pass="change",le="+Inf"} 1
weft_reconcile_duration_seconds_sum{pass="change"} 0.00024414
weft_reconcile_duration_seconds_count{pass="change"} 1
weft_reconcile_duration_seconds_bucket{pass="full",le="0.0001"} 0
weft_reconcile_duration_seconds_bucket{pass="full",le="0.00025"} 0
weft_reconcile_duration_seconds_bucket{pass="full",le="0.0005"} 0
weft_reconcile_duration_seconds_bucket{pass="full",le="0.001"} 0
weft_reconcile_duration_seconds_bucket{pass="full",le="0.0025"} 0
weft_reconcile_duration_seconds_bucket{pass="full",le="0.005"} 1
weft_reconcile_duration_seconds_bucket{pass="full",le="0.01"} 1
weft_reconcile_duration_seconds_bucket{pass="full",le="0.025"} 1
weft_reconcile_duration_seconds_bucket{pass="full",le="0.05"} 2
weft_reconcile_duration_seconds_bucket{pass="full",le="0.1"} 2
weft_reconcile_duration_seconds_bucket{pass="full",le="0.25"} 2
weft_reconcile_duration_seconds_bucket{pass="full",le="0.5"} 2
weft_reconcile_duration_seconds_bucket{pass="full",le="1"} 2
weft_reconcile_duration_seconds_bucket{pass="full",le="2.5"} 2
weft_reconcile_duration_seconds_bucket{pass="full",le="5"} 2
weft_reconcile_duration_seconds_bucket{pass="full",le="10"} 2
weft_reconcile_duration_seconds_bucket{pass="full",le="+Inf"} 2
weft_reconcile_duration_seconds_sum{pass="full"} 0.03515625
weft_reconcile_duration_seconds_count{pass="full"} 2
# HELP weft_reconcile_errors_total Reconcile passes that failed (each is retried).
# TYPE weft_reconcile_errors_total counter
weft_reconcile_errors_total 1
# HELP weft_reconcile_last_success_timestamp_seconds Unix time the last successful reconcile pass ended; 0 until the first one.
# TYPE weft_reconcile_last_success_timestamp_seconds gauge
weft_reconcile_last_success_timestamp_seconds 0
`
	if got := weftLines(scrape(t, m)); got != want {
		t.Errorf("exposition of weft_ metrics:\n%s\nwant:\n%s", got, want)
	}
}

// weftLines keeps the lines of an exposition that are about weft_ metrics,
// leaving out the Go runtime and process metrics.
func weftLines(exposition string) string {
	var b strings.Builder
	for line := range strings.Lines(exposition) {
		if strings.HasPrefix(line, "weft_") || strings.HasPrefix(line, "# HELP weft_") || strings.HasPrefix(line, "# TYPE weft_") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// sampleValue returns the value of the unlabelled series name in exposition.
func sampleValue(t *testing.T, exposition, name string) float64 {
	t.Helper()
	for line := range strings.Lines(exposition) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no %s in exposition:\n%s", name, exposition)
	return 0
}

func TestLastSuccessFromReconciler(t *testing.T) {
	dp := &fakeDatapath{}
	rec := reconcile.New(dp, noPeers{}, time.Hour)
	m := newWith("dev", fakeSource{dp: dp, rec: rec})
	rec.Observe(m.ObserveReconcile)
	const last = "weft_reconcile_last_success_timestamp_seconds"
	if v := sampleValue(t, scrape(t, m), last); v != 0 {
		t.Fatalf("%s before any pass = %v, want 0", last, v)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rec.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	rec.Changed()
	deadline := time.Now().Add(10 * time.Second)
	var ok time.Time
	for ok.IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("no successful reconcile pass within 10s")
		}
		ok, _ = rec.LastSuccess()
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
	body := scrape(t, m)
	if v, want := sampleValue(t, body, last), float64(ok.UnixNano())/1e9; v != want {
		t.Errorf("%s = %v, want %v (the reconciler's LastSuccess)", last, v, want)
	}
	if n := sampleValue(t, body, `weft_reconcile_duration_seconds_count{pass="full"}`); n < 1 {
		t.Errorf("reconcile passes observed through Observe = %v, want >= 1", n)
	}
}

func TestDatapathUnavailable(t *testing.T) {
	for name, m := range map[string]*Metrics{
		"no source":    New("dev"),
		"nil source":   newWith("dev", nil),
		"before setup": newWith("dev", fakeSource{}),
	} {
		t.Run(name, func(t *testing.T) {
			body := scrape(t, m)
			if strings.Contains(body, "weft_datapath_packets_total") {
				t.Errorf("datapath series without a datapath:\n%s", weftLines(body))
			}
			for _, metric := range []string{"weft_datapath_stats_errors_total", "weft_reconcile_last_success_timestamp_seconds"} {
				if v := sampleValue(t, body, metric); v != 0 {
					t.Errorf("%s = %v, want 0", metric, v)
				}
			}
		})
	}
	t.Run("stats fail", func(t *testing.T) {
		dp := &fakeDatapath{}
		dp.set(sample, errors.New("map lookup failed"))
		m := newWith("dev", fakeSource{dp: dp})
		scrape(t, m)
		body := scrape(t, m)
		if strings.Contains(body, "weft_datapath_packets_total") {
			t.Errorf("datapath series although Stats failed:\n%s", weftLines(body))
		}
		if v := sampleValue(t, body, "weft_datapath_stats_errors_total"); v != 2 {
			t.Errorf("weft_datapath_stats_errors_total after 2 failed scrapes = %v, want 2", v)
		}
		if v := sampleValue(t, body, "weft_reconcile_errors_total"); v != 0 {
			t.Errorf("control-plane metrics missing when Stats fails: weft_reconcile_errors_total = %v", v)
		}
	})
}

func TestNilMetricsIgnoresCalls(t *testing.T) {
	var m *Metrics
	m.ObserveReconcile(reconcile.Result{Err: errors.New("x")})
	m.LeaseRenewed()
	m.LeaseRenewFailed()
	m.LeaseEvent(LeaseAcquired)
	m.SetPeers(map[string]int{"vxlan-kernel": 1})
	m.SetSource(fakeSource{})
}

// noPeers is an empty reconcile.Desired.
type noPeers struct{}

func (noPeers) Peers() []datapath.Peer                      { return nil }
func (noPeers) Peer(datapath.PeerKey) (datapath.Peer, bool) { return datapath.Peer{}, false }
func (noPeers) Len() int                                    { return 0 }

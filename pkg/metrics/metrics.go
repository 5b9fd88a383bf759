// Package metrics is weftd's Prometheus instrumentation: the datapath's
// counters, read from the datapath at scrape time, and the control plane's
// lease, peer and reconcile metrics, served by Handler (at /metrics on the
// health port). Every metric is described in docs/metrics.md.
package metrics

import (
	"log/slog"
	"net/http"
	"runtime"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/reconcile"
)

// Source is what the metrics read at scrape time; *daemon.Daemon implements
// it. Both methods may return nil (not set up yet).
type Source interface {
	Datapath() datapath.Datapath
	Reconciler() *reconcile.Reconciler
}

// LeaseEventKind is the event label of weft_lease_events_total.
type LeaseEventKind string

// Lease-source events.
const (
	// LeaseAcquired: this node obtained its lease at startup.
	LeaseAcquired LeaseEventKind = "acquired"
	// LeaseSubnetMoved: the lease source handed this node a different subnet.
	LeaseSubnetMoved LeaseEventKind = "subnet_moved"
	// LeaseSetChanged: the lease source delivered a new set of all leases.
	LeaseSetChanged LeaseEventKind = "set_changed"
)

// Metrics holds weftd's metrics on a private registry. A nil *Metrics ignores
// the recording methods (SetSource, ObserveReconcile, Lease*, SetPeers), so
// callers need not check whether metrics are enabled.
type Metrics struct {
	reg *prometheus.Registry
	src atomic.Pointer[Source]

	peers             *prometheus.GaugeVec
	leaseRenewals     prometheus.Counter
	leaseRenewFails   prometheus.Counter
	leaseEvents       *prometheus.CounterVec
	reconcileDuration *prometheus.HistogramVec
	reconcileErrors   prometheus.Counter
}

// New returns weftd's metrics; version is weftd's build version. The
// datapath and reconcile state are read from the Source given to SetSource.
func New(version string) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		peers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_peers",
			Help: "Other nodes the datapath is configured to reach, by backend.",
		}, []string{"backend"}),
		leaseRenewals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_lease_renewals_total",
			Help: "Renewals of this node's subnet lease that succeeded.",
		}),
		leaseRenewFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_lease_renewal_failures_total",
			Help: "Attempts to renew this node's subnet lease that failed (each is retried).",
		}),
		leaseEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_lease_events_total",
			Help: "Events from the lease source (etcd or Kubernetes), by kind.",
		}, []string{"event"}),
		reconcileDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "weft_reconcile_duration_seconds",
			Help: "Duration of reconcile passes that make the datapath equal to the peer set, by pass: full (the whole set, read back and repaired) or change (only what changed).",
			// Change passes take tens of microseconds, full ones up to seconds.
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"pass"}),
		reconcileErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_reconcile_errors_total",
			Help: "Reconcile passes that failed (each is retried).",
		}),
	}
	// Known label values start at 0 so that rate() sees their first event.
	for _, k := range []LeaseEventKind{LeaseAcquired, LeaseSubnetMoved, LeaseSetChanged} {
		m.leaseEvents.WithLabelValues(string(k))
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "weft_build_info",
		Help:        "Always 1; the labels tell weftd's version and the Go version that built it.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	buildInfo.Set(1)
	lastSuccess := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "weft_reconcile_last_success_timestamp_seconds",
		Help: "Unix time the last successful reconcile pass ended; 0 until the first one.",
	}, m.lastSuccessSeconds)

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&datapathCollector{datapath: m.datapath},
		m.peers, m.leaseRenewals, m.leaseRenewFails, m.leaseEvents,
		m.reconcileDuration, m.reconcileErrors, lastSuccess, buildInfo,
	)
	return m
}

// SetSource makes scrapes read the datapath's counters and the last
// successful reconcile from src. Until it is called they have no datapath
// series and a last success of 0.
func (m *Metrics) SetSource(src Source) {
	if m == nil {
		return
	}
	m.src.Store(&src)
}

func (m *Metrics) source() Source {
	if p := m.src.Load(); p != nil {
		return *p
	}
	return nil
}

func (m *Metrics) datapath() datapath.Datapath {
	if src := m.source(); src != nil {
		return src.Datapath()
	}
	return nil
}

func (m *Metrics) lastSuccessSeconds() float64 {
	src := m.source()
	if src == nil {
		return 0
	}
	r := src.Reconciler()
	if r == nil {
		return 0
	}
	t, _ := r.LastSuccess()
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// Handler serves the metrics in the Prometheus exposition formats. A
// collector that fails is logged and left out; the rest is still served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// ObserveReconcile records one reconcile pass; it has the signature of
// reconcile.Reconciler.Observe's argument.
func (m *Metrics) ObserveReconcile(r reconcile.Result) {
	if m == nil {
		return
	}
	pass := "change"
	if r.Full {
		pass = "full"
	}
	m.reconcileDuration.WithLabelValues(pass).Observe(r.Duration.Seconds())
	if r.Err != nil {
		m.reconcileErrors.Inc()
	}
}

// LeaseRenewed records a successful renewal of this node's lease.
func (m *Metrics) LeaseRenewed() {
	if m == nil {
		return
	}
	m.leaseRenewals.Inc()
}

// LeaseRenewFailed records a failed attempt to renew this node's lease.
func (m *Metrics) LeaseRenewFailed() {
	if m == nil {
		return
	}
	m.leaseRenewFails.Inc()
}

// LeaseEvent records an event from the lease source.
func (m *Metrics) LeaseEvent(kind LeaseEventKind) {
	if m == nil {
		return
	}
	m.leaseEvents.WithLabelValues(string(kind)).Inc()
}

// SetPeers replaces the peer counts; keys are backend label values such as
// "vxlan-ebpf" (see docs/metrics.md).
func (m *Metrics) SetPeers(byBackend map[string]int) {
	if m == nil {
		return
	}
	m.peers.Reset()
	for b, n := range byBackend {
		m.peers.WithLabelValues(b).Set(float64(n))
	}
}

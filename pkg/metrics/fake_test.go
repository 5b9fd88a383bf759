package metrics

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/reconcile"
)

// fakeDatapath returns whatever counters (or error) the test sets.
type fakeDatapath struct {
	mu       sync.Mutex
	counters []datapath.Counter
	err      error
}

func (f *fakeDatapath) set(counters []datapath.Counter, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counters, f.err = counters, err
}

func (f *fakeDatapath) Stats() ([]datapath.Counter, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]datapath.Counter(nil), f.counters...), f.err
}

func (f *fakeDatapath) Name() string { return "fake" }
func (f *fakeDatapath) Setup(context.Context, datapath.Node) (datapath.Info, error) {
	return datapath.Info{}, nil
}
func (f *fakeDatapath) SetSubnet(context.Context, netip.Prefix) error { return nil }
func (f *fakeDatapath) Sync(context.Context, []datapath.Peer) error   { return nil }
func (f *fakeDatapath) Close() error                                  { return nil }
func (f *fakeDatapath) Cleanup(context.Context) error                 { return nil }

// fakeSource is a daemon whose datapath and reconciler the test sets.
type fakeSource struct {
	dp  datapath.Datapath
	rec *reconcile.Reconciler
}

func (s fakeSource) Datapath() datapath.Datapath       { return s.dp }
func (s fakeSource) Reconciler() *reconcile.Reconciler { return s.rec }

// newWith returns metrics reading from src.
func newWith(version string, src Source) *Metrics {
	m := New(version)
	m.SetSource(src)
	return m
}

// scrape fetches /metrics from m's handler as Prometheus does.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	res := rec.Result()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/metrics = %d: %s", res.StatusCode, body)
	}
	return string(body)
}

package metrics

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/health"
	"github.com/weftnet/weft/pkg/reconcile"
	"github.com/weftnet/weft/test/testns"
)

// tool returns the path of one of Debian's prometheus binaries. A missing
// one skips the test, or fails it under testns.Strict.
func tool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if testns.Strict() {
		t.Fatalf("%s not found (apt-get install prometheus; CI=true or WEFT_E2E=1 forbids skipping): %v", name, err)
	}
	t.Skipf("%s not found: apt-get install prometheus", name)
	return ""
}

func TestPromtoolCheckMetrics(t *testing.T) {
	promtool := tool(t, "promtool")
	check := func(exposition string) (string, error) {
		cmd := exec.CommandContext(t.Context(), promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(exposition)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// The linter must be able to fail: a counter without _total does.
	if out, err := check("# HELP weft_bad A counter.\n# TYPE weft_bad counter\nweft_bad 1\n"); err == nil {
		t.Fatalf("promtool accepted a counter without _total: %s", out)
	}

	dp := &fakeDatapath{}
	dp.set(sample, nil)
	m := newWith("v1.2.3", fakeSource{dp: dp})
	m.SetPeers(map[string]int{"vxlan-ebpf": 2})
	m.LeaseEvent(LeaseAcquired)
	m.LeaseRenewed()
	m.LeaseRenewFailed()
	m.ObserveReconcile(reconcile.Result{Peers: 2, Duration: time.Millisecond})
	if out, err := check(scrape(t, m)); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// traffic is what the fake datapath reports after sending txBytes.
func traffic(txBytes uint64) []datapath.Counter {
	return []datapath.Counter{
		{Backend: "vxlan-ebpf", Direction: "tx", Packets: txBytes / 100, Bytes: txBytes},
		{Backend: "vxlan-ebpf", Direction: "rx", Packets: 1, Bytes: 100},
	}
}

func TestPrometheusScrape(t *testing.T) {
	bin := tool(t, "prometheus")
	dp := &fakeDatapath{}
	dp.set(traffic(1000), nil)
	m := newWith("dev", fakeSource{dp: dp})
	srv, err := health.Listen("127.0.0.1:0", func() error { return nil }, m.Handler())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	p := startPrometheus(t, bin, srv.Addr().String())
	const query = `sum(weft_datapath_bytes_total{backend="vxlan-ebpf",direction="tx"})`
	p.waitFor(t, query, 1000)
	dp.set(traffic(250000), nil)
	p.waitFor(t, query, 250000)

	// Every query of the Grafana dashboard is valid PromQL.
	m.SetPeers(map[string]int{"vxlan-ebpf": 1})
	m.LeaseRenewed()
	m.ObserveReconcile(reconcile.Result{Duration: time.Millisecond})
	grafana := strings.NewReplacer("$__rate_interval", "1m", "$instance", ".*")
	for _, e := range dashboardExprs(t) {
		q := grafana.Replace(e)
		if _, err := p.query(q); err != nil {
			t.Errorf("dashboard query: %v", err)
		}
	}
}

// promServer is a Prometheus server this test started.
type promServer struct {
	api    string // http://127.0.0.1:port
	exited chan struct{}
	log    string // its stdout and stderr
}

// startPrometheus runs bin on loopback with its own storage, scraping target
// every 200ms, and stops it (by PID) when the test ends.
func startPrometheus(t *testing.T, bin, target string) *promServer {
	t.Helper()
	dir := t.TempDir() // removed after the cleanup below has stopped the server
	cfg := filepath.Join(dir, "prometheus.yml")
	conf := fmt.Sprintf("global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\n"+
		"scrape_configs:\n  - job_name: weftd\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &promServer{api: "http://" + freeLoopbackAddr(t), exited: make(chan struct{}), log: filepath.Join(dir, "prometheus.log")}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+strings.TrimPrefix(p.api, "http://"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start prometheus: %v", err)
	}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-p.exited
		}
		logf.Close()
		if t.Failed() {
			out, _ := os.ReadFile(p.log)
			t.Logf("prometheus log:\n%s", out)
		}
	})
	return p
}

// freeLoopbackAddr returns a loopback address with a port free right now.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitFor polls the instant query q until it returns the single value want.
func (p *promServer) waitFor(t *testing.T, q string, want float64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for {
		vs, err := p.query(q)
		if err == nil && len(vs) == 1 && vs[0] == want {
			return
		}
		last = fmt.Sprintf("values %v, error %v", vs, err)
		select {
		case <-p.exited:
			t.Fatalf("prometheus exited while waiting for %s = %v", q, want)
		case <-time.After(100 * time.Millisecond): // polling interval
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not become %v within 60s; last: %s", q, want, last)
		}
	}
}

// query runs the instant query q through the HTTP API and returns the
// values of its samples.
func (p *promServer) query(q string) ([]float64, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(p.api + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"` // [unix time, "value"]
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("decode query response (status %d): %w", resp.StatusCode, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, r.Error)
	}
	var vs []float64
	for _, s := range r.Data.Result {
		str, ok := s.Value[1].(string)
		if !ok {
			return nil, fmt.Errorf("query %s: value %v is not a string", q, s.Value[1])
		}
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: %w", q, err)
		}
		vs = append(vs, v)
	}
	return vs, nil
}

package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/weftnet/weft/pkg/reconcile"
)

// allFamilies returns the names of every weft_ metric family, with each
// one made to have samples.
func allFamilies(t *testing.T) map[string]bool {
	t.Helper()
	dp := &fakeDatapath{}
	dp.set(sample, nil)
	m := newWith("dev", fakeSource{dp: dp})
	m.SetPeers(map[string]int{"vxlan-ebpf": 1})
	m.ObserveReconcile(reconcile.Result{})
	names := map[string]bool{}
	for line := range strings.Lines(scrape(t, m)) {
		if name, ok := strings.CutPrefix(line, "# TYPE weft_"); ok {
			names["weft_"+strings.Fields(name)[0]] = true
		}
	}
	return names
}

func TestEveryMetricDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range allFamilies(t) {
		if !strings.Contains(string(doc), "| `"+name+"` |") {
			t.Errorf("%s has no row in docs/metrics.md", name)
		}
	}
}

// dashboardExprs returns the PromQL of every panel and variable of the
// Grafana dashboard.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("deploy/grafana-dashboard.json: %v", err)
	}
	var exprs []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	if len(exprs) == 0 {
		t.Fatal("deploy/grafana-dashboard.json has no queries")
	}
	return exprs
}

func TestDashboardUsesExistingMetrics(t *testing.T) {
	families := allFamilies(t)
	used := map[string]bool{}
	name := regexp.MustCompile(`weft_[a-z_]+`)
	for _, e := range dashboardExprs(t) {
		for _, n := range name.FindAllString(e, -1) {
			n = strings.TrimSuffix(n, "_bucket")
			used[n] = true
			if !families[n] {
				t.Errorf("dashboard query %q uses %s, which weftd does not export", e, n)
			}
		}
	}
	for n := range families {
		if !used[n] {
			t.Errorf("%s is on no dashboard panel", n)
		}
	}
}

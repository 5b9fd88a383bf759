package e2e

import (
	"bufio"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/weftnet/weft/test/cluster"
)

// packetsMetric is weftd's per-backend packet counter (DESIGN.md 3).
const packetsMetric = "weft_datapath_packets_total"

var metricLine = regexp.MustCompile(`^` + packetsMetric + `\{([^}]*)\} (\S+)$`)

// expectCarried checks that node n's datapath counted traffic for backend
// (e.g. "vxlan-ebpf", "host-gw-ebpf"): proof that the datapath under test,
// not a fallback, carried the packets. Hook: until weftd serves
// weft_datapath_packets_total on /metrics this only logs; once it does, the
// assertion is live with no change here.
func expectCarried(t *testing.T, n *cluster.Node, backend string) {
	t.Helper()
	code, body, err := n.HTTPGet(t.Context(), "/metrics")
	if err != nil {
		t.Errorf("metrics of %s: %v", n.Name, err)
		return
	}
	if code != http.StatusOK || !strings.Contains(body, packetsMetric) {
		t.Logf("hook: %s serves no %s yet (status %d); not checking that %s carried the traffic", n.Name, packetsMetric, code, backend)
		return
	}
	var packets float64
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		m := metricLine.FindStringSubmatch(sc.Text())
		if m == nil || !strings.Contains(m[1], `backend="`+backend+`"`) {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Errorf("metrics of %s: %q: %v", n.Name, sc.Text(), err)
			return
		}
		packets += v
	}
	if packets == 0 {
		t.Errorf("%s: %s{backend=%q} is 0: that datapath carried none of the traffic", n.Name, packetsMetric, backend)
	}
}

package cluster

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

var sampleLine = regexp.MustCompile(`^(\w+)\{([^}]*)\} (\S+)$`)

// Metric sums the node's /metrics samples of name whose labels include every
// one of want (each as exposed, e.g. `backend="vxlan-ebpf"`).
func (n *Node) Metric(ctx context.Context, name string, want ...string) (float64, error) {
	code, body, err := n.HTTPGet(ctx, "/metrics")
	if err != nil {
		return 0, fmt.Errorf("metrics of %s: %w", n.Name, err)
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("metrics of %s: status %d", n.Name, code)
	}
	v, err := ParseMetric(body, name, want...)
	if err != nil {
		return 0, fmt.Errorf("metrics of %s: %w", n.Name, err)
	}
	return v, nil
}

// ParseMetric sums the samples of name in a Prometheus text exposition
// (body) whose labels include every one of want.
func ParseMetric(body, name string, want ...string) (float64, error) {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		m := sampleLine.FindStringSubmatch(sc.Text())
		if m == nil || m[1] != name {
			continue
		}
		labels := strings.Split(m[2], ",")
		if !all(want, func(w string) bool { return slices.Contains(labels, w) }) {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			return 0, fmt.Errorf("%q: %w", sc.Text(), err)
		}
		sum += v
	}
	return sum, sc.Err()
}

func all(list []string, f func(string) bool) bool {
	for _, e := range list {
		if !f(e) {
			return false
		}
	}
	return true
}

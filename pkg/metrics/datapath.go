package metrics

import (
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftnet/weft/pkg/datapath"
)

var (
	packetsDesc = prometheus.NewDesc("weft_datapath_packets_total",
		"Packets the datapath sent toward other nodes (tx) or received from them (rx).",
		[]string{"backend", "direction"}, nil)
	bytesDesc = prometheus.NewDesc("weft_datapath_bytes_total",
		"Bytes the datapath sent toward other nodes (tx) or received from them (rx).",
		[]string{"backend", "direction"}, nil)
	dropsDesc = prometheus.NewDesc("weft_datapath_drops_total",
		"Packets the datapath dropped, by reason.",
		[]string{"backend", "reason"}, nil)
	statsErrorsDesc = prometheus.NewDesc("weft_datapath_stats_errors_total",
		"Scrapes at which the datapath's counters could not be read.",
		nil, nil)
)

// datapathCollector turns the datapath's counters into metrics when scraped:
// the counters live in the kernel (BPF maps, device statistics), so there is
// nothing to poll in between.
type datapathCollector struct {
	datapath func() datapath.Datapath // returns nil until there is one
	errors   atomic.Uint64
}

// Describe implements prometheus.Collector.
func (c *datapathCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- packetsDesc
	ch <- bytesDesc
	ch <- dropsDesc
	ch <- statsErrorsDesc
}

// Collect implements prometheus.Collector.
func (c *datapathCollector) Collect(ch chan<- prometheus.Metric) {
	if dp := c.datapath(); dp != nil {
		c.collectCounters(ch, dp)
	}
	ch <- prometheus.MustNewConstMetric(statsErrorsDesc, prometheus.CounterValue, float64(c.errors.Load()))
}

// counterKey is one series: Reason set means a drop counter.
type counterKey struct{ backend, direction, reason string }

func (c *datapathCollector) collectCounters(ch chan<- prometheus.Metric, dp datapath.Datapath) {
	counters, err := dp.Stats()
	if err != nil {
		c.errors.Add(1)
		slog.Warn("read datapath counters for metrics", "datapath", dp.Name(), "err", err)
		return
	}
	// A datapath may report one series in several parts (e.g. one per
	// program); a registry rejects duplicate series, so sum them.
	sums := map[counterKey]datapath.Counter{}
	for _, ctr := range counters {
		k := counterKey{ctr.Backend, ctr.Direction, ctr.Reason}
		if k.reason != "" {
			k.direction = ""
		}
		s := sums[k]
		s.Packets += ctr.Packets
		s.Bytes += ctr.Bytes
		sums[k] = s
	}
	for k, s := range sums {
		if k.reason != "" {
			ch <- prometheus.MustNewConstMetric(dropsDesc, prometheus.CounterValue, float64(s.Packets), k.backend, k.reason)
			continue
		}
		ch <- prometheus.MustNewConstMetric(packetsDesc, prometheus.CounterValue, float64(s.Packets), k.backend, k.direction)
		ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.CounterValue, float64(s.Bytes), k.backend, k.direction)
	}
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/pkg/datapath/ebpf"
	"github.com/weftnet/weft/pkg/datapath/kernel"
)

var countersCommand = command{
	name:     "counters",
	synopsis: "[-o table|json] [--bpf-dir DIR] [--watch [--interval D] [--count N]]",
	summary:  "show the datapath's packet, byte and drop counters (the metrics' values), or with --watch their rates",
	jsonDoc: `  {"counters": [{"backend", "direction", "reason", "packets", "bytes"}]}
  With --watch, one JSON object per line and interval:
  {"time": RFC 3339, "interval_seconds", "counters": [{"backend", "direction", "reason",
   "packets", "bytes", "packets_per_second", "bytes_per_second"}]}
  backend, direction and reason are the label values of weft_datapath_packets_total and
  weft_datapath_drops_total (docs/metrics.md); direction is "" for drops, reason "" for traffic.
`,
	flags: func(fs *flag.FlagSet) runFunc {
		out := outputFlag(fs)
		bpfDir := bpfDirFlag(fs)
		watch := fs.Bool("watch", false, "print rates every --interval until interrupted")
		interval := fs.Duration("interval", time.Second, "with --watch: time between samples")
		count := fs.Int("count", 0, "with --watch: stop after this many samples (0: until Ctrl-C)")
		return func(ctx context.Context, stdout io.Writer, _ []string) error {
			if *interval <= 0 || *count < 0 {
				return usageError("--interval must be positive and --count not negative")
			}
			read := func() ([]counterJSON, error) { return readCounters(*bpfDir) }
			first, err := read()
			if err != nil {
				return err
			}
			if len(first) == 0 {
				return fmt.Errorf("no counters: nothing pinned in %s and no flannel.<VNI> device in this network namespace "+
					"(run weftctl in the node's netns with weftd's --bpf-dir)", *bpfDir)
			}
			if !*watch {
				return render(stdout, *out, countersReport{Counters: first})
			}
			return watchCounters(ctx, stdout, *out, read, first, *interval, *count)
		}
	},
}

type counterJSON struct {
	Backend   string `json:"backend"`
	Direction string `json:"direction"`
	Reason    string `json:"reason"`
	Packets   uint64 `json:"packets"`
	Bytes     uint64 `json:"bytes"`
}

type countersReport struct {
	Counters []counterJSON `json:"counters"`
}

func (r countersReport) writeTable(w io.Writer) error { return writeCounters(w, r.Counters) }

func writeCounters(w io.Writer, cs []counterJSON) error {
	rows := make([][]string, 0, len(cs))
	for _, c := range cs {
		rows = append(rows, []string{c.Backend, dash(c.Direction), dash(c.Reason),
			strconv.FormatUint(c.Packets, 10), strconv.FormatUint(c.Bytes, 10)})
	}
	return writeTable(w, []string{"BACKEND", "DIRECTION", "DROP REASON", "PACKETS", "BYTES"}, rows)
}

// readCounters returns the eBPF programs' counters (if pinned in bpfDir)
// and those of the kernel's flannel.<VNI> devices in this namespace: the
// values weftd's metrics export. None is no error.
func readCounters(bpfDir string) ([]counterJSON, error) {
	out := []counterJSON{}
	cs, err := ebpf.ReadCounters(bpfDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, c := range cs {
		out = append(out, counterJSON{Backend: c.Backend, Direction: c.Direction, Reason: c.Reason, Packets: c.Packets, Bytes: c.Bytes})
	}
	kc, err := kernelCounters()
	if err != nil {
		return nil, err
	}
	return append(out, kc...), nil
}

// kernelCounters reads the statistics of the vxlan devices named
// flannel.<VNI> (the kernel datapath, or the eBPF datapath's slow path),
// labelled as weftd's metrics label them.
func kernelCounters() ([]counterJSON, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	const backend = "vxlan-kernel"
	var out []counterJSON
	for _, l := range links {
		v, ok := l.(*netlink.Vxlan)
		if !ok || v.Name != kernel.DeviceName(v.VxlanId) || v.Statistics == nil {
			continue
		}
		s := v.Statistics
		out = append(out,
			counterJSON{Backend: backend, Direction: "rx", Packets: s.RxPackets, Bytes: s.RxBytes},
			counterJSON{Backend: backend, Direction: "tx", Packets: s.TxPackets, Bytes: s.TxBytes},
			counterJSON{Backend: backend, Reason: "device_rx_dropped", Packets: s.RxDropped},
			counterJSON{Backend: backend, Reason: "device_tx_dropped", Packets: s.TxDropped},
			counterJSON{Backend: backend, Reason: "device_rx_errors", Packets: s.RxErrors},
			counterJSON{Backend: backend, Reason: "device_tx_errors", Packets: s.TxErrors})
	}
	return out, nil
}

// rateJSON is a counter with its rates over the last interval.
type rateJSON struct {
	counterJSON
	PacketsPerSecond float64 `json:"packets_per_second"`
	BytesPerSecond   float64 `json:"bytes_per_second"`
}

// sampleReport is one --watch sample.
type sampleReport struct {
	Time            time.Time  `json:"time"`
	IntervalSeconds float64    `json:"interval_seconds"`
	Counters        []rateJSON `json:"counters"`
}

func (s sampleReport) writeTable(w io.Writer) error {
	fmt.Fprintf(w, "%s (rates over %.2fs)\n", s.Time.Format(time.RFC3339), s.IntervalSeconds)
	rows := make([][]string, 0, len(s.Counters))
	for _, c := range s.Counters {
		rows = append(rows, []string{c.Backend, dash(c.Direction), dash(c.Reason),
			strconv.FormatFloat(c.PacketsPerSecond, 'f', 1, 64), strconv.FormatFloat(c.BytesPerSecond, 'f', 1, 64),
			strconv.FormatUint(c.Packets, 10), strconv.FormatUint(c.Bytes, 10)})
	}
	if err := writeTable(w, []string{"BACKEND", "DIRECTION", "DROP REASON", "PACKETS/S", "BYTES/S", "PACKETS", "BYTES"}, rows); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w)
	return err
}

// counterKey identifies a counter across samples.
type counterKey struct{ backend, direction, reason string }

// rates computes each counter's rate since prev over elapsed. A counter
// that went down (the datapath was recreated) counts from zero.
func rates(prev, cur []counterJSON, elapsed time.Duration) []rateJSON {
	before := make(map[counterKey]counterJSON, len(prev))
	for _, c := range prev {
		before[counterKey{c.Backend, c.Direction, c.Reason}] = c
	}
	secs := elapsed.Seconds()
	out := make([]rateJSON, 0, len(cur))
	for _, c := range cur {
		b := before[counterKey{c.Backend, c.Direction, c.Reason}]
		if c.Packets < b.Packets || c.Bytes < b.Bytes {
			b = counterJSON{}
		}
		out = append(out, rateJSON{counterJSON: c,
			PacketsPerSecond: float64(c.Packets-b.Packets) / secs, BytesPerSecond: float64(c.Bytes-b.Bytes) / secs})
	}
	return out
}

// watchCounters prints a sample of rates every interval until ctx ends or
// count samples are out (count 0: no limit). JSON samples are one per line.
func watchCounters(ctx context.Context, w io.Writer, f formatFlag, read func() ([]counterJSON, error),
	prev []counterJSON, interval time.Duration, count int) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	last := time.Now()
	for n := 0; count == 0 || n < count; n++ {
		select {
		case <-ctx.Done():
			return nil // Ctrl-C ends a watch normally
		case <-t.C:
		}
		cur, err := read()
		if err != nil {
			return err
		}
		now := time.Now()
		s := sampleReport{Time: now, IntervalSeconds: now.Sub(last).Seconds(), Counters: rates(prev, cur, now.Sub(last))}
		if f == formatJSON {
			err = writeJSONLine(w, s)
		} else {
			err = s.writeTable(w)
		}
		if err != nil {
			return err
		}
		prev, last = cur, now
	}
	return nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/weftnet/weft/test/benchdoc"
)

// warmup is the length of the unrecorded TCP run that checks each setup
// before the measurements.
const warmup = time.Second

// results holds every value: [metric][config][repetition] -> the metric's
// columns, indexed as options.metrics and options.configs; nil for a
// configuration the metric does not run on.
type results [][][][]float64

// run brings up every configuration, measures them interleaved, runs the
// program benchmark, prints the report and writes it.
func run(ctx context.Context, opts options) (err error) {
	start := time.Now()
	host := benchdoc.Machine()
	setups := make([]*setup, 0, len(opts.configs))
	closeAll := func() error {
		var errs []error
		for _, s := range setups {
			errs = append(errs, s.close())
		}
		setups = setups[:0]
		return errors.Join(errs...)
	}
	defer func() { err = errors.Join(err, closeAll()) }()

	for _, cfg := range opts.configs {
		progress("bringing up %s", cfg.name)
		s, err := bringUp(ctx, cfg, opts)
		if err != nil {
			return err
		}
		setups = append(setups, s)
	}
	for _, s := range setups {
		if err := warmUp(ctx, s, opts.sched); err != nil {
			return err
		}
	}
	before, err := snapshotAll(ctx, setups)
	if err != nil {
		return err
	}
	res, err := measure(ctx, setups, opts)
	if err != nil {
		return err
	}
	after, err := snapshotAll(ctx, setups)
	if err != nil {
		return err
	}
	rep := report{
		opts: opts, host: host, start: start, results: res,
		mtus: make([]int, len(setups)), carried: make([]string, len(setups)),
	}
	for i, s := range setups {
		if err := s.verify(before[i], after[i]); err != nil {
			return err
		}
		rep.mtus[i] = s.mtu
		rep.carried[i] = s.evidence(delta(before[i], after[i]))
	}
	// The clusters' idle daemons would compete with the program benchmark.
	if err := closeAll(); err != nil {
		return err
	}
	rep.measured = time.Since(start)
	if opts.progBench {
		progress("running the BPF_PROG_TEST_RUN benchmark")
		if rep.progs, err = runProgBench(ctx, opts.repo, opts.benchtime); err != nil {
			return err
		}
	}
	rep.total = time.Since(start)
	section := rep.markdown()
	fmt.Print(section)
	if opts.out == "" {
		return nil
	}
	if err := benchdoc.WriteSection(opts.out, section); err != nil {
		return err
	}
	progress("wrote %s", opts.out)
	return nil
}

// warmUp runs an unrecorded TCP transfer and checks that the setup's
// claimed datapath carried it.
func warmUp(ctx context.Context, s *setup, sc sched) error {
	before, err := s.snapshot(ctx)
	if err != nil {
		return err
	}
	if _, err := tcpThroughput(ctx, s, warmup, sc); err != nil {
		return fmt.Errorf("%s: warm-up: %w", s.cfg.name, err)
	}
	after, err := s.snapshot(ctx)
	if err != nil {
		return err
	}
	if err := s.verify(before, after); err != nil {
		return err
	}
	progress("%s: pod MTU %d, verified: %s", s.cfg.name, s.mtu, s.evidence(delta(before, after)))
	return nil
}

// measure runs every metric on every setup it applies to, opts.reps times,
// one run at a time. Within a repetition each metric runs on its
// configurations back to back (so the ratios compare runs close in time);
// the first configuration rotates from one repetition to the next, so none
// always runs first.
func measure(ctx context.Context, setups []*setup, opts options) (results, error) {
	res := make(results, len(opts.metrics))
	for mi, m := range opts.metrics {
		res[mi] = make([][][]float64, len(setups))
		for _, ci := range m.runsOn(opts.configs) {
			res[mi][ci] = make([][]float64, opts.reps)
		}
	}
	for r := range opts.reps {
		for mi, m := range opts.metrics {
			on := m.runsOn(opts.configs)
			for k := range on {
				ci := on[(r+k)%len(on)]
				s := setups[ci]
				v, err := m.run(ctx, s, opts.duration, opts.sched)
				if err != nil {
					return nil, fmt.Errorf("repetition %d, %s, %s: %w", r+1, m.name, s.cfg.name, err)
				}
				res[mi][ci][r] = v
				progress("rep %d/%d %-24s %-14s %s", r+1, opts.reps, s.cfg.name, m.columns[0], formatValues(v))
			}
		}
	}
	return res, nil
}

// snapshotAll reads every setup's counters.
func snapshotAll(ctx context.Context, setups []*setup) ([]counters, error) {
	out := make([]counters, len(setups))
	for i, s := range setups {
		c, err := s.snapshot(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.cfg.name, err)
		}
		out[i] = c
	}
	return out, nil
}

// evidence names the counters that grew on the way client -> server: tx on
// n1, rx on n2 (weftd's vxlan-kernel series is flannel.1's statistics again,
// so it is left out), and how the probes went.
func (s *setup) evidence(d counters) string {
	kept := counters{}
	for k, v := range d {
		if (strings.HasPrefix(k, "n1 ") && strings.HasSuffix(k, " tx") || strings.HasPrefix(k, "n2 ") && strings.HasSuffix(k, " rx")) &&
			!strings.Contains(k, "vxlan-kernel") {
			kept[k] = v
		}
	}
	what := s.cfg.carrier() + " carried it"
	if !s.cfg.plain() {
		what = fmt.Sprintf("n1 sent on %s, n2 received on %s", kept.busiest("n1 ", " tx"), kept.busiest("n2 ", " rx"))
	}
	what += fmt.Sprintf(" (packets: %s)", kept)
	if s.prober != nil {
		what += "; " + s.prober.String()
	}
	return what
}

func formatValues(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, " ")
}

// progress reports on stderr; stdout carries only the report.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

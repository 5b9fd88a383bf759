// Command scale is weft's control-plane scale benchmark (`make bench-scale`,
// root): for each datapath and size N it starts a namespace cluster with a
// real etcd holding N synthetic leases and one weftd, and measures the time
// until weftd has programmed all N peers, the latency of single new leases,
// and weftd's peak RSS and CPU time. It prints a markdown section and writes
// it into docs/benchmarks.md under "## Control-plane scale". Everything it
// creates (namespaces, processes, bpffs mounts, temp dirs) is removed at the
// end, on error and on Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/test/benchdoc"
	"github.com/weftnet/weft/test/cluster"
)

func main() {
	sizes := flag.String("sizes", "1000,5000,10000", "comma-separated numbers of synthetic leases (peers)")
	datapaths := flag.String("datapaths", "kernel,ebpf", "comma-separated datapaths to measure: kernel, ebpf")
	newLeases := flag.Int("new-leases", 200, "new leases timed one at a time after the full set is programmed")
	pollAll := flag.Duration("poll", 5*time.Millisecond, "poll interval while waiting for the full set")
	pollOne := flag.Duration("poll-new", time.Millisecond, "poll interval while waiting for one new lease or churn event")
	timeout := flag.Duration("timeout", 2*time.Minute, "limit for programming the full set, and for each new lease and churn event")
	resync := flag.Duration("resync-interval", 30*time.Second, "weftd's --resync-interval (long, so periodic resyncs do not interfere)")
	churnPeers := flag.Int("churn-peers", 5000, "run the churn phase at this size, one of -sizes (0: no churn phase)")
	churnRate := flag.Int("churn-rate", 50, "lease events per second in the churn phase (0: no churn phase)")
	churnDuration := flag.Duration("churn-duration", 30*time.Second, "how long the churn phase writes events (0: no churn phase)")
	out := flag.String("out", "docs/benchmarks.md", "markdown file to write the section into (empty: print only)")
	weftd := flag.String("weftd", "", "weftd binary to measure (default: build ./cmd/weftd into a temp dir)")
	perfDir := flag.String("perf", "", "record weftd with perf into this directory, one file per run and phase (profiling, not for the published numbers)")
	verbose := flag.Bool("v", false, "log the harness's progress")
	flag.Parse()

	churn := churnConfig{peers: *churnPeers, rate: *churnRate, duration: *churnDuration}
	sizeList, err := parseSizes(*sizes)
	if err == nil {
		err = checkDatapaths(*datapaths)
	}
	if err == nil {
		err = churn.check(sizeList, *newLeases)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "scale: must run as root (it creates network namespaces and runs weftd): sudo make bench-scale")
		os.Exit(1)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	cfg := config{
		newLeases: *newLeases, pollAll: *pollAll, pollOne: *pollOne, timeout: *timeout,
		weftdArgs: []string{"--resync-interval", resync.String()},
		perfDir:   *perfDir,
		churn:     churn,
		log:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}
	// Ctrl-C cancels ctx; every step returns and undoes what it built.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, cfg, *weftd, strings.Split(*datapaths, ","), sizeList, *out); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

// bench runs every datapath at every size, prints the report and writes it.
func bench(ctx context.Context, cfg config, weftd string, datapaths []string, sizes []int, out string) (err error) {
	info := runInfo{command: command(), machine: benchdoc.Machine(), date: time.Now()}
	if weftd == "" {
		dir, err := os.MkdirTemp("", "weft-scale-")
		if err != nil {
			return fmt.Errorf("temp dir for weftd: %w", err)
		}
		defer func() { err = errors.Join(err, os.RemoveAll(dir)) }()
		if weftd, err = cluster.BuildCommand(ctx, dir, "weftd"); err != nil {
			return err
		}
	}
	cfg.weftd = weftd
	var results []result
	for _, n := range sizes {
		for _, dp := range datapaths {
			fmt.Fprintf(os.Stderr, "%s datapath, %d peers ...\n", dp, n)
			r, err := run(ctx, cfg, dp, n)
			if err != nil {
				return fmt.Errorf("%s datapath, %d peers: %w", dp, n, err)
			}
			fmt.Fprintf(os.Stderr, "  programmed in %s, new lease p99 %s, peak RSS %.1f MB\n",
				ms(r.Programmed), ms(percentile(r.NewLease, 99)), mb(r.End.PeakRSS))
			if c := r.Churn; c != nil {
				fmt.Fprintf(os.Stderr, "  churn: %d events at %.1f/s, p99 %s, weftd CPU %s per event\n",
					c.events(), c.Rate, ms(percentile(c.all(), 99)), us(c.perEvent()))
			}
			results = append(results, r)
		}
	}
	info.loadEnd = benchdoc.LoadAverage()
	section := report(results, cfg, info)
	fmt.Println(section)
	if out == "" {
		return nil
	}
	if err := benchdoc.WriteSection(out, section); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "written to %s\n", out)
	return nil
}

// command is how this run was started, as make runs it.
func command() string {
	if len(os.Args) < 2 {
		return "make bench-scale"
	}
	args := make([]string, len(os.Args)-1)
	for i, a := range os.Args[1:] {
		args[i] = a
		if a == "" || strings.ContainsAny(a, " '\"$") {
			args[i] = strconv.Quote(a)
		}
	}
	return "make bench-scale SCALE_ARGS='" + strings.Join(args, " ") + "'"
}

func parseSizes(s string) ([]int, error) {
	var sizes []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 16000 {
			return nil, fmt.Errorf("-sizes %q: use comma-separated lease counts from 1 to 16000", s)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

func checkDatapaths(s string) error {
	for _, dp := range strings.Split(s, ",") {
		if dp != "kernel" && dp != "ebpf" {
			return fmt.Errorf("-datapaths %q: use a comma-separated list of kernel and ebpf", s)
		}
	}
	return nil
}

// Command bench is weft's data-plane benchmark (`make bench`, root). It
// brings up one 2-node namespace cluster (test/cluster) per configuration
// (plain routes without overlay as the baseline, kernel vxlan, ebpf vxlan,
// kernel host-gw, ebpf host-gw, each also over IPv6: a dual-stack cluster
// measured between the pods' IPv6 addresses, against an IPv6 baseline; udp,
// wireguard, and "real node" variants of kernel and ebpf vxlan: node-to-pod
// probes every second, and a DNATed ClusterIP in front of the server), one
// pod per node, checks that each runs the datapath it
// claims, and measures pod-to-pod across the nodes: iperf3 TCP throughput,
// iperf3 UDP small-packet rate, sockperf UDP ping-pong latency and the TCP
// connection rate (its own crr client and server, subcommands of this
// program). Runs are interleaved (every configuration once per repetition,
// one measurement at a time); the report has medians and per-repetition
// ratios to the baseline (the real-node variants: to their plain
// configuration), the targets, and the programs' ns/packet from
// BPF_PROG_TEST_RUN (pkg/datapath/ebpf's BenchmarkProgram). It prints a
// markdown section and writes it into docs/benchmarks.md under
// "## Data plane". Everything it creates is removed at the end, on error and
// on Ctrl-C.
//
// `weft-bench crr-server` and `weft-bench crr-client` are the connection
// rate's server and client (see crr.go); the benchmark runs them in the pods.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

// options are the command line.
type options struct {
	bins      cluster.Binaries
	configs   []config
	metrics   []metric
	self      string
	reps      int
	duration  time.Duration
	sched     sched
	progBench bool
	benchtime string
	repo      string
	out       string
	command   string
	log       *slog.Logger
}

// subcommands run inside the pods, in place of the benchmark.
var subcommands = map[string]func(args []string) error{
	"crr-server": crrServerMain,
	"crr-client": crrClientMain,
}

func main() {
	if len(os.Args) > 1 {
		if sub, ok := subcommands[os.Args[1]]; ok {
			if err := sub(os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			return
		}
	}
	bin := flag.String("bin", "bin", "directory holding weftd and weft-cni (make build)")
	reps := flag.Int("reps", 5, "repetitions; each runs every configuration once per metric")
	duration := flag.Duration("duration", 5*time.Second, "length of each measured run")
	pin := flag.Bool("pin", true, "pin clients to CPU "+clientCPU+" and servers to CPU "+serverCPU+" (taskset)")
	nice := flag.Int("nice", -10, "nice value of clients and servers (0: unchanged)")
	progBench := flag.Bool("prog-bench", true, "also run pkg/datapath/ebpf's BPF_PROG_TEST_RUN benchmark")
	benchtime := flag.String("benchtime", "300000x", "go test -benchtime of the program benchmark")
	repo := flag.String("repo", ".", "weft module root (for the program benchmark)")
	out := flag.String("out", "docs/benchmarks.md", "markdown file to write the section into (empty: print only)")
	verbose := flag.Bool("v", false, "log the harness's progress")
	cfgSpec := flag.String("configs", "all", "configurations to measure, comma-separated: all, "+strings.Join(keysOf(configs, configKey), ", ")+
		" (the baseline, and the plain configuration of a real-node variant, are always added)")
	metricSpec := flag.String("metrics", "all", "metrics to measure, comma-separated: all, "+strings.Join(keysOf(metrics, metricKey), ", "))
	flag.Parse()

	if *reps < 1 || *duration < time.Second {
		fmt.Fprintln(os.Stderr, "bench: -reps must be at least 1 and -duration at least 1s")
		os.Exit(2)
	}
	cfgs, err := selectConfigs(*cfgSpec)
	if err == nil && len(flag.Args()) > 0 {
		err = fmt.Errorf("unexpected arguments %q (subcommands: crr-server, crr-client)", flag.Args())
	}
	var mets []metric
	if err == nil {
		mets, err = selectMetrics(*metricSpec)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: must run as root (it creates network namespaces and runs weftd): sudo make bench")
		os.Exit(1)
	}
	bins, err := cluster.FindBinaries(*bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: own path, for the crr subcommands:", err)
		os.Exit(1)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	opts := options{
		bins: bins, configs: cfgs, metrics: mets, self: self, reps: *reps, duration: *duration, sched: sched{pin: *pin, nice: *nice},
		progBench: *progBench, benchtime: *benchtime, repo: *repo, out: *out,
		command: commandLine(),
		log:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}
	// Ctrl-C cancels ctx: the running measurement is killed and every
	// deferred teardown runs.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "bench: interrupted; clusters and servers removed")
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// commandLine is how the report names the command: `make bench`, plus the
// flags when they are not the defaults.
func commandLine() string {
	var set []string
	flag.Visit(func(f *flag.Flag) {
		if f.Name != "bin" && f.Name != "v" {
			set = append(set, "-"+f.Name+"="+f.Value.String())
		}
	})
	if len(set) == 0 {
		return "make bench"
	}
	return "make bench BENCH_ARGS='" + strings.Join(set, " ") + "'"
}

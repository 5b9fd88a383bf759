package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// sectionHeading is the heading of this benchmark's part of
// docs/benchmarks.md; a re-run replaces only that section.
const sectionHeading = "## Control-plane scale"

// Targets from issue 13, on a 2-core machine.
const (
	// targetPeers is the size the programmed, CPU and RSS targets hold at.
	targetPeers = 5000
	// targetNewP99 holds at targetPeers and 10,000 peers.
	targetNewP99   = 10 * time.Millisecond
	targetRSS      = 52 << 20 // bytes: flanneld's peak RSS, rounded up
	targetChurnP99 = 20 * time.Millisecond
)

var (
	// targetNewP99Sizes are the sizes targetNewP99 holds at.
	targetNewP99Sizes = []int{targetPeers, 10000}
	// targetProgrammed is the limit per datapath at targetPeers.
	targetProgrammed = map[string]time.Duration{"ebpf": 500 * time.Millisecond, "kernel": 1500 * time.Millisecond}
)

// flanneld is the reference quoted from issue 13, not measured by this
// harness run: flanneld v0.28.9 (kernel vxlan) at targetPeers under the
// same harness, 2026-11. Its CPU total is the CPU target.
var flanneld = struct {
	programmed, newP50, newP99, cpu time.Duration
	peakRSSMB                       float64
}{8005 * time.Millisecond, 3900 * time.Microsecond, 12800 * time.Microsecond, 5300 * time.Millisecond, 51.6}

// runInfo is what the report says about the run as a whole.
type runInfo struct {
	command string
	// machine is benchdoc.Machine() at the start, with the load average
	// then; loadEnd is the load average at the end.
	machine, loadEnd string
	date             time.Time
}

// report renders the results as the markdown section.
func report(results []result, cfg config, info runInfo) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", sectionHeading)
	fmt.Fprintf(&b, "One weftd (vxlan backend) in a network namespace against a real etcd that holds N "+
		"synthetic leases (flannel's JSON, distinct PublicIP and VtepMAC each) before weftd starts. "+
		"The datapaths are interleaved: at each size each runs in turn, each in a fresh namespace cluster and etcd, "+
		"so a change in the machine's load hits both alike. "+
		"*Ready*: from starting weftd until its subnet file exists. *Programmed*: until all N peers are "+
		"in the datapath (kernel: each subnet routed via its .0 on flannel.1, which the kernel datapath "+
		"adds after the peer's fdb and neighbour entries; ebpf: each subnet in the pinned `weft_peers` "+
		"map, which weftd writes before the kernel slow path), polled every %v. *New lease*: %d leases "+
		"written one at a time after that (on ebpf once its kernel slow path routes all N too), each timed "+
		"from just before the etcd write (commit included) until it is in the datapath, polled every %v. "+
		"*Peak RSS* is weftd's VmHWM (end: after the new leases, before any churn); *RSS at end* splits its resident "+
		"set into anonymous memory (heap, stacks) and mapped files (its binary). *CPU* is weftd's "+
		"user+system time when all N were programmed and after the new leases. *Probe CPU* is the harness's own "+
		"CPU time while polling for the full set (it competes with weftd for the same cores). "+
		"The flanneld row is quoted from issue 13 (flanneld v0.28.9, kernel vxlan, under this harness, 2026-11), "+
		"not measured by this run.\n\n",
		cfg.pollAll, cfg.newLeases, cfg.pollOne)
	if c := cfg.churn; c.events() > 0 {
		fmt.Fprintf(&b, "*Churn*, at %d peers after the new leases: %d lease events per second for %v, "+
			"in turn added (a new subnet), changed (the same subnet with a new PublicIP and VtepMAC, or, every "+
			"other time, a new VtepMAC only) and removed (the key deleted), so the set keeps its size; changes "+
			"and removals take the least recently written lease. Each event is timed from just before its etcd "+
			"write (commit included, as for new leases) until the datapath reflects it (kernel: the route via "+
			".0 on flannel.1, the .0 neighbour entry with the VtepMAC and the VtepMAC's fdb entry to the "+
			"PublicIP, or route and neighbour entry gone; ebpf: the `weft_peers` entry with the PublicIP and "+
			"VtepMAC, or no entry), one poller checking every outstanding event each %v. *Events/s* is the "+
			"write rate achieved; *weftd CPU* is its CPU time from the first write until the last event was "+
			"reflected, *per event* that divided by the events; *Harness CPU* is the writer's and poller's.\n\n",
			c.peers, c.rate, c.duration, cfg.pollOne)
	}
	fmt.Fprintf(&b, "Command: `%s` (weftd runs with test/cluster's flags, `--ip-masq` among them, plus `%s`)  \n",
		info.command, strings.Join(cfg.weftdArgs, " "))
	fmt.Fprintf(&b, "Machine: %s, at end %s  \nDate: %s\n\n", info.machine, info.loadEnd, info.date.UTC().Format("2006-01-02 15:04 UTC"))

	b.WriteString("| Datapath | Peers | Ready | Programmed | New lease p50 | p99 | max | etcd put p50 | " +
		"Peak RSS at programmed / end | RSS at end anon + file | CPU to programmed | CPU total | Probe CPU |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %.1f / %.1f MB | %.1f + %.1f MB | %.2f s | %.2f s | %.2f s |\n",
			r.Datapath, r.N, ms(r.Ready), ms(r.Programmed),
			ms(percentile(r.NewLease, 50)), ms(percentile(r.NewLease, 99)), ms(percentile(r.NewLease, 100)),
			ms(r.Put), mb(r.AtProgrammed.PeakRSS), mb(r.End.PeakRSS), mb(r.End.RSSAnon), mb(r.End.RSSFile),
			r.AtProgrammed.CPU.Seconds(), r.End.CPU.Seconds(), r.ProbeCPU.Seconds())
	}
	fmt.Fprintf(&b, "| flanneld v0.28.9, kernel vxlan (from issue 13, not re-measured) | %d | – | %s | %s | %s | – | – | – / %.1f MB | – | – | %.2f s | – |\n",
		targetPeers, ms(flanneld.programmed), ms(flanneld.newP50), ms(flanneld.newP99), flanneld.peakRSSMB, flanneld.cpu.Seconds())
	churnTable(&b, results)
	for _, list := range []struct {
		title string
		lines []string
	}{{"ebpf / kernel", ratioLines(results)}, {"Targets (issue 13)", targetLines(results)}} {
		if len(list.lines) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s:\n\n", list.title)
		for _, l := range list.lines {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	return b.String()
}

// churnTable writes the churn phase's table, if a run has one.
func churnTable(b *strings.Builder, results []result) {
	if !slices.ContainsFunc(results, func(r result) bool { return r.Churn != nil }) {
		return
	}
	b.WriteString("\nChurn:\n\n| Datapath | Peers | Events added / changed / removed | Events/s | Latency p50 | p99 | max | " +
		"p99 added / changed / removed | etcd write p50 | weftd CPU | CPU per event | Peak RSS after | Harness CPU |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		c := r.Churn
		if c == nil {
			continue
		}
		all := c.all()
		fmt.Fprintf(b, "| %s | %d | %d / %d / %d | %.1f | %s | %s | %s | %s / %s / %s | %s | %.2f s | %s | %.1f MB | %.2f s |\n",
			r.Datapath, r.N, len(c.Latency[added]), len(c.Latency[changed]), len(c.Latency[removed]), c.Rate,
			ms(percentile(all, 50)), ms(percentile(all, 99)), ms(percentile(all, 100)),
			ms(percentile(c.Latency[added], 99)), ms(percentile(c.Latency[changed], 99)), ms(percentile(c.Latency[removed], 99)),
			ms(c.Put), c.CPU.Seconds(), us(c.perEvent()), mb(c.PeakRSS), c.HarnessCPU.Seconds())
	}
}

// ratioLines compares ebpf with kernel at each size both ran.
func ratioLines(results []result) []string {
	var out []string
	for _, e := range results {
		if e.Datapath != "ebpf" {
			continue
		}
		for _, k := range results {
			if k.Datapath != "kernel" || k.N != e.N {
				continue
			}
			out = append(out, fmt.Sprintf("%d peers: programmed %s, new lease p50 %s, p99 %s, peak RSS %s, CPU total %s",
				e.N, ratio(e.Programmed, k.Programmed),
				ratio(percentile(e.NewLease, 50), percentile(k.NewLease, 50)),
				ratio(percentile(e.NewLease, 99), percentile(k.NewLease, 99)),
				ratio(e.End.PeakRSS, k.End.PeakRSS), ratio(e.End.CPU, k.End.CPU)))
		}
	}
	return out
}

// targetLines checks issue 13's targets against the runs they apply to.
func targetLines(results []result) []string {
	var out []string
	for _, r := range results {
		if slices.Contains(targetNewP99Sizes, r.N) {
			p99 := percentile(r.NewLease, 99)
			out = append(out, verdict(p99 <= targetNewP99,
				"new lease p99 <= %v at %d peers (%s): %s", targetNewP99, r.N, r.Datapath, ms(p99)))
		}
		if r.N == targetPeers {
			limit := targetProgrammed[r.Datapath]
			out = append(out,
				verdict(r.Programmed <= limit, "programmed <= %v at %d peers (%s): %s", limit, r.N, r.Datapath, ms(r.Programmed)),
				verdict(r.End.CPU <= flanneld.cpu, "CPU total <= flanneld's %.1f s at %d peers (%s): %.2f s",
					flanneld.cpu.Seconds(), r.N, r.Datapath, r.End.CPU.Seconds()),
				verdict(r.End.PeakRSS <= targetRSS, "peak RSS <= %.0f MB at %d peers (%s): %.1f MB",
					mb(targetRSS), r.N, r.Datapath, mb(r.End.PeakRSS)))
		}
		if c := r.Churn; c != nil {
			p99 := percentile(c.all(), 99)
			out = append(out, verdict(p99 <= targetChurnP99,
				"churn p99 <= %v at %d peers (%s): %s", targetChurnP99, r.N, r.Datapath, ms(p99)))
		}
	}
	return out
}

func verdict(ok bool, format string, args ...any) string {
	v := "**missed**"
	if ok {
		v = "met"
	}
	return v + ": " + fmt.Sprintf(format, args...)
}

func ratio[T time.Duration | int64](a, b T) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", float64(a)/float64(b))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

func mb(bytes int64) float64 { return float64(bytes) / (1 << 20) }

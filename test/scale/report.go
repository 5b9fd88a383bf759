package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/weftnet/weft/test/benchdoc"
)

// sectionHeading is the heading of this benchmark's part of
// docs/benchmarks.md; a re-run replaces only that section.
const sectionHeading = "## Control-plane scale"

// Targets from the issue.
const (
	targetProgrammed = 2 * time.Second // ebpf, at targetPeers
	targetNewP99     = 100 * time.Millisecond
	targetRSS        = 80 << 20 // bytes, at targetPeers
	targetPeers      = 5000
)

// report renders the results as the markdown section.
func report(results []result, cfg config, command string, when time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", sectionHeading)
	fmt.Fprintf(&b, "One weftd (vxlan backend) in a network namespace against a real etcd that holds N "+
		"synthetic leases (flannel's JSON, distinct PublicIP and VtepMAC each) before weftd starts. "+
		"*Ready*: from starting weftd until its subnet file exists. *Programmed*: until all N peers are "+
		"in the datapath (kernel: each subnet routed via its .0 on flannel.1, which the kernel datapath "+
		"adds after the peer's fdb and neighbour entries; ebpf: each subnet in the pinned `weft_peers` "+
		"map, which weftd writes before the kernel slow path), polled every %v. *New lease*: %d leases "+
		"written one at a time after that (on ebpf once its kernel slow path routes all N too), each timed from the etcd write (commit included) until it is "+
		"in the datapath, polled every %v. *Peak RSS* is weftd's VmHWM; *RSS at end* splits its resident "+
		"set into anonymous memory (heap, stacks) and mapped files (its binary). *CPU* is weftd's "+
		"user+system time when all N were programmed and at the end. *Probe CPU* is the harness's own "+
		"CPU time while polling for the full set (it competes with weftd for the same cores).\n\n",
		cfg.pollAll, cfg.newLeases, cfg.pollOne)
	fmt.Fprintf(&b, "Command: `%s` (weftd runs with test/cluster's flags, `--ip-masq` among them, plus `%s`)  \n",
		command, strings.Join(cfg.weftdArgs, " "))
	fmt.Fprintf(&b, "Machine: %s  \nDate: %s\n\n", benchdoc.Machine(), when.UTC().Format("2006-01-02 15:04 UTC"))

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
	if ratios := ratioLines(results); len(ratios) > 0 {
		b.WriteString("\nebpf / kernel:\n\n")
		for _, l := range ratios {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	if targets := targetLines(results); len(targets) > 0 {
		b.WriteString("\nTargets:\n\n")
		for _, l := range targets {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	return b.String()
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

// targetLines checks the targets against the runs they apply to.
func targetLines(results []result) []string {
	var out []string
	for _, r := range results {
		if r.Datapath == "ebpf" && r.N == targetPeers {
			out = append(out, verdict(r.Programmed <= targetProgrammed,
				"%d peers programmed on ebpf in under %v: %s", targetPeers, targetProgrammed, ms(r.Programmed)))
		}
		p99 := percentile(r.NewLease, 99)
		out = append(out, verdict(p99 <= targetNewP99,
			"new lease p99 under %v (%s, %d peers): %s", targetNewP99, r.Datapath, r.N, ms(p99)))
		if r.N == targetPeers {
			out = append(out, verdict(r.End.PeakRSS <= targetRSS,
				"peak RSS under %.0f MB at %d peers (%s): %.1f MB", mb(targetRSS), targetPeers, r.Datapath, mb(r.End.PeakRSS)))
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

func mb(bytes int64) float64 { return float64(bytes) / (1 << 20) }

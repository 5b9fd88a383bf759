package main

import (
	"fmt"

	"github.com/weftnet/weft/test/cluster"
	"slices"
	"strings"
	"time"
)

// sectionHeading is this benchmark's part of docs/benchmarks.md; a re-run
// replaces only that section.
const sectionHeading = "## Data plane"

// target is one of the goals: the median over repetitions of
// metric(a)/metric(b) must be at least bound, or at most bound for a
// metric where lower is better. Metric and configurations are keys; a
// target whose metric or configurations were not measured is left out.
type target struct {
	metric, a, b string
	bound        float64
}

// targets are the goals for one run.
var targets = []target{
	{metric: "tcp", a: "ebpf-vxlan", b: "baseline", bound: 1.0},
	{metric: "tcp", a: "ebpf-vxlan", b: "kernel-vxlan", bound: 1.15},
	{metric: "udp", a: "ebpf-vxlan", b: "kernel-vxlan", bound: 1.3},
	{metric: "latency", a: "ebpf-vxlan", b: "kernel-vxlan", bound: 1.0},
	{metric: "tcp", a: "ebpf-host-gw", b: "kernel-host-gw", bound: 1.05},
	{metric: "tcp", a: "ebpf-udp", b: "baseline", bound: 0.9},
	{metric: "tcp", a: "ebpf-vxlan-probes", b: "ebpf-vxlan", bound: 0.97},
	{metric: "tcp", a: "ebpf-vxlan-clusterip", b: "ebpf-vxlan", bound: 0.97},
	// IPv6 (issue 11): the vxlan goals of IPv4, over the IPv6 underlay.
	{metric: "tcp", a: "ebpf-vxlan-v6", b: "baseline-v6", bound: 1.0},
	{metric: "tcp", a: "ebpf-vxlan-v6", b: "kernel-vxlan-v6", bound: 1.2},
	{metric: "udp", a: "ebpf-vxlan-v6", b: "kernel-vxlan-v6", bound: 1.3},
	{metric: "tcp", a: "ebpf-host-gw-v6", b: "kernel-host-gw-v6", bound: 1.05},
}

// report is everything the section shows.
type report struct {
	opts    options
	host    string
	start   time.Time
	results results
	// mtus and carried are per configuration: the pod MTU, and which
	// counters grew during the measurements.
	mtus    []int
	carried []string
	progs   []progResult
	// measured is the time until the clusters were gone, total until the
	// program benchmark had run too.
	measured, total time.Duration
}

// markdown renders the section.
func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", sectionHeading)
	fmt.Fprintf(&b, "Pod to pod across two nodes of a namespace cluster (test/cluster: node namespaces on a veth + bridge "+
		"underlay with MTU 1500, pods attached by weft-cni -> bridge + host-local), one cluster per configuration, "+
		"one client pod on n1 and one server pod on n2. *Baseline*: the same topology and CNI chain without weftd and "+
		"without overlay: hand-written subnet files (pod MTU %d) and a route `<other pod subnet> via <other node> dev eth0` "+
		"on each node; its nodes have no netfilter rules, while every weftd node runs test/cluster's `--ip-masq` "+
		"(flannel's iptables masquerade and FORWARD rules, so connection tracking is active on the nodes). "+
		"The kernel configurations are flannel's kernel state (flannel.1 / routes via eth0); the ebpf ones are weft's tc "+
		"programs, with the kernel's routes as their slow path.\n\n",
		baselineMTU)
	if slices.ContainsFunc(r.opts.configs, func(c config) bool { return c.family == cluster.IPv6 }) {
		fmt.Fprintf(&b, "*IPv6* rows run a dual-stack cluster (net-conf.json with `EnableIPv6` and `IPv6Network` %s; the "+
			"underlay has IPv6 addresses beside its IPv4 ones, fd00:100::/64) and measure between the pods' IPv6 "+
			"addresses: the kernel datapath's vxlan is flannel's flannel-v6.1 over the IPv6 underlay (pod MTU uplink - "+
			"70), host-gw routes via the other node's IPv6 address, and the IPv6 baseline has hand-written routes of "+
			"both families. Their ratios are to the IPv6 baseline. They have no latency row: Debian's sockperf (3.7) "+
			"has no IPv6.\n\n", cluster.IPv6PodNetwork)
	}
	fmt.Fprintf(&b, "*Real node* variants add what a Kubernetes node does around a serving pod. *probes*: n2 probes the "+
		"server pod's iperf3 port every %.0f s from its own namespace as a kubelet TCP readiness probe does (connect, close; "+
		"SO_LINGER 1 s like the kubelet's probe dialer), from bring-up to teardown, so also while the stream runs. "+
		"*probes + ClusterIP*: the same probes, and a Service address in front of the server: on n1, kube-proxy-like "+
		"DNAT rules in iptables' nat table (PREROUTING and OUTPUT: `-d %s -p tcp --dport %d -j DNAT --to-destination "+
		"<server pod>:%d`); the client connects to %s, which its pod reaches by its default route via the bridge. "+
		"The variants run the TCP throughput only, and their *ratio rN* is to the plain configuration of the same "+
		"datapath in the same repetition.\n\n",
		probeInterval.Seconds(), clusterIP, iperfPort, iperfPort, clusterIP)
	fmt.Fprintf(&b, "*TCP connection rate*: weft-bench's own client and server (`weft-bench crr-client` / `crr-server`, "+
		"like netperf's TCP_CRR, which Debian does not ship), one connection per transaction and one transaction at a "+
		"time: connect, send a %d-byte request, receive a %d-byte reply, the server closes, the client sees the close "+
		"and closes; any failed transaction fails the run. Every connection's handshake and teardown cross both nodes' "+
		"datapaths and connection tracking, so this is the per-connection cost. It runs on the baseline and on vxlan.\n\n",
		crrSize, crrSize)
	fmt.Fprintf(&b, "Each repetition runs every metric on each of its configurations once, one run at a time, %v each; "+
		"within a repetition a metric runs on its configurations back to back and the starting configuration rotates "+
		"(A B C, then B C A, ...), IPv4 and IPv6 configurations alike. *Ratio rN* is the configuration's value divided "+
		"by the baseline's value (of its family) of the same repetition; *median ratio* is the median of those (for latency above 1 is slower). ",
		r.opts.duration)
	if r.opts.sched.pin {
		fmt.Fprintf(&b, "Clients run on CPU %s, servers on CPU %s (taskset); with veths the sender's CPU also does the "+
			"receive processing in softirq up to the server's socket. ", clientCPU, serverCPU)
	}
	if r.opts.sched.nice != 0 {
		fmt.Fprintf(&b, "Clients and servers run at nice %d, so that other load on the machine takes less of their "+
			"CPU time (without it, single runs varied 2-3x here). ", r.opts.sched.nice)
	}
	b.WriteString("Before measuring, a 1 s TCP run checks each configuration: the datapath in n1's subnet file, n1's " +
		"route to the server pod, and that the counters of the claimed path grew on both nodes (not for the real-node " +
		"variants: which path probed or DNATed flows take is the datapath's and netfilter's decision; the counters are " +
		"shown below).\n\n")
	b.WriteString("*CPU s/GB*, *CPU µs/packet* and *CPU µs/transaction* are the user+system time of client and server " +
		"(iperf3's own report; crr: the client's getrusage and the server's /proc stat) per GB, packet or transaction; " +
		"it includes the softirq work done in their context, which with veths is most of both nodes' datapaths, so it " +
		"shows a configuration's cost even when other load on the machine limits the throughput. The veth underlay " +
		"carries 64 KB GSO packets unsegmented (also VXLAN-encapsulated ones), so TCP throughput is mostly copying plus " +
		"a per-64 KB cost; the UDP rate (one send() per 64-byte datagram) shows the per-packet cost.\n\n")
	fmt.Fprintf(&b, "Command: `%s` (as root)  \n", r.opts.command)
	fmt.Fprintf(&b, "Machine: %s  \n", r.host)
	fmt.Fprintf(&b, "Date: %s; the network measurements took %s, everything %s\n\n",
		r.start.UTC().Format("2006-01-02 15:04 UTC"), r.measured.Round(time.Second), r.total.Round(time.Second))

	for mi := range r.opts.metrics {
		r.metricTables(&b, mi)
	}
	b.WriteString("### Targets\n\nMedian over the repetitions of the per-repetition ratio (one run).\n\n")
	for _, t := range targets {
		if line, ok := r.targetLine(t); ok {
			fmt.Fprintf(&b, "- %s\n", line)
		}
	}
	b.WriteString("\n### What carried the traffic\n\nCounters that grew during the measurements, client node tx and server " +
		"node rx (ebpf: weftd's `weft_datapath_packets_total`; links: `ip -s link`; GSO packets count once); for the " +
		"real-node variants, the path each node used most, and the probes.\n\n")
	for i, c := range r.opts.configs {
		fmt.Fprintf(&b, "- %s: %s\n", c.name, r.carried[i])
	}
	if len(r.progs) > 0 {
		fmt.Fprintf(&b, "\n### Per-packet program cost (BPF_PROG_TEST_RUN)\n\n"+
			"Command: `go %s` (as root). *ns/packet* is the kernel's in-run time for one packet; *ns/op* the whole "+
			"syscall with skb setup; `baseline-empty` is a program that only returns TC_ACT_OK, i.e. the measuring "+
			"overhead inside ns/packet.\n\n", strings.Join(progBenchArgs(r.opts.benchtime), " "))
		b.WriteString("| Program path | ns/packet | ns/op |\n|---|---:|---:|\n")
		for _, p := range r.progs {
			fmt.Fprintf(&b, "| %s | %.1f | %.0f |\n", p.name, p.nsPerPacket, p.nsPerOp)
		}
	}
	return b.String()
}

// metricTables writes metric mi's tables: the plain configurations with
// ratios to the baseline, then the real-node variants (if any ran) with
// ratios to their plain configuration.
func (r *report) metricTables(b *strings.Builder, mi int) {
	m := r.opts.metrics[mi]
	var plain, variants []int
	for _, ci := range m.runsOn(r.opts.configs) {
		if r.opts.configs[ci].plain() {
			plain = append(plain, ci)
		} else {
			variants = append(variants, ci)
		}
	}
	r.table(b, m.name, mi, plain, false)
	if len(variants) > 0 {
		r.table(b, "Real node: "+m.name, mi, variants, true)
	}
}

// table writes one table of metric mi with the configurations rows: the
// medians of every column and the primary column's ratios to the
// baseline, or with variants to each row's plain configuration (named in
// a column of its own).
func (r *report) table(b *strings.Builder, title string, mi int, rows []int, variants bool) {
	m := r.opts.metrics[mi]
	fmt.Fprintf(b, "### %s\n\n| Configuration | Pod MTU |", title)
	if variants {
		b.WriteString(" Ratio to |")
	}
	for _, c := range m.columns {
		fmt.Fprintf(b, " %s (median) |", c)
	}
	reps := r.opts.reps
	for i := range reps {
		fmt.Fprintf(b, " r%d |", i+1)
	}
	b.WriteString(" median ratio |\n|---|---:|")
	if variants {
		b.WriteString("---|")
	}
	b.WriteString(strings.Repeat("---:|", len(m.columns)+reps+1))
	b.WriteString("\n")
	for _, ci := range rows {
		c := r.opts.configs[ci]
		ref := baselineOf(r.opts.configs, c)
		fmt.Fprintf(b, "| %s | %d |", c.name, r.mtus[ci])
		if variants {
			ref = plainOf(r.opts.configs, c)
			fmt.Fprintf(b, " %s |", r.opts.configs[ref].name)
		}
		for col := range m.columns {
			fmt.Fprintf(b, " %s |", num(median(r.column(mi, ci, col))))
		}
		ratios := r.ratios(mi, ci, ref)
		for _, x := range ratios {
			fmt.Fprintf(b, " %.2f |", x)
		}
		fmt.Fprintf(b, " **%.2f** |\n", median(ratios))
	}
	b.WriteString("\n")
}

// targetLine checks one target; false if its metric or configurations
// were not measured.
func (r *report) targetLine(t target) (string, bool) {
	mi := slices.IndexFunc(r.opts.metrics, func(m metric) bool { return m.key == t.metric })
	a, b := indexOf(r.opts.configs, t.a), indexOf(r.opts.configs, t.b)
	if mi < 0 || a < 0 || b < 0 || r.results[mi][a] == nil || r.results[mi][b] == nil {
		return "", false
	}
	m := r.opts.metrics[mi]
	ratios := r.ratios(mi, a, b)
	got := median(ratios)
	ok, op := got >= t.bound, ">="
	if m.lowerIsBetter {
		ok, op = got <= t.bound, "<="
	}
	verdict := "**MISS**"
	if ok {
		verdict = "PASS"
	}
	per := make([]string, len(ratios))
	for i, x := range ratios {
		per[i] = fmt.Sprintf("%.2f", x)
	}
	return fmt.Sprintf("%s: %s %s, %s / %s %s %.2fx: **%.2fx** (per repetition %s)",
		verdict, m.name, m.columns[0], r.opts.configs[a].name, r.opts.configs[b].name, op, t.bound, got,
		strings.Join(per, ", ")), true
}

// column is one column of metric mi for configuration ci, one value per
// repetition.
func (r *report) column(mi, ci, col int) []float64 {
	out := make([]float64, len(r.results[mi][ci]))
	for rep, v := range r.results[mi][ci] {
		out[rep] = v[col]
	}
	return out
}

// ratios divides configuration a's primary value by b's, per repetition.
func (r *report) ratios(mi, a, b int) []float64 {
	av, bv := r.column(mi, a, 0), r.column(mi, b, 0)
	out := make([]float64, len(av))
	for i := range av {
		out[i] = av[i] / bv[i]
	}
	return out
}

// median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// num shows three significant digits or so.
func num(x float64) string {
	switch {
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.2f", x)
	}
}

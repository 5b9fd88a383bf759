package main

import (
	"strings"
	"testing"
	"time"
)

// TestReportRealNode checks the tables' rows and ratio references: plain
// configurations against the baseline, real-node variants against their
// plain configuration of the same repetition; targets only where measured.
func TestReportRealNode(t *testing.T) {
	// configurations: baseline, ebpf vxlan, its probes variant; two
	// repetitions.
	res := results{
		{ // tcp: Gbit/s, CPU s/GB
			{{10, 1}, {20, 1}},
			{{12, 1}, {20, 1}},
			{{11.4, 1}, {19, 1}},
		},
		{ // crr: transactions/s, CPU µs/transaction; not on the variant
			{{4000, 50}, {5000, 50}},
			{{3000, 60}, {4000, 60}},
			nil,
		},
	}
	md := renderReport(t, "ebpf-vxlan-probes", "tcp,crr", 2, res, []int{1500, 1450, 1450}, []string{"a", "b", "c"},
		"| ebpf vxlan | 1450 | 16.0 | 1.00 | 1.20 | 1.00 | **1.10** |",
		"### Real node: TCP throughput (iperf3, 1 stream)",
		"| ebpf vxlan, real node: probes | 1450 | ebpf vxlan | 15.2 | 1.00 | 0.95 | 0.95 | **0.95** |",
		"| ebpf vxlan | 1450 | 3500 | 60.0 | 0.75 | 0.80 | **0.78** |",
		"**MISS**: TCP throughput (iperf3, 1 stream) Gbit/s, ebpf vxlan, real node: probes / ebpf vxlan >= 0.97x: **0.95x**",
		"- ebpf vxlan, real node: probes: c\n",
	)
	for _, unwanted := range []string{"### Real node: TCP connection rate", "kernel vxlan", "UDP packet rate", "ClusterIP /"} {
		if strings.Contains(md, unwanted) {
			t.Errorf("report has %q:\n%s", unwanted, md)
		}
	}
}

// renderReport renders the report of the configurations and metrics the
// specs select (as -configs and -metrics) with res, and fails t for every
// string of want it lacks.
func renderReport(t *testing.T, configSpec, metricSpec string, reps int, res results, mtus []int, carried []string, want ...string) string {
	t.Helper()
	cfgs, err := selectConfigs(configSpec)
	if err != nil {
		t.Fatal(err)
	}
	mets, err := selectMetrics(metricSpec)
	if err != nil {
		t.Fatal(err)
	}
	r := report{
		opts:    options{configs: cfgs, metrics: mets, reps: reps, duration: time.Second, command: "make bench"},
		results: res, mtus: mtus, carried: carried,
	}
	md := r.markdown()
	for _, w := range want {
		if !strings.Contains(md, w) {
			t.Errorf("report lacks %q:\n%s", w, md)
		}
	}
	return md
}

// TestReportIPv6 checks that selecting IPv6 configurations adds the IPv6
// baseline, that IPv6 rows divide by it and that the IPv6 targets are
// checked.
func TestReportIPv6(t *testing.T) {
	cfgs, err := selectConfigs("ebpf-vxlan-v6,kernel-vxlan-v6")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(keysOf(cfgs, configKey), ","); got != "baseline,baseline-v6,kernel-vxlan-v6,ebpf-vxlan-v6" {
		t.Fatalf("selected %s, want both baselines and the two IPv6 vxlan configurations", got)
	}
	res := results{{ // tcp, one repetition: baseline, baseline-v6, kernel v6, ebpf v6
		{{10, 1}}, {{8, 1}}, {{6, 1}}, {{8.8, 1}},
	}}
	renderReport(t, "ebpf-vxlan-v6,kernel-vxlan-v6", "tcp", 1, res, []int{1500, 1500, 1430, 1430}, []string{"a", "b", "c", "d"},
		"| baseline IPv6 (plain routes) | 1500 | 8.00 | 1.00 | 1.00 | **1.00** |",
		"| ebpf vxlan IPv6 | 1430 | 8.80 | 1.00 | 1.10 | **1.10** |",
		"PASS: TCP throughput (iperf3, 1 stream) Gbit/s, ebpf vxlan IPv6 / baseline IPv6 (plain routes) >= 1.00x: **1.10x**",
		"PASS: TCP throughput (iperf3, 1 stream) Gbit/s, ebpf vxlan IPv6 / kernel vxlan IPv6 >= 1.20x: **1.47x**",
		"*IPv6* rows run a dual-stack cluster",
	)
}

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
	cfgs, err := selectConfigs("ebpf-vxlan-probes")
	if err != nil {
		t.Fatal(err)
	}
	mets, err := selectMetrics("tcp,crr")
	if err != nil {
		t.Fatal(err)
	}
	// cfgs: baseline, ebpf vxlan, its probes variant; two repetitions.
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
	r := report{
		opts:    options{configs: cfgs, metrics: mets, reps: 2, duration: time.Second, command: "make bench"},
		results: res, mtus: []int{1500, 1450, 1450}, carried: []string{"a", "b", "c"},
	}
	md := r.markdown()
	for _, want := range []string{
		"| ebpf vxlan | 1450 | 16.0 | 1.00 | 1.20 | 1.00 | **1.10** |",
		"### Real node: TCP throughput (iperf3, 1 stream)",
		"| ebpf vxlan, real node: probes | 1450 | ebpf vxlan | 15.2 | 1.00 | 0.95 | 0.95 | **0.95** |",
		"| ebpf vxlan | 1450 | 3500 | 60.0 | 0.75 | 0.80 | **0.78** |",
		"**MISS**: TCP throughput (iperf3, 1 stream) Gbit/s, ebpf vxlan, real node: probes / ebpf vxlan >= 0.97x: **0.95x**",
		"- ebpf vxlan, real node: probes: c\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	for _, unwanted := range []string{"### Real node: TCP connection rate", "kernel vxlan", "UDP packet rate", "ClusterIP /"} {
		if strings.Contains(md, unwanted) {
			t.Errorf("report has %q:\n%s", unwanted, md)
		}
	}
}

package main

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestParseIperf(t *testing.T) {
	udp := `{"start":{},"end":{"sum":{"packets":595990,"lost_packets":9820,"sender":true},
		"sum_received":{"seconds":2.0,"bytes":37514880,"bits_per_second":1.5e8,"packets":595990,"lost_packets":9820,"sender":false},
		"cpu_utilization_percent":{"host_total":80.5,"host_user":2,"host_system":78.5,"remote_total":20,"remote_user":1,"remote_system":19}}}`
	r, err := parseIperf([]byte(udp))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.End.SumReceived; got.Packets != 595990 || got.LostPackets != 9820 || got.Seconds != 2 || got.BitsPerSecond != 1.5e8 {
		t.Errorf("sum_received = %+v", got)
	}
	if got, want := r.cpuSeconds(), (0.805+0.2)*2; math.Abs(got-want) > 1e-9 {
		t.Errorf("cpuSeconds = %v, want %v", got, want)
	}
	if _, err := parseIperf([]byte(`{"start":{},"end":{},"error":"the server is busy running a test. try again later"}`)); !errors.Is(err, errBusy) {
		t.Errorf("busy server: err = %v, want errBusy", err)
	}
	if _, err := parseIperf([]byte(`{"error":"unable to connect to server: No route to host"}`)); err == nil || errors.Is(err, errBusy) {
		t.Errorf("connect error: err = %v, want a non-busy error", err)
	}
	if _, err := parseIperf([]byte("iperf3: error")); err == nil {
		t.Error("non-JSON output parsed without error")
	}
}

// sockperfOut is sockperf 3.7's ping-pong --full-rtt report (colour codes
// included, as it prints them).
const sockperfOut = "sockperf: [Total Run] RunTime=2.008 sec; Warm up time=400 msec; SentMessages=57443; ReceivedMessages=57442\n" +
	"sockperf: \x1b[2;35m====> avg-rtt=32.994 (std-dev=40.005)\x1b[0m\n" +
	"sockperf: # dropped messages = 0; # duplicated messages = 0; # out-of-order messages = 0\n" +
	"sockperf: ---> <MAX> observation = 3852.464\n" +
	"sockperf: ---> percentile 99.999 = 3852.464\n" +
	"sockperf: ---> percentile 99.000 =  100.959\n" +
	"sockperf: ---> percentile 90.000 =   83.443\n" +
	"sockperf: ---> percentile 50.000 =   11.687\n" +
	"sockperf: ---> <MIN> observation =   10.976\n"

func TestParseSockperf(t *testing.T) {
	r, err := parseSockperf(sockperfOut)
	if err != nil {
		t.Fatal(err)
	}
	if want := (rtt{avg: 32.994, p50: 11.687, p99: 100.959}); r != want {
		t.Errorf("parseSockperf = %+v, want %+v", r, want)
	}
	noP99 := strings.ReplaceAll(sockperfOut, "percentile 99.000", "percentile 98.000")
	if _, err := parseSockperf(noP99); err == nil {
		t.Error("report without p99 parsed without error")
	}
	if _, err := parseSockperf("sockperf: ERROR: connect"); err == nil {
		t.Error("error output parsed without error")
	}
}

func TestParseProgBench(t *testing.T) {
	out := `goos: linux
cpu: AMD EPYC
BenchmarkProgram/baseline-empty-2         	  300000	      2677 ns/op	        71.67 ns/packet
BenchmarkProgram/encap-vxlan-2            	  300000	      3186 ns/op	       487.2 ns/packet
BenchmarkProgram/pass-uplink-to-node      	  300000	      2666 ns/op	       101.7 ns/packet
PASS
`
	got, err := parseProgBench(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []progResult{
		{name: "baseline-empty", nsPerPacket: 71.67, nsPerOp: 2677},
		{name: "encap-vxlan", nsPerPacket: 487.2, nsPerOp: 3186},
		{name: "pass-uplink-to-node", nsPerPacket: 101.7, nsPerOp: 2666},
	}
	if len(got) != len(want) {
		t.Fatalf("parseProgBench = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("result %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := parseProgBench("FAIL\tgithub.com/weftnet/weft/pkg/datapath/ebpf [build failed]\n"); err == nil {
		t.Error("output without results parsed without error")
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {nil, 0}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestSchedWrap(t *testing.T) {
	for _, c := range []struct {
		s    sched
		want string
	}{
		{sched{}, "iperf3 -s"},
		{sched{pin: true}, "taskset -c 1 iperf3 -s"},
		{sched{pin: true, nice: -10}, "nice -n -10 taskset -c 1 iperf3 -s"},
		{sched{nice: 5}, "nice -n 5 iperf3 -s"},
	} {
		name, args := c.s.wrap("1", "iperf3", []string{"-s"})
		if got := strings.Join(append([]string{name}, args...), " "); got != c.want {
			t.Errorf("%+v: %q, want %q", c.s, got, c.want)
		}
	}
}

func TestParseCRR(t *testing.T) {
	r, err := parseCRR(`{"transactions":21000,"seconds":5.0002,"cpu_seconds":1.25}` + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := (crrResult{Transactions: 21000, Seconds: 5.0002, CPUSeconds: 1.25}); r != want {
		t.Errorf("parseCRR = %+v, want %+v", r, want)
	}
	if _, err := parseCRR(`{"transactions":0,"seconds":5}`); err == nil {
		t.Error("a run without transactions parsed without error")
	}
	if _, err := parseCRR("crr-client: transaction 1 to 10.244.2.2:5202: connection refused\n"); err == nil {
		t.Error("an error message parsed without error")
	}
}

func TestSelectConfigs(t *testing.T) {
	for _, c := range []struct {
		spec string
		want []string
	}{
		{"all", keysOf(configs, configKey)},
		{"ebpf-vxlan", []string{"baseline", "ebpf-vxlan"}},
		// Variants bring their plain configuration; order is the report's.
		{"ebpf-vxlan-clusterip, kernel-vxlan-probes", []string{"baseline", "kernel-vxlan", "ebpf-vxlan", "kernel-vxlan-probes", "ebpf-vxlan-clusterip"}},
		{"baseline,baseline", []string{"baseline"}},
	} {
		got, err := selectConfigs(c.spec)
		if err != nil {
			t.Errorf("%q: %v", c.spec, err)
			continue
		}
		if keys := keysOf(got, configKey); !slices.Equal(keys, c.want) {
			t.Errorf("%q: %v, want %v", c.spec, keys, c.want)
		}
	}
	for _, spec := range []string{"ebpf", "", "all,nope"} {
		if _, err := selectConfigs(spec); err == nil {
			t.Errorf("%q accepted", spec)
		}
	}
}

func TestSelectMetrics(t *testing.T) {
	got, err := selectMetrics("crr,tcp")
	if err != nil {
		t.Fatal(err)
	}
	if keys := keysOf(got, metricKey); !slices.Equal(keys, []string{"tcp", "crr"}) {
		t.Errorf("metrics %v, want tcp, crr", keys)
	}
	if _, err := selectMetrics("tcp,rr"); err == nil {
		t.Error("unknown metric accepted")
	}
}

func TestBusiest(t *testing.T) {
	c := counters{
		"n1 eth0 tx": 1000, "n1 vxlan-ebpf tx": 990, "n1 flannel.1 tx": 10,
		"n2 eth0 rx": 1000, "n2 flannel.1 rx": 1000,
		"n3 eth0 rx": 7,
	}
	for _, k := range []struct{ node, dir, want string }{
		{"n1 ", " tx", "vxlan-ebpf"},
		{"n2 ", " rx", "flannel.1"},
		{"n3 ", " rx", "eth0"},
		{"n1 ", " rx", "nothing"},
	} {
		if got := c.busiest(k.node, k.dir); got != k.want {
			t.Errorf("busiest(%q, %q) = %q, want %q", k.node, k.dir, got, k.want)
		}
	}
}

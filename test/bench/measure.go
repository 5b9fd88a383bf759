package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/test/cluster"
	"github.com/weftnet/weft/test/procstat"
)

// metric is one kind of measurement. Each run yields values named by
// columns; the first is the primary one that ratios and targets use.
type metric struct {
	// key names the metric in -metrics.
	key     string
	name    string
	columns []string
	// lowerIsBetter marks latency: a ratio above 1 is then worse.
	lowerIsBetter bool
	// on selects the configurations the metric runs on.
	on  func(config) bool
	run func(ctx context.Context, s *setup, d time.Duration, sc sched) ([]float64, error)
}

// metrics are measured in this order within a repetition. The real-node
// variants run TCP throughput only; the connection rate compares the
// baseline with vxlan.
var metrics = []metric{
	{key: "tcp", name: "TCP throughput (iperf3, 1 stream)", columns: []string{"Gbit/s", "CPU s/GB"},
		on: func(config) bool { return true }, run: tcpThroughput},
	{key: "udp", name: "UDP packet rate (iperf3, 64-byte payload, unlimited rate)", columns: []string{"kpackets/s received", "CPU µs/packet"},
		on: config.plain, run: udpRate},
	{key: "latency", name: "UDP request/response latency (sockperf ping-pong, 64 bytes)", columns: []string{"RTT p50 µs", "RTT avg µs", "RTT p99 µs"},
		lowerIsBetter: true, on: hasSockperf, run: latency},
	{key: "crr", name: fmt.Sprintf("TCP connection rate (weft-bench crr, %d-byte request and reply, one connection each)", crrSize),
		columns: []string{"transactions/s", "CPU µs/transaction"},
		on:      func(c config) bool { return c.plain() && c.backend != "host-gw" }, run: connRate},
}

// hasSockperf reports whether the latency metric runs on c: on the plain
// IPv4 configurations, since Debian's sockperf (3.7) has no IPv6 (3.8
// added it).
func hasSockperf(c config) bool { return c.plain() && c.family == cluster.IPv4 }

// selectMetrics reads -metrics: "all" or metric keys separated by commas,
// kept in the order of metrics.
func selectMetrics(spec string) ([]metric, error) {
	picked, err := pickKeys(spec, keysOf(metrics, metricKey))
	if err != nil {
		return nil, fmt.Errorf("-metrics: %w", err)
	}
	return keep(metrics, picked), nil
}

// metricKey is m's key.
func metricKey(m metric) string { return m.key }

// runsOn is the indexes in cfgs of the configurations m runs on.
func (m metric) runsOn(cfgs []config) []int {
	var out []int
	for i, c := range cfgs {
		if m.on(c) {
			out = append(out, i)
		}
	}
	return out
}

// busyTimeout bounds retries while iperf3's server still finishes the
// previous test.
const busyTimeout = 10 * time.Second

// tcpThroughput is the TCP goodput the server received, and the CPU time
// client and server used per GB of it.
func tcpThroughput(ctx context.Context, s *setup, d time.Duration, sc sched) ([]float64, error) {
	r, err := iperf(ctx, s, d, sc)
	if err != nil {
		return nil, err
	}
	rcv := r.End.SumReceived
	if rcv.Bytes <= 0 {
		return nil, fmt.Errorf("iperf3 TCP: nothing received")
	}
	return []float64{rcv.BitsPerSecond / 1e9, r.cpuSeconds() / (float64(rcv.Bytes) / 1e9)}, nil
}

// udpRate is the rate of 64-byte datagrams the server received while the
// client sent as fast as it could. Each datagram is one send() syscall and
// one trip through both nodes' datapaths (no GSO), so this is the
// per-packet cost; what the server's socket dropped counts as not received.
func udpRate(ctx context.Context, s *setup, d time.Duration, sc sched) ([]float64, error) {
	r, err := iperf(ctx, s, d, sc, "-u", "-l", "64", "-b", "0")
	if err != nil {
		return nil, err
	}
	rcv := r.End.SumReceived
	if rcv.Seconds <= 0 {
		return nil, fmt.Errorf("iperf3 UDP: no receiver summary")
	}
	got := rcv.Packets - rcv.LostPackets
	if got <= 0 {
		return nil, fmt.Errorf("iperf3 UDP: no packet received")
	}
	return []float64{float64(got) / rcv.Seconds / 1e3, r.cpuSeconds() / float64(got) * 1e6}, nil
}

// connRate is the rate of crr-client's transactions against the server
// pod's crr-server, and the CPU time client and server used per
// transaction (like iperf3's, it includes the softirq work done in their
// context).
func connRate(ctx context.Context, s *setup, d time.Duration, sc sched) ([]float64, error) {
	srvBefore, err := procstat.CPU(s.servers.crrPID)
	if err != nil {
		return nil, err
	}
	out, err := client(ctx, s.client, sc, s.self, "crr-client", "-to", netip.AddrPortFrom(s.target, crrPort).String(), "-d", d.String())
	if err != nil {
		return nil, err
	}
	srvAfter, err := procstat.CPU(s.servers.crrPID)
	if err != nil {
		return nil, err
	}
	r, err := parseCRR(out)
	if err != nil {
		return nil, err
	}
	cpu := r.CPUSeconds + (srvAfter - srvBefore).Seconds()
	return []float64{float64(r.Transactions) / r.Seconds, cpu / float64(r.Transactions) * 1e6}, nil
}

// latency is sockperf's UDP ping-pong round trip: p50, average, p99.
func latency(ctx context.Context, s *setup, d time.Duration, sc sched) ([]float64, error) {
	out, err := client(ctx, s.client, sc, "sockperf", "ping-pong", "-i", s.server.IPOf(s.cfg.family).String(),
		"-p", strconv.Itoa(sockperfPort), "-m", "64", "-t", seconds(d), "--full-rtt")
	if err != nil {
		return nil, err
	}
	l, err := parseSockperf(out)
	if err != nil {
		return nil, err
	}
	return []float64{l.p50, l.avg, l.p99}, nil
}

// iperfResult is the part of iperf3's JSON output this program reads.
type iperfResult struct {
	End struct {
		SumReceived struct {
			Seconds       float64 `json:"seconds"`
			Bytes         int64   `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
			Packets       int64   `json:"packets"`
			LostPackets   int64   `json:"lost_packets"`
		} `json:"sum_received"`
		// CPU is the client's (host) and server's (remote) user+system
		// time in percent of the test's wall time.
		CPU struct {
			HostTotal   float64 `json:"host_total"`
			RemoteTotal float64 `json:"remote_total"`
		} `json:"cpu_utilization_percent"`
	} `json:"end"`
	Error string `json:"error"`
}

// cpuSeconds is the CPU time client and server used during the test. It
// includes the softirq work done on their CPU while they ran (with veths,
// most of both datapaths), as far as tick-based accounting sees it.
func (r iperfResult) cpuSeconds() float64 {
	cpu := r.End.CPU
	return (cpu.HostTotal + cpu.RemoteTotal) / 100 * r.End.SumReceived.Seconds
}

// errBusy is iperf3's server still busy with the previous test.
var errBusy = errors.New("iperf3 server busy")

// busyRetry is how long iperf waits before asking a busy server again.
const busyRetry = 100 * time.Millisecond

// iperf runs an iperf3 client against the server pod for d, retrying for
// up to busyTimeout while the server still finishes the previous test.
func iperf(ctx context.Context, s *setup, d time.Duration, sc sched, extra ...string) (iperfResult, error) {
	args := append([]string{"-c", s.target.String(), "-p", strconv.Itoa(iperfPort), "-t", seconds(d), "-J"}, extra...)
	deadline := time.Now().Add(busyTimeout)
	for {
		out, runErr := client(ctx, s.client, sc, "iperf3", args...)
		r, err := parseIperf([]byte(out))
		if errors.Is(err, errBusy) && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return r, ctx.Err()
			case <-time.After(busyRetry):
				continue
			}
		}
		if err != nil {
			return r, errors.Join(err, runErr)
		}
		return r, runErr
	}
}

// parseIperf reads iperf3 -J output; an error report becomes an error
// (errBusy when the server was busy).
func parseIperf(out []byte) (iperfResult, error) {
	var r iperfResult
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("iperf3 output is not JSON (%w): %.300s", err, out)
	}
	if strings.Contains(r.Error, "busy") {
		return r, fmt.Errorf("%w: %s", errBusy, r.Error)
	}
	if r.Error != "" {
		return r, fmt.Errorf("iperf3: %s", r.Error)
	}
	return r, nil
}

// rtt is sockperf's round-trip summary, in microseconds.
type rtt struct{ avg, p50, p99 float64 }

var (
	ansiEscape   = regexp.MustCompile(`\x1b\[[0-9;]*m`)
	sockperfAvg  = regexp.MustCompile(`avg-rtt=\s*([\d.]+)`)
	sockperfPerc = regexp.MustCompile(`percentile (\d+\.\d+) =\s*([\d.]+)`)
)

// parseSockperf reads a `sockperf ping-pong --full-rtt` report.
func parseSockperf(out string) (rtt, error) {
	out = ansiEscape.ReplaceAllString(out, "")
	m := sockperfAvg.FindStringSubmatch(out)
	if m == nil {
		return rtt{}, fmt.Errorf("sockperf: no avg-rtt in output: %.500s", out)
	}
	var r rtt
	r.avg, _ = strconv.ParseFloat(m[1], 64) // the pattern admits only numbers
	for _, p := range sockperfPerc.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(p[2], 64)
		switch p[1] {
		case "50.000":
			r.p50 = v
		case "99.000":
			r.p99 = v
		}
	}
	if r.p50 == 0 || r.p99 == 0 {
		return rtt{}, fmt.Errorf("sockperf: no 50th or 99th percentile in output: %.500s", out)
	}
	return r, nil
}

// client runs a measuring client in pod (on clientCPU, see sched) and
// returns its standard output (stderr is added to the error).
func client(ctx context.Context, pod *cluster.Pod, sc sched, name string, args ...string) (string, error) {
	name, args = sc.wrap(clientCPU, name, args)
	cmd := pod.NS.Command(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(cmd.Args, " "), pod.ID, err, stderr.String())
	}
	return string(out), nil
}

// seconds formats d as whole seconds for -t.
func seconds(d time.Duration) string { return strconv.Itoa(int(d.Round(time.Second) / time.Second)) }

package main

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 200; i++ {
		d = append(d, time.Duration(201-i)*time.Millisecond)
	}
	for q, want := range map[int]time.Duration{50: 100 * time.Millisecond, 99: 198 * time.Millisecond, 100: 200 * time.Millisecond} {
		if got := percentile(d, q); got != want {
			t.Errorf("p%d = %v, want %v", q, got, want)
		}
	}
	if got := percentile(nil, 99); got != 0 {
		t.Errorf("p99 of nothing = %v", got)
	}
}

func TestSynthPeersDistinct(t *testing.T) {
	if want := 1<<(subnetLen-podNetwork.Bits()) - 1; maxSynthPeers != want {
		t.Fatalf("maxSynthPeers %d, %s has %d subnets after the first", maxSynthPeers, podNetwork, want)
	}
	underlay := netip.MustParsePrefix("10.250.0.0/16")
	subnets, ips, macs := map[string]bool{}, map[string]bool{}, map[string]bool{}
	seen := func(i int, m map[string]bool, k string) {
		if m[k] {
			t.Fatalf("peer %d repeats %s", i, k)
		}
		m[k] = true
	}
	for i := range maxSynthPeers {
		p := synthPeer(i)
		if !podNetwork.Contains(p.Subnet.Addr()) || p.Subnet.Bits() != subnetLen || p.Subnet.Masked() != p.Subnet {
			t.Fatalf("peer %d: subnet %s not a /%d of %s", i, p.Subnet, subnetLen, podNetwork)
		}
		seen(i, subnets, p.Subnet.String())
		// A churn change's node IP and MAC (the i-th) are fresh too.
		for _, a := range []struct {
			ip  netip.Addr
			mac net.HardwareAddr
		}{{p.NodeIP, p.MAC}, {changedNodeIP(i), changedMAC(i)}} {
			if podNetwork.Contains(a.ip) || underlay.Contains(a.ip) || a.mac[0]&1 != 0 {
				t.Fatalf("peer %d: node IP %s inside the pod network or underlay, or multicast MAC %s", i, a.ip, a.mac)
			}
			seen(i, ips, a.ip.String())
			seen(i, macs, a.mac.String())
		}
	}
	v, err := synthPeer(0).value()
	if err != nil || !strings.Contains(v, `"BackendData":{"VNI":1,"VtepMAC":"02:5c:00:00:00:00"}`) {
		t.Fatalf("lease JSON %s, %v", v, err)
	}
}

func TestReport(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		d := make([]time.Duration, len(v))
		for i, x := range v {
			d[i] = time.Duration(x) * time.Millisecond
		}
		return d
	}
	kernel := result{Datapath: "kernel", N: 5000, Programmed: 900 * time.Millisecond, NewLease: ms(2, 4, 8),
		End: usage{PeakRSS: 50 << 20, CPU: 4 * time.Second}}
	ebpf := result{Datapath: "ebpf", N: 5000, Programmed: 600 * time.Millisecond, NewLease: ms(3, 5, 11),
		End: usage{PeakRSS: 60 << 20, CPU: 6 * time.Second},
		Churn: &churnResult{Latency: [numClasses][]time.Duration{ms(1, 2), ms(3, 4), ms(5, 25)}, Rate: 50,
			Put: time.Millisecond, CPU: 6 * time.Millisecond, PeakRSS: 70 << 20, HarnessCPU: 200 * time.Millisecond}}
	small := result{Datapath: "kernel", N: 1000, NewLease: ms(50)}
	cfg := config{newLeases: 3, pollAll: 5 * time.Millisecond, pollOne: time.Millisecond,
		churn: churnConfig{peers: 5000, rate: 50, duration: 30 * time.Second}}
	info := runInfo{command: "make bench-scale", machine: "2 CPUs, load average at start 0.50 0.40 0.30", loadEnd: "1.50 1.00 0.70",
		date: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	got := report([]result{small, kernel, ebpf}, cfg, info)
	for _, want := range []string{
		"## Control-plane scale\n\n",
		"The datapaths are interleaved",
		"*Churn*, at 5000 peers after the new leases: 50 lease events per second for 30s",
		"Machine: 2 CPUs, load average at start 0.50 0.40 0.30, at end 1.50 1.00 0.70  \nDate: 2026-11-30 12:00 UTC",
		"| flanneld v0.28.9, kernel vxlan (from issue 13, not re-measured) | 5000 | – | 8005.0 ms | 3.9 ms | 12.8 ms | – | – | – / 51.6 MB | – | – | 5.30 s | – |\n",
		"| ebpf | 5000 | 2 / 2 / 2 | 50.0 | 3.0 ms | 25.0 ms | 25.0 ms | 2.0 ms / 4.0 ms / 25.0 ms | 1.0 ms | 0.01 s | 1000 µs | 70.0 MB | 0.20 s |\n",
		"- 5000 peers: programmed 0.67x,",
		"- met: new lease p99 <= 10ms at 5000 peers (kernel): 8.0 ms\n" +
			"- met: programmed <= 1.5s at 5000 peers (kernel): 900.0 ms\n" +
			"- met: CPU total <= flanneld's 5.3 s at 5000 peers (kernel): 4.00 s\n" +
			"- met: peak RSS <= 52 MB at 5000 peers (kernel): 50.0 MB\n" +
			"- **missed**: new lease p99 <= 10ms at 5000 peers (ebpf): 11.0 ms\n" +
			"- **missed**: programmed <= 500ms at 5000 peers (ebpf): 600.0 ms\n" +
			"- **missed**: CPU total <= flanneld's 5.3 s at 5000 peers (ebpf): 6.00 s\n" +
			"- **missed**: peak RSS <= 52 MB at 5000 peers (ebpf): 60.0 MB\n" +
			"- **missed**: churn p99 <= 20ms at 5000 peers (ebpf): 25.0 ms\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "at 1000 peers") {
		t.Errorf("targets applied at 1000 peers:\n%s", got)
	}

	cfg.churn = churnConfig{}
	got = report([]result{small}, cfg, info)
	for _, absent := range []string{"*Churn*", "Churn:", "Targets", "ebpf / kernel"} {
		if strings.Contains(got, absent) {
			t.Errorf("report without churn or 5000 peers has %q:\n%s", absent, got)
		}
	}
}

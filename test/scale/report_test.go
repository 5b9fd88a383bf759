package main

import (
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
	subnets, ips, macs := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i := range 16000 {
		p := synthPeer(i)
		if !podNetwork.Contains(p.Subnet.Addr()) || p.Subnet.Bits() != subnetLen || p.Subnet.Masked() != p.Subnet {
			t.Fatalf("peer %d: subnet %s not a /%d of %s", i, p.Subnet, subnetLen, podNetwork)
		}
		if podNetwork.Contains(p.NodeIP) || p.MAC[0]&1 != 0 {
			t.Fatalf("peer %d: node IP %s inside the pod network or multicast MAC %s", i, p.NodeIP, p.MAC)
		}
		for m, k := range map[*map[string]bool]string{&subnets: p.Subnet.String(), &ips: p.NodeIP.String(), &macs: p.MAC.String()} {
			if (*m)[k] {
				t.Fatalf("peer %d repeats %s", i, k)
			}
			(*m)[k] = true
		}
	}
	v, err := synthPeer(0).value()
	if err != nil || !strings.Contains(v, `"BackendData":{"VNI":1,"VtepMAC":"02:5c:00:00:00:00"}`) {
		t.Fatalf("lease JSON %s, %v", v, err)
	}
}

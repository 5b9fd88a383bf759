package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestChurnGen replays the generated events on a model of etcd: the set
// keeps its size, every lease stays distinct, and the classes come in
// equal thirds.
func TestChurnGen(t *testing.T) {
	const n, events = 300, 3000
	live := make([]peer, n)
	model := make(map[netip.Prefix]peer, n)
	for i := range live {
		live[i] = synthPeer(i)
		model[live[i].Subnet] = live[i]
	}
	own := synthPeer(n + 5).Subnet // weftd's own, leased among the new ones
	gen := newChurnGen(live, &synthSeq{next: n, own: own})
	var count [numClasses]int
	movedIP := 0
	for i := range events {
		e, err := gen.next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		count[e.class]++
		old, present := model[e.peer.Subnet]
		switch e.class {
		case added:
			if present || e.peer.Subnet == own {
				t.Fatalf("event %d adds %s, already live or weftd's own", i, e.peer.Subnet)
			}
			model[e.peer.Subnet] = e.peer
		case changed:
			if !present || bytes.Equal(old.MAC, e.peer.MAC) {
				t.Fatalf("event %d changes %s (live %v) from MAC %s to %s", i, e.peer.Subnet, present, old.MAC, e.peer.MAC)
			}
			if old.NodeIP != e.peer.NodeIP {
				movedIP++
			}
			model[e.peer.Subnet] = e.peer
		case removed:
			if !present || !equalPeer(old, e.peer) {
				t.Fatalf("event %d removes %s: live %v as %v, event has %v", i, e.peer.Subnet, present, old, e.peer)
			}
			delete(model, e.peer.Subnet)
		}
		if size := len(model); size != n && size != n+1 || (i%3 == 2 && size != n) {
			t.Fatalf("after event %d (%s) the set has %d leases, want %d (or %d between an added and a removed)", i, e.class, size, n, n+1)
		}
		if len(gen.live) != len(model) {
			t.Fatalf("after event %d the generator holds %d leases, etcd %d", i, len(gen.live), len(model))
		}
		distinctLeases(t, model)
	}
	for c, got := range count {
		if got != events/3 {
			t.Errorf("%d %s events of %d, want a third", got, churnClass(c), events)
		}
	}
	if movedIP != events/6 {
		t.Errorf("%d of %d changes moved the PublicIP, want half", movedIP, events/3)
	}
}

func equalPeer(a, b peer) bool {
	return a.Subnet == b.Subnet && a.NodeIP == b.NodeIP && bytes.Equal(a.MAC, b.MAC)
}

// distinctLeases fails if two live leases share a node IP or VTEP MAC, or
// one is outside the synthetic ranges.
func distinctLeases(t *testing.T, model map[netip.Prefix]peer) {
	t.Helper()
	ips := make(map[netip.Addr]bool, len(model))
	macs := make(map[string]bool, len(model))
	for _, p := range model {
		if ips[p.NodeIP] || macs[p.MAC.String()] {
			t.Fatalf("lease %v repeats a node IP or MAC", p)
		}
		ips[p.NodeIP], macs[p.MAC.String()] = true, true
		if podNetwork.Contains(p.NodeIP) || p.MAC[0]&1 != 0 {
			t.Fatalf("lease %v: node IP in the pod network or multicast MAC", p)
		}
	}
}

// TestChurnGenRunsOut reports running out of subnets instead of repeating
// one, and never adds weftd's own.
func TestChurnGenRunsOut(t *testing.T) {
	gen := newChurnGen(nil, &synthSeq{next: maxSynthPeers - 2, own: synthPeer(maxSynthPeers - 2).Subnet})
	for i := range 3 {
		e, err := gen.next()
		if err != nil {
			t.Fatal(err)
		}
		if e.peer.Subnet != synthPeer(maxSynthPeers-1).Subnet {
			t.Fatalf("event %d (%s) on %s, want the last subnet, %s", i, e.class, e.peer.Subnet, synthPeer(maxSynthPeers-1).Subnet)
		}
	}
	if _, err := gen.next(); err == nil || !strings.Contains(err.Error(), "subnets") {
		t.Errorf("adding past the last subnet: %v", err)
	}
}

func TestChurnCheck(t *testing.T) {
	sizes := []int{1000, 5000, 10000}
	for _, c := range []struct {
		cfg  churnConfig
		want string // part of the error, "" for none
	}{
		{churnConfig{5000, 50, 30 * time.Second}, ""},
		{churnConfig{0, 50, 30 * time.Second}, ""},
		{churnConfig{100, 0, 30 * time.Second}, ""},
		{churnConfig{100, 50, 0}, ""},
		{churnConfig{100, 50, 30 * time.Second}, "not among -sizes"},
		{churnConfig{5000, -1, time.Second}, ">= 0"},
		{churnConfig{10000, 1000, 60 * time.Second}, "subnets"},
	} {
		err := c.cfg.check(sizes, 200)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
	if got := (churnConfig{5000, 50, 30 * time.Second}).events(); got != 1500 {
		t.Errorf("50/s for 30s is %d events", got)
	}
}

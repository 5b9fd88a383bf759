package main

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/weftnet/weft/test/procstat"
)

// churnResult is one churn phase's measurements.
type churnResult struct {
	// Latency holds each event's latency by class, from just before its
	// etcd write until the datapath reflects it.
	Latency [numClasses][]time.Duration
	// Rate is the write rate achieved, events per second.
	Rate float64
	// Put is the median time etcd took to commit one event.
	Put time.Duration
	// CPU is weftd's CPU time from the first write until the last event
	// was reflected.
	CPU time.Duration
	// PeakRSS is weftd's VmHWM after the phase.
	PeakRSS int64
	// HarnessCPU is the harness's own CPU time in the phase (writer and
	// poller).
	HarnessCPU time.Duration
}

// all is every event's latency.
func (c *churnResult) all() []time.Duration { return slices.Concat(c.Latency[:]...) }

// events is how many events were measured.
func (c *churnResult) events() int { return len(c.all()) }

// perEvent is weftd's CPU time per event.
func (c *churnResult) perEvent() time.Duration {
	if c.events() == 0 {
		return 0
	}
	return c.CPU / time.Duration(c.events())
}

// written is one churn event as the writer wrote it.
type written struct {
	e churnEvent
	// start is just before the etcd write, put the write's round trip.
	start time.Time
	put   time.Duration
}

// churn writes the churn phase's events at cfg.churn.rate while one poller
// checks every outstanding event each cfg.pollOne, and measures weftd (pid)
// over the phase.
func (s *session) churn(ctx context.Context, pid int) (*churnResult, error) {
	total := s.cfg.churn.events()
	before, err := readUsage(pid)
	if err != nil {
		return nil, err
	}
	harness := procstat.SelfCPU()
	s.cfg.log.Info("churn phase", "events", total, "per_second", s.cfg.churn.rate)

	ctx, cancel := context.WithCancel(ctx)
	out := make(chan written, total) // never blocks the writer
	werr := make(chan error, 1)
	go func() {
		werr <- s.writeChurn(ctx, newChurnGen(s.live, &s.seq), total, out)
		close(out)
	}()
	defer func() {
		cancel()
		for range out { // the writer has returned once out is closed
		}
	}()

	// Each event has its own deadline below; this one bounds a stuck
	// writer.
	deadline := time.Now().Add(s.cfg.churn.duration + s.cfg.timeout)
	res := &churnResult{}
	pending := make(map[netip.Prefix]written)
	var puts []time.Duration
	var first, last time.Time
	for open := true; open || len(pending) > 0; {
		for drained := false; open && !drained; {
			select {
			case w, ok := <-out:
				if !ok {
					open = false
					if err := <-werr; err != nil {
						return nil, err
					}
					break
				}
				subnet := w.e.peer.Subnet
				if prev, busy := pending[subnet]; busy {
					return nil, fmt.Errorf("churn: %s %s while its %s of %v ago is not reflected yet: more peers or a lower -churn-rate",
						w.e.class, subnet, prev.e.class, time.Since(prev.start).Round(time.Millisecond))
				}
				pending[subnet] = w
				puts = append(puts, w.put)
				if first.IsZero() {
					first = w.start
				}
				last = w.start
			default:
				drained = true
			}
		}
		for subnet, w := range pending {
			ok, err := s.p.reflects(w.e)
			if err != nil {
				return nil, err
			}
			switch {
			case ok:
				res.Latency[w.e.class] = append(res.Latency[w.e.class], time.Since(w.start))
				delete(pending, subnet)
			case time.Since(w.start) > s.cfg.timeout:
				return nil, fmt.Errorf("churn: %s %s not reflected in the datapath within %v", w.e.class, subnet, s.cfg.timeout)
			}
		}
		if open || len(pending) > 0 {
			if err := pollWait(ctx, s.node, deadline, s.cfg.pollOne); err != nil {
				return nil, fmt.Errorf("churn: %d events outstanding: %w", len(pending), err)
			}
		}
	}

	after, err := readUsage(pid)
	if err != nil {
		return nil, err
	}
	res.CPU, res.PeakRSS = after.CPU-before.CPU, after.PeakRSS
	res.HarnessCPU = procstat.SelfCPU() - harness
	res.Put = percentile(puts, 50)
	if n := len(puts); n > 1 {
		res.Rate = float64(n-1) / last.Sub(first).Seconds()
	}
	return res, nil
}

// writeChurn writes total events from gen, the k-th at k/rate after its
// start (at once when behind), and sends each to out after its write.
func (s *session) writeChurn(ctx context.Context, gen *churnGen, total int, out chan<- written) error {
	start := time.Now()
	for k := range total {
		if err := sleepUntil(ctx, start.Add(time.Duration(k)*time.Second/time.Duration(s.cfg.churn.rate))); err != nil {
			return err
		}
		e, err := gen.next()
		if err != nil {
			return err
		}
		t := time.Now()
		if err := s.w.write(ctx, e); err != nil {
			return fmt.Errorf("churn event %d: %w", k, err)
		}
		out <- written{e: e, start: t, put: time.Since(t)}
	}
	return nil
}

// sleepUntil returns at t, or with ctx's error.
func sleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

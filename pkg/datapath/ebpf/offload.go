package ebpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/weftnet/weft/pkg/conntrack"
)

// Pacing of the conntrack offload (see offload).
const (
	// offloadAfter is how long a flow must keep asking before weftd makes
	// its entry liberal: short connections (probes, one request per
	// connection) end on the stack without costing a netlink call.
	offloadAfter = 5 * time.Millisecond
	// batchInterval paces reading under load: requests are read in
	// batches at most this often (an idle reader blocks).
	batchInterval = 5 * time.Millisecond
	// markedRecently is how long a flow marked liberal is not marked again:
	// requests from before the mark may still be in the ring buffer.
	markedRecently = time.Second
	// forgetAfter is how long a flow that stopped asking is remembered
	// (short connections pile up here; it is also the pruning period).
	forgetAfter = time.Second
)

// offload starts (once) the goroutine that answers the programs' requests
// in weft_ct_requests: established TCP flows they would carry once
// conntrack tracks them liberally, as netfilter's flowtable offload does
// (conntrack.h). Until a flow is marked it stays on the stack.
func (d *Datapath) offload() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopOffload != nil {
		return nil
	}
	ct, err := conntrack.Open(d.ns)
	if err != nil {
		return fmt.Errorf("open conntrack netlink: %w", err)
	}
	rd, err := ringbuf.NewReader(d.objs.WeftCtRequests)
	if err != nil {
		ct.Close()
		return fmt.Errorf("read %s: %w", MapCTRequests, err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		markRequested(rd, ct, stop)
	}()
	d.stopOffload = func() {
		close(stop)
		rd.Close() // ends a pending read
		wg.Wait()
		ct.Close()
	}
	return nil
}

// markRequested marks the conntrack entries of flows that keep asking
// liberal, reading rd in batches, until stop is closed.
func markRequested(rd *ringbuf.Reader, ct *conntrack.Conn, stop <-chan struct{}) {
	c := newCandidates()
	var rec ringbuf.Record
	handle := func(now time.Time) {
		t, err := decodeFlow(rec.RawSample)
		if err != nil {
			slog.Warn("conntrack offload request", "err", err)
			return
		}
		if !c.due(t, now) {
			return
		}
		if err := ct.MarkLiberal(t); err != nil && !errors.Is(err, conntrack.ErrNotFound) {
			slog.Warn("mark conntrack entry liberal; the flow stays on the kernel path", "flow", t, "err", err)
		}
	}
	pace := time.NewTimer(0)
	defer pace.Stop()
	for {
		rd.SetDeadline(time.Time{})
		err := rd.ReadInto(&rec)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded): // left from the last batch
			continue
		case errors.Is(err, os.ErrClosed):
			return
		case err != nil:
			slog.Warn("conntrack offload requests: read failed; flows stay on the kernel path", "err", err)
			return
		}
		now := time.Now()
		handle(now)
		rd.SetDeadline(now) // the rest of the batch, without waiting
		for rd.ReadInto(&rec) == nil {
			handle(now)
		}
		if now.Sub(c.pruned) >= forgetAfter {
			c.prune(now)
		}
		pace.Reset(batchInterval)
		select {
		case <-stop:
			return
		case <-pace.C:
		}
	}
}

// candidates decides when a flow asking to be offloaded is marked.
type candidates struct {
	first  map[conntrack.Tuple]time.Time // first request of flows not marked
	marked map[conntrack.Tuple]time.Time // when flows were marked
	pruned time.Time                     // last prune
}

func newCandidates() *candidates {
	return &candidates{first: map[conntrack.Tuple]time.Time{}, marked: map[conntrack.Tuple]time.Time{}}
}

// due records a request for t at now and reports whether to mark t now:
// once it has asked for offloadAfter, and not again for markedRecently.
func (c *candidates) due(t conntrack.Tuple, now time.Time) bool {
	if at, ok := c.marked[t]; ok && now.Sub(at) < markedRecently {
		return false
	}
	first, ok := c.first[t]
	if !ok {
		c.first[t] = now
		return false
	}
	if now.Sub(first) < offloadAfter {
		return false
	}
	delete(c.first, t)
	c.marked[t] = now
	return true
}

// prune forgets flows that stopped asking and old marks.
func (c *candidates) prune(now time.Time) {
	c.pruned = now
	for t, at := range c.first {
		if now.Sub(at) >= forgetAfter {
			delete(c.first, t)
		}
	}
	for t, at := range c.marked {
		if now.Sub(at) >= markedRecently {
			delete(c.marked, t)
		}
	}
}

// decodeFlow turns a ring buffer record (struct flow) into a tuple. A
// record of another size is refused, not guessed at: during an upgrade the
// ring buffer (whose definition did not change) is shared with the earlier
// programs until the swap, and their struct flow may differ.
func decodeFlow(raw []byte) (conntrack.Tuple, error) {
	var f weftFlow
	if len(raw) != binary.Size(f) {
		return conntrack.Tuple{}, fmt.Errorf("record of %d bytes, want %d (written by another weft version's programs?)", len(raw), binary.Size(f))
	}
	if _, err := binary.Decode(raw, binary.NativeEndian, &f); err != nil {
		return conntrack.Tuple{}, fmt.Errorf("decode record of %d bytes: %w", len(raw), err)
	}
	return conntrack.Tuple{
		Src:   netip.AddrPortFrom(addrOf(f.Saddr), ntohs(f.Sport)),
		Dst:   netip.AddrPortFrom(addrOf(f.Daddr), ntohs(f.Dport)),
		Proto: f.Proto,
	}, nil
}

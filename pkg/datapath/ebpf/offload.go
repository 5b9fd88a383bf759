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

// markedRecently is how long a flow marked liberal is not marked again:
// the programs keep asking until the kernel shows the flag, and the ring
// buffer may still hold requests from before.
const markedRecently = time.Second

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
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		markRequested(rd, ct)
	}()
	d.stopOffload = func() {
		rd.Close() // ends the pending Read
		wg.Wait()
		ct.Close()
	}
	return nil
}

// markRequested marks each requested flow's conntrack entry liberal until
// rd is closed.
func markRequested(rd *ringbuf.Reader, ct *conntrack.Conn) {
	recent := make(map[conntrack.Tuple]time.Time)
	var rec ringbuf.Record
	for {
		if err := rd.ReadInto(&rec); err != nil {
			if !errors.Is(err, os.ErrClosed) {
				slog.Warn("conntrack offload requests: read failed; flows stay on the kernel path", "err", err)
			}
			return
		}
		t, err := decodeFlow(rec.RawSample)
		if err != nil {
			slog.Warn("conntrack offload request", "err", err)
			continue
		}
		now := time.Now()
		if at, ok := recent[t]; ok && now.Sub(at) < markedRecently {
			continue
		}
		if len(recent) > 4096 {
			for k, at := range recent {
				if now.Sub(at) >= markedRecently {
					delete(recent, k)
				}
			}
		}
		recent[t] = now
		if err := ct.MarkLiberal(t); err != nil && !errors.Is(err, conntrack.ErrNotFound) {
			slog.Warn("mark conntrack entry liberal; the flow stays on the kernel path", "flow", t, "err", err)
		}
	}
}

// decodeFlow turns a ring buffer record (struct flow) into a tuple.
func decodeFlow(raw []byte) (conntrack.Tuple, error) {
	var f weftFlow
	if _, err := binary.Decode(raw, binary.NativeEndian, &f); err != nil {
		return conntrack.Tuple{}, fmt.Errorf("decode record of %d bytes: %w", len(raw), err)
	}
	return conntrack.Tuple{
		Src:   netip.AddrPortFrom(addrOf(f.Saddr), ntohs(f.Sport)),
		Dst:   netip.AddrPortFrom(addrOf(f.Daddr), ntohs(f.Dport)),
		Proto: f.Proto,
	}, nil
}

package ebpf

// Map upgrades: a weft whose map definitions differ from the pinned ones
// fills new maps while the earlier programs keep forwarding on the pinned
// ones, then swaps every program at once and only then replaces the pins
// (see loadPinned, Datapath.swapIn).

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
)

// stagedPin is a change to the pin directory that waits until the programs
// run on this load's maps: pin m as name in place of an earlier weft's pin
// (or of none), or, m nil, remove the pin of a map this weft no longer has.
type stagedPin struct {
	name string
	m    *ebpf.Map
	// why is for the log: how the pinned map's definition differs, "new
	// map" or "no longer used".
	why string
}

// describe lists staged as "name (why); ...".
func describe(staged []stagedPin) string {
	out := make([]string, len(staged))
	for i, s := range staged {
		out[i] = s.name + " (" + s.why + ")"
	}
	return strings.Join(out, "; ")
}

// swapIn attaches the programs (attachAll). While an upgrade has staged
// maps (d.staged) it does so only once they are filled, the node config and
// endpoints at Setup and the peers and nodes by a Sync: until then the
// earlier programs keep forwarding on their complete pinned maps, and a
// pod's veth that appears meanwhile waits too. Once filled, it swaps every
// program and then commits the staged pins. Caller holds d.mu, in d.ns.
func (d *Datapath) swapIn(filled bool) error {
	if len(d.staged) > 0 && !filled {
		return nil
	}
	err := d.attachAll()
	if len(d.staged) == 0 {
		return err
	}
	// Commit even if some attachment failed: the programs not swapped
	// keep their maps without the pins, and the next process adopts the
	// filled new maps instead of starting over.
	if cerr := commitPins(d.opts.BPFDir, d.staged); cerr != nil {
		return errors.Join(err, cerr)
	}
	slog.Info("upgraded pinned maps: the programs run on the new maps, pinned in place of the old",
		"bpf_dir", d.opts.BPFDir, "maps", describe(d.staged))
	d.staged = nil
	return err
}

// commitPins makes the pins in dir what staged says. A pin is replaced
// atomically (pinned under a temporary name, renamed over the old), so
// weft-cni and weftctl always find one. A commit interrupted half way is
// redone by the next process: it stages the maps still pinned old.
func commitPins(dir string, staged []stagedPin) error {
	for _, s := range staged {
		path := filepath.Join(dir, s.name)
		if s.m == nil {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove pin of unused map: %w", err)
			}
			continue
		}
		// No map is named so (bpffs refuses dots), and a leftover is
		// named weft_*: Cleanup or the next commit removes it.
		tmp := path + "-new"
		if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove leftover pin: %w", err)
		}
		if err := s.m.Pin(tmp); err != nil {
			return fmt.Errorf("pin new map %s: %w", s.name, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("replace pinned map %s: %w", s.name, err)
		}
	}
	return nil
}

// counterLayout is how a weft version laid out a counters map: blocks (one
// per family, IPv4's first) of size indexes each.
type counterLayout struct {
	name         string
	maxEntries   uint32
	blocks, size int
}

// counterLayouts are the earlier layouts of the counters maps (per-CPU
// arrays of struct traffic) whose counts carry over into this version's:
// index i of block b goes to b's block, at i. The rule for every change of
// a counters map's definition (its slots per block, FAMILY_MAX, its value):
// add the layout it replaces here, so that an upgrade keeps the counts; a
// value that changes meaning needs a new index instead.
var counterLayouts = []counterLayout{
	{MapTraffic, 6, 1, 6}, // before IPv6 (b1590d9): IPv4's counters only
	{MapDrops, 8, 1, 8},
	{MapTraffic, 14, 2, 7}, // issue 11: a block of COUNTER_MAX per family
	{MapDrops, 16, 2, 8},   // and of DROP_MAX
}

// carryCounters copies the counts of old, the counters map name of an
// earlier layout, into m, its replacement (a block of
// m.MaxEntries()/FAMILY_MAX slots per family), before any program counts
// there. Counts of an unknown layout start from zero: that is logged, as
// is a failure, which costs counts but not the upgrade.
func carryCounters(name string, old, m *ebpf.Map) {
	if old == nil || (name != MapTraffic && name != MapDrops) {
		return
	}
	for _, l := range counterLayouts {
		if l.name != name || l.maxEntries != old.MaxEntries() || old.Type() != ebpf.PerCPUArray ||
			old.ValueSize() != m.ValueSize() {
			continue
		}
		if err := copyCounters(old, m, l); err != nil {
			slog.Warn("counters of the earlier map not carried over", "map", name, "err", err)
			return
		}
		slog.Info("carried counters over from the earlier map", "map", name,
			"layout", fmt.Sprintf("%d x %d", l.blocks, l.size))
		return
	}
	slog.Warn("counters of the earlier map start from zero: its layout is unknown", "map", name,
		"type", old.Type(), "max_entries", old.MaxEntries(), "value_size", old.ValueSize())
}

// copyCounters copies old, laid out as l, into m block by block.
func copyCounters(old, m *ebpf.Map, l counterLayout) error {
	values, err := dump[uint32, []weftTraffic](old)
	if err != nil {
		return err
	}
	slots := int(m.MaxEntries()) / int(weftFamilyFAMILY_MAX)
	for b := range min(l.blocks, int(weftFamilyFAMILY_MAX)) {
		for i := range min(l.size, slots) {
			v, ok := values[uint32(b*l.size+i)]
			if !ok {
				continue
			}
			if err := m.Put(uint32(b*slots+i), v); err != nil {
				return fmt.Errorf("write map %s: %w", m, err)
			}
		}
	}
	return nil
}

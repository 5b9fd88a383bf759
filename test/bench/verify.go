package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/test/cluster"
)

// counters are packet counters of both nodes, keyed "<node> <what> <dir>":
// "n1 vxlan-ebpf tx" (weftd's weft_datapath_packets_total, summed over its
// other labels) or "n1 flannel.1 tx" (link statistics).
type counters map[string]uint64

// packetsLine is one series of weft_datapath_packets_total, and label one
// of its labels.
var (
	packetsLine = regexp.MustCompile(`^weft_datapath_packets_total\{([^}]*)\} (\S+)$`)
	label       = regexp.MustCompile(`(\w+)="([^"]*)"`)
)

// snapshot reads the counters of both nodes: the links' statistics and,
// where weftd runs, its datapath metrics.
func (s *setup) snapshot(ctx context.Context) (counters, error) {
	out := counters{}
	for _, n := range s.c.Nodes {
		if err := linkCounters(n, out); err != nil {
			return nil, err
		}
		if s.cfg.backend == "" {
			continue
		}
		code, body, err := n.HTTPGet(ctx, "/metrics")
		if err != nil {
			return nil, err
		}
		if code != http.StatusOK {
			return nil, fmt.Errorf("GET /metrics on %s: status %d", n.Name, code)
		}
		sc := bufio.NewScanner(strings.NewReader(body))
		for sc.Scan() {
			m := packetsLine.FindStringSubmatch(sc.Text())
			if m == nil {
				continue
			}
			v, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				return nil, fmt.Errorf("metrics of %s: %q: %w", n.Name, sc.Text(), err)
			}
			labels := map[string]string{}
			for _, l := range label.FindAllStringSubmatch(m[1], -1) {
				labels[l[1]] = l[2]
			}
			// Series that differ in other labels (e.g. the family) add up.
			out[n.Name+" "+labels["backend"]+" "+labels["direction"]] += uint64(v)
		}
	}
	return out, nil
}

// linkNames are the links whose counters a snapshot reads, if they exist:
// the uplink and the backends' kernel devices.
var linkNames = []string{"eth0",
	cluster.BackendDevice("vxlan", cluster.IPv4), cluster.BackendDevice("vxlan", cluster.IPv6),
	cluster.BackendDevice("udp", cluster.IPv4), cluster.BackendDevice("wireguard", cluster.IPv4)}

// linkCounters adds the packet counters of n's eth0 and of the backends'
// devices that exist (flannel.1, flannel-v6.1, flannel0, flannel-wg) to
// out.
func linkCounters(n *cluster.Node, out counters) error {
	h, err := n.NS.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	for _, name := range linkNames {
		l, err := h.LinkByName(name)
		if _, missing := err.(netlink.LinkNotFoundError); missing {
			continue
		}
		if err != nil {
			return fmt.Errorf("link %s on %s: %w", name, n.Name, err)
		}
		if st := l.Attrs().Statistics; st != nil {
			out[n.Name+" "+name+" tx"] = st.TxPackets
			out[n.Name+" "+name+" rx"] = st.RxPackets
		}
	}
	return nil
}

// carrier is the counter pair that proves a configuration carried the
// traffic client -> server: tx on n1 and rx on n2.
func (c config) carrier() string {
	if c.datapath == "ebpf" {
		return cluster.EBPFCarrier(c.backend, c.family)
	}
	return c.device()
}

// device is the kernel device the configuration's kernel path sends pod
// traffic to other nodes through.
func (c config) device() string { return cluster.BackendDevice(c.backend, c.family) }

// verify checks that the setup runs what its config claims: the datapath
// in the subnet file, the kernel route from n1 to the server pod, and that
// the carrier's counters grew between before and after on both nodes. For
// a real-node variant the counters are not checked: which path probed or
// DNATed flows take is up to the datapath and netfilter, and the report
// shows what carried them.
func (s *setup) verify(before, after counters) error {
	n1 := s.c.Nodes[0]
	dp, err := n1.Datapath()
	if err != nil {
		return err
	}
	if want := s.cfg.datapath; want != "" && dp != want {
		return fmt.Errorf("%s: n1's subnet file announces datapath %q", s.cfg.name, dp)
	}
	if err := s.checkRoute(); err != nil {
		return fmt.Errorf("%s: %w", s.cfg.name, err)
	}
	if !s.cfg.plain() {
		return nil
	}
	d := delta(before, after)
	car := s.cfg.carrier()
	for _, k := range []string{"n1 " + car + " tx", "n2 " + car + " rx"} {
		if d[k] == 0 {
			return fmt.Errorf("%s: counter %q did not grow while traffic ran: the claimed datapath did not carry it (all changes: %s)",
				s.cfg.name, k, d)
		}
	}
	return nil
}

// checkRoute requires n1's kernel route to the server pod to be the
// configuration's (the ebpf datapath keeps the kernel's routes as its slow
// path): through the backend's device (flannel.1, flannel0, flannel-wg),
// via n2's underlay address for host-gw and the baseline.
func (s *setup) checkRoute() error {
	h, err := s.c.Nodes[0].NS.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	server := s.server.IPOf(s.cfg.family)
	routes, err := h.RouteGet(server.AsSlice())
	if err != nil || len(routes) == 0 {
		return fmt.Errorf("route from n1 to %s: %v", server, err)
	}
	l, err := h.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return fmt.Errorf("route from n1 to %s: %w", server, err)
	}
	dev, gw := l.Attrs().Name, routes[0].Gw
	want, got := s.cfg.device(), dev
	if want == "eth0" {
		want = "eth0 via " + s.c.Nodes[1].IPOf(s.cfg.family).String()
		got = fmt.Sprintf("%s via %s", dev, gw)
	}
	if got != want {
		return fmt.Errorf("n1 routes %s over %s, want %s", server, got, want)
	}
	return nil
}

// delta is after - before for every counter that changed.
func delta(before, after counters) counters {
	d := counters{}
	for k, v := range after {
		if v > before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

// busiest is the path whose counter "<node><path><dir>" grew most (node
// "n1 ", dir " tx"). eth0 carries every path's packets once more,
// encapsulated or not, so it counts only when nothing else grew.
func (c counters) busiest(node, dir string) string {
	best, most := "", uint64(0)
	for k, v := range c {
		rest, ok := strings.CutPrefix(k, node)
		if !ok {
			continue
		}
		if path, ok := strings.CutSuffix(rest, dir); ok && path != "eth0" && v > most {
			best, most = path, v
		}
	}
	switch {
	case best != "":
		return best
	case c[node+"eth0"+dir] > 0:
		return "eth0"
	default:
		return "nothing"
	}
}

// String lists the counters sorted by key.

// String lists the counters sorted by key.
func (c counters) String() string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s +%d", k, c[k])
	}
	return strings.Join(parts, ", ")
}

package ebpf

// weftd's side of the endpoint maps (weft_endpoints, weft_pods): derived,
// level-triggered, from weft-cni's endpoint records (pkg/endpoint) of the
// pods whose host veth is on the bridge. weft-cni's RegisterEndpoint is
// only the fast first write; what no record backs is removed.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/endpoint"
)

// syncEndpoints makes the endpoint maps hold exactly the entries of the
// records whose host veth is on the bridge, and removes the records whose
// veth is gone. It reads the maps first, then the records, then the links:
// weft-cni creates a pod's veth before its record and saves the record
// before it registers the entries, so an entry it registers meanwhile is
// either not read (and not deleted) or its record is listed, and a listed
// record's veth is in the link list. Caller holds d.mu, in d.ns.
func (d *Datapath) syncEndpoints() error {
	haveEps, err := dump[weftAddr, weftEndpoint](d.objs.WeftEndpoints)
	if err != nil {
		return fmt.Errorf("sync endpoints: %w", err)
	}
	havePods, err := dump[uint32, weftPod](d.objs.WeftPods)
	if err != nil {
		return fmt.Errorf("sync endpoints: %w", err)
	}
	store := endpoint.Store{Dir: d.opts.EndpointDir}
	records, err := store.List()
	if err != nil {
		return fmt.Errorf("sync endpoints: %w", err)
	}
	links, err := listPodLinks(d.opts.Bridge)
	if err != nil {
		return fmt.Errorf("sync endpoints: %w", err)
	}
	want := desiredEndpoints(records, links.veths)
	eps, pods := diff(haveEps, want.endpoints), diff(havePods, want.pods)
	errs := []error{eps.write(d.objs.WeftEndpoints), pods.write(d.objs.WeftPods)}
	removed := 0
	for _, r := range records {
		if links.names[r.HostIfName] {
			continue
		}
		if err := store.Remove(r); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
		slog.Info("removed endpoint record whose veth is gone", "veth", r.HostIfName,
			"container", r.ContainerID, "ips", r.IPs)
	}
	level := slog.LevelDebug
	if eps.len()+pods.len()+removed > 0 {
		level = slog.LevelInfo
	}
	slog.Log(context.Background(), level, "endpoint maps synced from records", "records", len(records),
		"endpoints", len(want.endpoints), "pods", len(want.pods), "endpoint_changes", eps.len(),
		"pod_changes", pods.len(), "records_removed", removed)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sync endpoints: %w", err)
	}
	return nil
}

// podLinks is what the endpoint maps need of the node's links.
type podLinks struct {
	// veths are the veths enslaved to the bridge, ifindex by name (none
	// while there is no bridge).
	veths map[string]int
	// names holds the name of every link.
	names map[string]bool
}

// listPodLinks lists the links of the calling thread's namespace; bridge
// names the pods' bridge.
func listPodLinks(bridge string) (podLinks, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return podLinks{}, fmt.Errorf("list links: %w", err)
	}
	p := podLinks{veths: map[string]int{}, names: map[string]bool{}}
	br := 0
	for _, l := range links {
		p.names[l.Attrs().Name] = true
		if l.Attrs().Name == bridge {
			br = l.Attrs().Index
		}
	}
	for _, l := range links {
		if a := l.Attrs(); br != 0 && a.MasterIndex == br && l.Type() == "veth" {
			p.veths[a.Name] = a.Index
		}
	}
	return p, nil
}

// endpointEntries are the contents of the endpoint maps.
type endpointEntries struct {
	endpoints map[weftAddr]weftEndpoint
	pods      map[uint32]weftPod
}

// desiredEndpoints returns the entries of the records whose host veth is
// in veths (ifindex by name): each address -> its veth and MAC, each veth
// -> its pod's addresses and MAC. Conflicts are never guessed at: a veth
// two records claim gets no entries at all, an address two records claim
// no endpoint, and a record with such an address no pods entry (its veth is
// not source-checked and its traffic takes the kernel path, rather than
// its frames from that address being dropped).
func desiredEndpoints(records []endpoint.Record, veths map[string]int) endpointEntries {
	out := endpointEntries{endpoints: map[weftAddr]weftEndpoint{}, pods: map[uint32]weftPod{}}
	type pod struct {
		rec     endpoint.Record
		ifindex int
		mac     net.HardwareAddr
	}
	byVeth := map[int][]pod{}
	for _, r := range records {
		ifindex, ok := veths[r.HostIfName]
		if !ok {
			continue
		}
		mac, err := r.HardwareAddr()
		if err == nil && !datapath.UnicastMAC(mac) {
			err = fmt.Errorf("MAC %s is not a unicast Ethernet address", mac)
		}
		if err == nil && !onePerFamily(r.IPs) {
			err = fmt.Errorf("more than one address of a family in %v", r.IPs)
		}
		if err != nil {
			slog.Warn("endpoint record not used: its pod takes the kernel path", "veth", r.HostIfName,
				"container", r.ContainerID, "err", err)
			continue
		}
		byVeth[ifindex] = append(byVeth[ifindex], pod{r, ifindex, mac})
	}
	claims := map[netip.Addr][]string{}
	var pods []pod
	for _, ps := range byVeth {
		if len(ps) > 1 {
			var ids []string
			for _, p := range ps {
				ids = append(ids, p.rec.ContainerID)
			}
			slog.Warn("endpoint records conflict: several claim one veth, which gets no entries (kernel path)",
				"veth", ps[0].rec.HostIfName, "containers", ids)
			continue
		}
		pods = append(pods, ps[0])
		for _, ip := range ps[0].rec.IPs {
			claims[ip] = append(claims[ip], ps[0].rec.HostIfName)
		}
	}
	for ip, vs := range claims {
		if len(vs) > 1 {
			slog.Warn("endpoint records conflict: several veths claim one address, which gets no endpoint "+
				"and their veths no source check (kernel path)", "ip", ip, "veths", vs)
		}
	}
	for _, p := range pods {
		entry := weftPod{Mac: mac6(p.mac)}
		conflict := false
		for _, ip := range p.rec.IPs {
			if len(claims[ip]) > 1 {
				conflict = true
				continue
			}
			out.endpoints[addrKey(ip)] = weftEndpoint{HostIfindex: uint32(p.ifindex), Mac: entry.Mac}
			entry.Ip[familyOf(ip)] = addrKey(ip)
		}
		if !conflict {
			out.pods[uint32(p.ifindex)] = entry
		}
	}
	return out
}

// onePerFamily reports whether ips hold at most one address of each family.
func onePerFamily(ips []netip.Addr) bool {
	var seen [weftFamilyFAMILY_MAX]bool
	for _, ip := range ips {
		f := familyOf(ip)
		if seen[f] {
			return false
		}
		seen[f] = true
	}
	return true
}

// mapEndpoint is one entry of an endpoints map of any weft version.
type mapEndpoint struct {
	ip      netip.Addr
	ifindex int
	mac     net.HardwareAddr
}

// decodeMapEndpoint decodes an endpoints map entry of any weft version:
// the key is an IPv4 address (4 bytes, __be32, before addresses became 16
// bytes) or a union addr (16 bytes, IPv4 mapped); the value starts with
// the host veth's ifindex (u32, host order) and the pod's MAC.
func decodeMapEndpoint(key, value []byte) (mapEndpoint, error) {
	var e mapEndpoint
	switch len(key) {
	case 4:
		e.ip = netip.AddrFrom4([4]byte(key))
	case 16:
		e.ip = netip.AddrFrom16([16]byte(key)).Unmap()
	default:
		return e, fmt.Errorf("endpoint key of %d bytes is of no known layout", len(key))
	}
	if len(value) < 10 {
		return e, fmt.Errorf("endpoint value of %d bytes is of no known layout", len(value))
	}
	e.ifindex = int(binary.NativeEndian.Uint32(value))
	e.mac = net.HardwareAddr(slices.Clone(value[4:10]))
	return e, nil
}

// adoptEndpoints saves, as adopted records in store, the entries of the
// endpoints map pinned in bpfDir (of whatever layout) that no record backs
// and whose veth is still on bridge: pods an older weft-cni registered
// keep the fast path, also when a new version replaces the map. Run before
// the programs are loaded, so the old map is read before it is replaced. A
// map of no known layout is logged and skipped. In the node's namespace.
func adoptEndpoints(bpfDir, bridge string, store endpoint.Store) error {
	m, err := openPinnedAny(bpfDir, MapEndpoints)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("adopt endpoints: %w", err)
	}
	defer m.Close()
	entries, err := readMapEndpoints(m)
	if err != nil {
		return fmt.Errorf("adopt endpoints: %w", err)
	}
	if len(entries) == 0 {
		return nil
	}
	records, err := store.List()
	if err != nil {
		return fmt.Errorf("adopt endpoints: %w", err)
	}
	links, err := listPodLinks(bridge)
	if err != nil {
		return fmt.Errorf("adopt endpoints: %w", err)
	}
	adopted := adoptable(entries, records, links.veths)
	var errs []error
	saved := 0
	for _, r := range adopted {
		if err := store.Save(r); err != nil {
			errs = append(errs, err)
			continue
		}
		saved++
	}
	slog.Info("adopted endpoints without a record", "map_entries", len(entries), "records_adopted", saved)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("adopt endpoints: %w", err)
	}
	return nil
}

// readMapEndpoints returns the entries of the endpoints map m, read raw;
// none when its layout is unknown (logged).
func readMapEndpoints(m *ebpf.Map) ([]mapEndpoint, error) {
	if k := m.KeySize(); k != 4 && k != 16 {
		slog.Warn("pinned endpoints map has a key layout no weft version wrote: not adopting from it", "key_size", k)
		return nil, nil
	}
	var (
		out        []mapEndpoint
		key, value []byte
	)
	it := m.Iterate()
	for it.Next(&key, &value) {
		e, err := decodeMapEndpoint(key, value)
		if err != nil {
			slog.Warn("pinned endpoints map has a value layout no weft version wrote: not adopting from it", "err", err)
			return nil, nil
		}
		out = append(out, e)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read map %s: %w", MapEndpoints, err)
	}
	return out, nil
}

// adoptable returns the records to adopt from the map entries: one per
// veth in veths (ifindex by name) whose entries no record backs (neither
// their addresses nor the veth), with the veth's addresses. A veth whose
// entries disagree (MACs, two addresses of a family) is not adopted.
func adoptable(entries []mapEndpoint, records []endpoint.Record, veths map[string]int) []endpoint.Record {
	names := map[int]string{}
	for name, ifindex := range veths {
		names[ifindex] = name
	}
	backedVeths, backedIPs := map[string]bool{}, map[netip.Addr]bool{}
	for _, r := range records {
		backedVeths[r.HostIfName] = true
		for _, ip := range r.IPs {
			backedIPs[ip] = true
		}
	}
	byVeth := map[string][]mapEndpoint{}
	for _, e := range entries {
		name, ok := names[e.ifindex]
		if ok && !backedVeths[name] && !backedIPs[e.ip] {
			byVeth[name] = append(byVeth[name], e)
		}
	}
	var out []endpoint.Record
	for name, es := range byVeth {
		r := endpoint.Record{HostIfName: name, MAC: es[0].mac.String()}
		for _, e := range es {
			r.IPs = append(r.IPs, e.ip)
		}
		slices.SortFunc(r.IPs, netip.Addr.Compare)
		if !onePerFamily(r.IPs) || slices.ContainsFunc(es, func(e mapEndpoint) bool { return e.mac.String() != r.MAC }) {
			slog.Warn("endpoints of one veth disagree: not adopting them (the pod takes the kernel path)", "veth", name, "ips", r.IPs)
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b endpoint.Record) int { return a.IPs[0].Compare(b.IPs[0]) })
	return out
}

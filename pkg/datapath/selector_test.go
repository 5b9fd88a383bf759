package datapath

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// reference is the whole-set greedy selection a Selector must match: the
// selected peers in subnet order, the rejections by key and the subnets of
// the peers whose mode could not be decided.
type reference struct {
	selected  []Peer
	rejected  map[PeerKey]string
	undecided []netip.Prefix
}

// selectAll is the greedy pass over the whole of peers, written as plainly
// as the Selector's contract says, with modes from mode.
func selectAll(node Node, own [2]netip.Prefix, peers []Peer, mode func(netip.Addr) (Mode, error)) reference {
	sorted := slices.SortedFunc(slices.Values(peers), func(a, b Peer) int {
		return cmp.Or(a.Subnet.Compare(b.Subnet), a.NodeIP.Compare(b.NodeIP))
	})
	r := reference{rejected: map[PeerKey]string{}}
	subnets := map[netip.Prefix]bool{}
	ids := map[string]netip.Addr{} // tunnel identities
	for _, p := range sorted {
		if reason := peerProblem(node, own, p); reason != "" {
			r.rejected[p.Key()] = reason
			continue
		}
		m, err := mode(p.NodeIP)
		if err != nil {
			r.undecided = append(r.undecided, p.Subnet)
			continue
		}
		p.Mode = m
		// A VtepMAC or a public key identifies a tunnel of one family.
		id, what := familyName(p.Subnet.Addr())+p.VtepMAC.String(), "VtepMAC"
		if p.Mode == ModeWireGuard {
			id, what = familyName(p.Subnet.Addr())+p.PublicKey, "public key"
		}
		tunnel := p.Mode == ModeVXLAN || p.Mode == ModeWireGuard
		owner, claimed := ids[id]
		switch {
		case subnets[p.Subnet]:
			r.rejected[p.Key()] = "another peer has the same subnet"
			continue
		case tunnel && claimed && owner != p.NodeIP:
			r.rejected[p.Key()] = "another node IP has the same " + what
			continue
		}
		subnets[p.Subnet] = true
		if tunnel {
			ids[id] = p.NodeIP
		}
		r.selected = append(r.selected, p)
	}
	return r
}

// randomPeers draws peers from a key space small enough that subnets,
// VtepMACs and public keys are shared, with invalid peers among them.
// Public keys come from their own source, so the other fields are the same
// draws for every backend.
type randomPeers struct{ rnd, keys *rand.Rand }

func (g randomPeers) peer() Peer {
	subnets := []string{"10.244.1.0/24", "10.244.2.0/24", "10.244.2.0/25", "10.244.3.0/24", "10.244.4.0/24", "10.244.5.0/24", "10.245.0.0/24", "10.244.6.1/24"}
	macs := []net.HardwareAddr{{2, 0, 0, 0, 0, 1}, {2, 0, 0, 0, 0, 2}, {2, 0, 0, 0, 0, 3}, {2, 0, 0, 0, 0, 4}, nil, {1, 0, 0, 0, 0, 1}}
	p := Peer{
		Subnet:  netip.MustParsePrefix(subnets[g.rnd.IntN(len(subnets))]),
		NodeIP:  netip.AddrFrom4([4]byte{192, 168, 0, byte(1 + g.rnd.IntN(5))}),
		VtepMAC: macs[g.rnd.IntN(len(macs))],
		// Two valid keys, none, and one too short.
		PublicKey: []string{"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=", "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=", "", "AQEB"}[g.keys.IntN(4)],
	}
	if g.rnd.IntN(4) == 0 {
		p.TunnelIP = netip.AddrFrom4([4]byte{192, 168, 1, byte(g.rnd.IntN(2))})
	}
	return p
}

// selectorModel follows a Selector through random changes and checks it
// against selectAll after each.
type selectorModel struct {
	t          *testing.T
	s          *Selector
	set        map[PeerKey]Peer
	decided    map[netip.Addr]Mode // the node IPs the Selector must remember
	broken     map[netip.Addr]bool // node IPs whose lookup fails now
	reported   map[PeerKey]string  // the rejections reported so far, while they last
	programmed map[netip.Prefix]Peer
}

// directLookup is the mode of a node IP in the random test: host-gw for odd
// addresses, vxlan for even ones; it fails for broken ones.
func (m *selectorModel) directLookup(ip netip.Addr) (Mode, error) {
	if m.broken[ip] {
		return "", errors.New("no route")
	}
	if ip.As4()[3]%2 == 1 {
		return ModeHostGW, nil
	}
	return ModeVXLAN, nil
}

// expect returns the selection the Selector must have now, forgetting the
// modes of node IPs no peer has and deciding the others as it must.
func (m *selectorModel) expect() reference {
	present := map[netip.Addr]bool{}
	var peers []Peer
	for _, p := range m.set {
		present[p.NodeIP] = true
		peers = append(peers, p)
	}
	for ip := range m.decided {
		if !present[ip] {
			delete(m.decided, ip)
		}
	}
	mode := func(ip netip.Addr) (Mode, error) {
		if m.s.lookup == nil {
			return m.s.node.Backend, nil
		}
		if mode, ok := m.decided[ip]; ok {
			return mode, nil
		}
		mode, err := m.directLookup(ip)
		if err == nil {
			m.decided[ip] = mode
		}
		return mode, err
	}
	return selectAll(m.s.node, m.s.own, peers, mode)
}

// check compares the Selector after one step with want: the selection, the
// state a caller programs from the reported changes, the rejections
// reported (extra are those reported besides the fresh ones) and the error.
func (m *selectorModel) check(step string, want reference, reported []Rejection, extra []Rejection, err error) {
	t := m.t
	t.Helper()
	if got := m.s.Selected(); !slices.EqualFunc(got, want.selected, SamePeer) {
		t.Fatalf("%s: selected\n%v\nwant\n%v", step, got, want.selected)
	}
	programmed := slices.SortedFunc(func(yield func(Peer) bool) {
		for _, p := range m.programmed {
			if !yield(p) {
				return
			}
		}
	}, func(a, b Peer) int { return a.Subnet.Compare(b.Subnet) })
	if !slices.EqualFunc(programmed, want.selected, SamePeer) {
		t.Fatalf("%s: programmed from the deltas\n%v\nwant\n%v", step, programmed, want.selected)
	}
	var fresh []string
	for k, reason := range want.rejected {
		if m.reported[k] != reason {
			fresh = append(fresh, fmt.Sprintf("%s@%s: %s", k.Subnet, k.NodeIP, reason))
		}
	}
	fresh = append(fresh, rejectionLines(extra)...)
	got := rejectionLines(reported)
	slices.Sort(fresh)
	slices.Sort(got)
	if !slices.Equal(got, fresh) {
		t.Fatalf("%s: reported rejections\n%q\nwant\n%q", step, got, fresh)
	}
	m.reported = want.rejected
	if (err != nil) != (len(want.undecided) > 0) {
		t.Fatalf("%s: err = %v, want one iff peers are undecided: %v", step, err, want.undecided)
	}
	for _, sub := range want.undecided {
		if !strings.Contains(err.Error(), sub.String()) {
			t.Fatalf("%s: err = %v, want it to name %s", step, err, sub)
		}
	}
}

// applyDelta programs d as a datapath does, checking that each change
// starts from what is programmed and changes something.
func (m *selectorModel) applyDelta(step string, d Delta) {
	m.t.Helper()
	for i, c := range d.Subnets {
		sub := cmp.Or(c.New.Subnet, c.Old.Subnet)
		if i > 0 && cmp.Or(d.Subnets[i-1].New.Subnet, d.Subnets[i-1].Old.Subnet).Compare(sub) >= 0 {
			m.t.Fatalf("%s: delta not in subnet order: %v", step, d.Subnets)
		}
		if SamePeer(c.Old, c.New) || !SamePeer(c.Old, m.programmed[sub]) {
			m.t.Fatalf("%s: change %v of %s, programmed %v", step, c, sub, m.programmed[sub])
		}
		if c.New.Subnet.IsValid() {
			m.programmed[sub] = c.New
		} else {
			delete(m.programmed, sub)
		}
	}
}

// TestSelectorMatchesWholeSet applies random changes, resets and own subnet
// changes to Selectors of every backend and checks each step against the
// greedy pass over the whole set.
func TestSelectorMatchesWholeSet(t *testing.T) {
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil))) // SetOwn logs its rejections
	t.Cleanup(func() { slog.SetDefault(prev) })
	direct := vxNode
	direct.DirectRouting = true
	wg := vxNode
	wg.Backend, wg.Port = ModeWireGuard, 51820
	nodes := map[string]Node{"vxlan": vxNode, "host-gw": hostGWNode, "direct routing": direct, "wireguard": wg}
	for name, node := range nodes {
		for seed := range uint64(40) {
			rnd := rand.New(rand.NewPCG(seed, 13))
			g := randomPeers{rnd, rand.New(rand.NewPCG(seed, 17))}
			m := &selectorModel{
				t: t, s: NewSelector(node, ownSubnet), set: map[PeerKey]Peer{},
				decided: map[netip.Addr]Mode{}, broken: map[netip.Addr]bool{},
				reported: map[PeerKey]string{}, programmed: map[netip.Prefix]Peer{},
			}
			if node.DirectRouting {
				m.s.lookup = m.directLookup
			}
			for i := range 300 {
				step := fmt.Sprintf("%s, seed %d, step %d", name, seed, i)
				if rnd.IntN(8) == 0 {
					ip := netip.AddrFrom4([4]byte{192, 168, 0, byte(2 + rnd.IntN(4))})
					m.broken[ip] = !m.broken[ip]
				}
				switch r := rnd.IntN(20); {
				case r == 0:
					m.stepReset(step, g)
				case r == 1:
					own := []netip.Prefix{ownSubnet, netip.MustParsePrefix("10.244.5.0/24"), {}}[rnd.IntN(3)]
					err := m.s.SetOwn(own)
					want := m.expect()
					m.programmed = map[netip.Prefix]Peer{}
					for _, p := range m.s.Selected() {
						m.programmed[p.Subnet] = p
					}
					m.reported = want.rejected // SetOwn logs them
					m.check(step+" (SetOwn)", want, nil, nil, err)
				default:
					m.stepUpdate(step, g)
				}
			}
		}
	}
}

// stepUpdate makes up to three random changes and checks the Update.
func (m *selectorModel) stepUpdate(step string, g randomPeers) {
	var ch Changes
	touched := map[PeerKey]bool{}
	for range g.rnd.IntN(4) {
		p := g.peer()
		if touched[p.Key()] {
			continue
		}
		touched[p.Key()] = true
		if _, ok := m.set[p.Key()]; ok && g.rnd.IntN(2) == 0 {
			ch.Removed = append(ch.Removed, p.Key())
			delete(m.set, p.Key())
			continue
		}
		ch.Set = append(ch.Set, p)
		m.set[p.Key()] = p
	}
	d, err := m.s.Update(ch)
	m.applyDelta(step, d)
	m.check(step, m.expect(), d.Rejected, nil, err)
}

// stepReset replaces the set with a random one (sometimes with a key given
// twice) and checks the Reset.
func (m *selectorModel) stepReset(step string, g randomPeers) {
	var peers, dups []Peer
	m.set = map[PeerKey]Peer{}
	for range g.rnd.IntN(12) {
		p := g.peer()
		if _, dup := m.set[p.Key()]; dup {
			dups = append(dups, p)
		} else {
			m.set[p.Key()] = p
		}
		peers = append(peers, p)
	}
	clear(m.decided)
	sel, err := m.s.Reset(peers)
	m.programmed = map[netip.Prefix]Peer{}
	for _, p := range sel.Peers {
		m.programmed[p.Subnet] = p
	}
	var extra []Rejection
	for _, p := range dups {
		extra = append(extra, Rejection{p, "another peer has the same subnet"})
	}
	m.check(step+" (Reset)", m.expect(), sel.Rejected, extra, err)
}

// BenchmarkSelectorUpdate changes one peer's VtepMAC per Update in sets of
// different sizes: the cost per Update must not grow with the set.
func BenchmarkSelectorUpdate(b *testing.B) {
	node := Node{NodeIP: netip.MustParseAddr("172.16.0.1"), Network: netip.MustParsePrefix("10.0.0.0/8"), Backend: ModeVXLAN}
	peerOf := func(i, gen int) Peer {
		hi, lo := byte(i>>8), byte(i)
		return Peer{
			Subnet:  netip.PrefixFrom(netip.AddrFrom4([4]byte{10, hi, lo, 0}), 24),
			NodeIP:  netip.AddrFrom4([4]byte{192, 168, hi, lo}),
			VtepMAC: net.HardwareAddr{2, byte(gen), 0, 0, hi, lo},
		}
	}
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			peers := make([]Peer, n)
			for i := range peers {
				peers[i] = peerOf(i, 0)
			}
			s := NewSelector(node, netip.Prefix{})
			if _, err := s.Reset(peers); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				d, err := s.Update(Changes{Set: []Peer{peerOf(i%n, 1+i/n%2)}})
				if err != nil || len(d.Subnets) != 1 {
					b.Fatalf("Update = %+v, %v", d, err)
				}
				i++
			}
		})
	}
}

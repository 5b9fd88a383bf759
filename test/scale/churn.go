package main

import (
	"fmt"
	"slices"
	"time"
)

// churnConfig is the churn phase: after programming and the new leases, at
// one size, lease events at a steady rate.
type churnConfig struct {
	// peers is the size the phase runs at; 0 disables it.
	peers int
	// rate is the events written per second; 0 disables the phase.
	rate int
	// duration is how long events are written; 0 disables the phase.
	duration time.Duration
}

// events is how many events the phase writes (0: none).
func (c churnConfig) events() int {
	if c.peers == 0 {
		return 0
	}
	return int(float64(c.rate) * c.duration.Seconds())
}

// at reports whether the phase runs at size n.
func (c churnConfig) at(n int) bool { return c.events() > 0 && c.peers == n }

// check rejects a churn phase that cannot run: negative values, a size not
// among sizes, more subnets than the synthetic cluster has.
func (c churnConfig) check(sizes []int, newLeases int) error {
	switch {
	case c.peers < 0 || c.rate < 0 || c.duration < 0:
		return fmt.Errorf("-churn-peers %d, -churn-rate %d, -churn-duration %v: use values >= 0 (0 disables the churn phase)", c.peers, c.rate, c.duration)
	case c.events() == 0:
		return nil
	case !slices.Contains(sizes, c.peers):
		return fmt.Errorf("-churn-peers %d is not among -sizes %v: add it there, or -churn-peers 0 to skip the churn phase", c.peers, sizes)
	}
	// One subnet per new lease, one per three events, one for weftd's own.
	if need := c.peers + newLeases + (c.events()+2)/3 + 1; need > maxSynthPeers {
		return fmt.Errorf("-churn-peers %d with %d new leases and %d churn events needs %d subnets: %s has %d",
			c.peers, newLeases, c.events(), need, podNetwork, maxSynthPeers)
	}
	return nil
}

// churnClass is what a churn event does to a lease.
type churnClass int

const (
	// added is a lease for a new subnet.
	added churnClass = iota
	// changed is a live lease rewritten with a new PublicIP and VtepMAC, or
	// a new VtepMAC only.
	changed
	// removed is a live lease's key deleted.
	removed
	numClasses
)

func (c churnClass) String() string { return [...]string{"added", "changed", "removed"}[c] }

// churnEvent is one lease event of the churn phase.
type churnEvent struct {
	class churnClass
	// peer is the lease as written, or as it was before its removal.
	peer peer
}

// churnGen generates the churn phase's events: added, changed and removed
// in turn, so the set keeps its size (it is one larger after an added,
// back after a removed). Every other change moves the lease to a new
// PublicIP and VtepMAC, the others give it a new VtepMAC only. Changes and
// removals take the least recently written live lease, so a subnet is not
// touched again until the whole set has been.
type churnGen struct {
	// live are the leases in etcd, least recently written first.
	live []peer
	seq  *synthSeq
	// n counts the events generated.
	n int
}

// newChurnGen starts from the live leases (oldest first; the generator
// takes them over) and adds leases from seq.
func newChurnGen(live []peer, seq *synthSeq) *churnGen {
	return &churnGen{live: live, seq: seq}
}

// next returns the next event.
func (g *churnGen) next() (churnEvent, error) {
	e := churnEvent{class: churnClass(g.n % 3)}
	k := g.n / 3 // the cycle's number, one change each
	switch e.class {
	case added:
		p, err := g.seq.take()
		if err != nil {
			return e, err
		}
		e.peer = p
		g.live = append(g.live, p)
	case changed:
		p := g.oldest()
		p.MAC = changedMAC(k)
		if k%2 == 0 {
			p.NodeIP = changedNodeIP(k)
		}
		e.peer = p
		g.live = append(g.live, p)
	case removed:
		e.peer = g.oldest()
	}
	g.n++
	return e, nil
}

// oldest takes the least recently written live lease out of the set. There
// is one: the cycle's added came before.
func (g *churnGen) oldest() peer {
	p := g.live[0]
	g.live = g.live[1:]
	return p
}

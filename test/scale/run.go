package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/weftnet/weft/test/cluster"
	"github.com/weftnet/weft/test/procstat"
)

// config is what every run shares.
type config struct {
	weftd string
	// newLeases is how many single leases are added after the full set.
	newLeases int
	// pollAll and pollOne are the intervals of checking the full set and
	// one new lease.
	pollAll, pollOne time.Duration
	// timeout bounds programming the full set and each new lease.
	timeout time.Duration
	// weftdArgs are extra weftd flags.
	weftdArgs []string
	// perfDir, if set, receives a perf recording of each run's phases.
	perfDir string
	// churn is the churn phase.
	churn churnConfig
	log   *slog.Logger
}

// result is one run's measurements.
type result struct {
	Datapath string
	N        int
	// Ready is from weftd's start until its subnet file exists (lease
	// acquired, datapath set up); Programmed until all N peers are in the
	// datapath.
	Ready, Programmed time.Duration
	// AtProgrammed is weftd's resource use when all N were programmed,
	// End after the new leases.
	AtProgrammed, End usage
	// NewLease are the latencies from writing one lease to etcd until it
	// is in the datapath, in the order measured.
	NewLease []time.Duration
	// ProbeCPU is the harness's own CPU time while it polled for the full
	// set (it shares the machine with weftd).
	ProbeCPU time.Duration
	// Put is the median time etcd took to commit one new lease (part of
	// each NewLease latency).
	Put time.Duration
	// Churn is the churn phase's measurements, nil where it did not run.
	Churn *churnResult
}

// session is what the phases after programming share.
type session struct {
	cfg  config
	node *cluster.Node
	w    *leaseWriter
	p    probe
	// seq hands out the subnets of new leases.
	seq synthSeq
	// live are the synthetic leases in etcd, least recently written first.
	live []peer
}

// run measures one datapath at one size in a fresh namespace cluster.
func run(ctx context.Context, cfg config, datapath string, n int) (res result, err error) {
	res = result{Datapath: datapath, N: n}
	c, err := cluster.New(ctx, cluster.Options{
		Binaries:  cluster.Binaries{Weftd: cfg.weftd},
		Nodes:     1,
		NetConf:   netConf(datapath),
		WeftdArgs: cfg.weftdArgs,
		NoStart:   true,
		Log:       cfg.log,
	})
	if err != nil {
		return res, fmt.Errorf("build namespace cluster: %w", err)
	}
	node := c.Nodes[0]
	defer func() {
		if err != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w\n%s", err, logTail(node.LogPath(), 40))
		}
		err = errors.Join(err, c.Close())
	}()

	w, err := newLeaseWriter(ctx, c.Etcd.Client())
	if err != nil {
		return res, err
	}
	peers := make([]peer, n)
	want := make(map[netip.Prefix]peer, n)
	for i := range peers {
		peers[i] = synthPeer(i)
		want[peers[i].Subnet] = peers[i]
	}
	if err := w.put(ctx, peers); err != nil {
		return res, err
	}
	cfg.log.Info("leases written", "datapath", datapath, "n", n)

	p, err := newProbe(datapath, node)
	if err != nil {
		return res, err
	}
	defer p.close()

	start := time.Now()
	if err := node.StartWeftd(ctx); err != nil {
		return res, err
	}
	pid := node.WeftdPID()
	err = cfg.profiled(fmt.Sprintf("%s-%d-programming", datapath, n), pid, func() (err error) {
		probeStart := procstat.SelfCPU()
		res.Ready, res.Programmed, err = waitProgrammed(ctx, cfg, node, p, want, start)
		res.ProbeCPU = procstat.SelfCPU() - probeStart
		return err
	})
	if err != nil {
		return res, err
	}
	if err := procstat.CheckComm(pid, "weftd"); err != nil {
		return res, err
	}
	if res.AtProgrammed, err = readUsage(pid); err != nil {
		return res, err
	}
	cfg.log.Info("programmed", "datapath", datapath, "n", n, "in", res.Programmed)
	if datapath == "ebpf" {
		// The ebpf datapath writes its maps before its kernel slow path:
		// new leases are timed only once that first pass is over too, or
		// the first would queue behind it.
		if err := waitSlowPath(ctx, cfg, node, peers, start); err != nil {
			return res, err
		}
	}

	own, err := node.Subnet()
	if err != nil {
		return res, err
	}
	s := &session{cfg: cfg, node: node, w: w, p: p, seq: synthSeq{next: n, own: own}, live: peers}
	err = cfg.profiled(fmt.Sprintf("%s-%d-new-leases", datapath, n), pid, func() (err error) {
		res.NewLease, res.Put, err = s.newLeaseLatencies(ctx)
		return err
	})
	if err != nil {
		return res, err
	}
	if res.End, err = readUsage(pid); err != nil {
		return res, err
	}
	if !cfg.churn.at(n) {
		return res, nil
	}
	err = cfg.profiled(fmt.Sprintf("%s-%d-churn", datapath, n), pid, func() (err error) {
		res.Churn, err = s.churn(ctx, pid)
		return err
	})
	return res, err
}

// profiled runs f while perf records pid, if cfg.perfDir asks for it.
func (cfg config) profiled(name string, pid int, f func() error) error {
	rec, err := startPerf(cfg.perfDir, name, pid)
	if err != nil {
		return err
	}
	return errors.Join(f(), rec.stop())
}

// waitProgrammed polls until weftd's subnet file exists and every subnet of
// want is in the datapath; it returns both times since start.
func waitProgrammed(ctx context.Context, cfg config, node *cluster.Node, p probe, want map[netip.Prefix]peer, start time.Time) (ready, programmed time.Duration, err error) {
	deadline := start.Add(cfg.timeout)
	total := len(want)
	for left := total; ; {
		if ready == 0 {
			if _, err := os.Stat(node.SubnetFile); err == nil {
				ready = time.Since(start)
			}
		}
		if left, err = prune(p, want); err != nil {
			return 0, 0, err
		}
		if left == 0 && ready != 0 {
			return ready, time.Since(start), nil
		}
		if err := pollWait(ctx, node, deadline, cfg.pollAll); err != nil {
			return 0, 0, fmt.Errorf("%d of %d peers programmed: %w", total-left, total, err)
		}
	}
}

// waitSlowPath waits until the kernel slow path routes every peer.
func waitSlowPath(ctx context.Context, cfg config, node *cluster.Node, peers []peer, start time.Time) error {
	routes, err := newProbe("kernel", node)
	if err != nil {
		return err
	}
	defer routes.close()
	want := make(map[netip.Prefix]peer, len(peers))
	for _, pe := range peers {
		want[pe.Subnet] = pe
	}
	if _, _, err := waitProgrammed(ctx, cfg, node, routes, want, start); err != nil {
		return fmt.Errorf("kernel slow path: %w", err)
	}
	return nil
}

// newLeaseLatencies writes cfg.newLeases leases one after the other and
// measures each from the write until it is in the datapath. It returns the
// latencies and the median etcd commit time.
func (s *session) newLeaseLatencies(ctx context.Context) ([]time.Duration, time.Duration, error) {
	lat := make([]time.Duration, 0, s.cfg.newLeases)
	puts := make([]time.Duration, 0, s.cfg.newLeases)
	for len(lat) < s.cfg.newLeases {
		np, err := s.seq.take()
		if err != nil {
			return nil, 0, err
		}
		start := time.Now()
		if err := s.w.put(ctx, []peer{np}); err != nil {
			return nil, 0, err
		}
		puts = append(puts, time.Since(start))
		s.live = append(s.live, np)
		deadline := start.Add(s.cfg.timeout)
		for {
			ok, err := s.p.has(np)
			if err != nil {
				return nil, 0, err
			}
			if ok {
				lat = append(lat, time.Since(start))
				break
			}
			if err := pollWait(ctx, s.node, deadline, s.cfg.pollOne); err != nil {
				return nil, 0, fmt.Errorf("new lease %s not programmed: %w", np.Subnet, err)
			}
		}
	}
	return lat, percentile(puts, 50), nil
}

// pollWait sleeps one poll interval; it fails when ctx ends, the deadline
// passed or weftd exited.
func pollWait(ctx context.Context, node *cluster.Node, deadline time.Time, interval time.Duration) error {
	if done, err := node.WeftdExited(); done {
		return fmt.Errorf("weftd exited: %v", err)
	}
	if time.Now().After(deadline) {
		return errors.New("timed out")
	}
	return sleepUntil(ctx, time.Now().Add(interval))
}

// logTail returns the last lines of weftd's log, to explain a failure.
func logTail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no weftd log: %v)", err)
	}
	all := strings.Split(strings.TrimSpace(string(b)), "\n")
	return "weftd log " + path + ":\n" + strings.Join(all[max(0, len(all)-lines):], "\n")
}

// percentile is the nearest-rank q-th percentile of d (0 for none).
func percentile(d []time.Duration, q int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(d))
	rank := (q*len(s) + 99) / 100 // ceil(q/100 * len)
	return s[max(rank, 1)-1]
}

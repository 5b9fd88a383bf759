// Command demo brings up a weft cluster in network namespaces (etcd, one
// weftd per node on the ebpf datapath by default, two pods per node),
// prints which datapath and backend each node runs, a table of cross-node
// pod pings and TCP transfers, and what each backend carried, and tears
// everything down, also on Ctrl-C.
// `make demo` runs it as root after building the binaries.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"text/tabwriter"
	"time"

	"github.com/weftnet/weft/pkg/lease"
	"github.com/weftnet/weft/test/cluster"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding weftd and weft-cni (make build)")
	nodes := flag.Int("nodes", 3, "number of nodes")
	backend := flag.String("backend", "vxlan", "Backend.Type of net-conf.json: vxlan or host-gw")
	datapath := flag.String("datapath", "ebpf", "Backend.Datapath of net-conf.json: ebpf, kernel or auto")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: must run as root (it creates network namespaces and runs weftd): sudo make demo")
		os.Exit(1)
	}
	bins, err := cluster.FindBinaries(*bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	cluster.CloseOnInterrupt()
	opts := cluster.Options{
		Binaries: bins,
		Nodes:    *nodes,
		NetConf:  cluster.NetConf(*backend, *datapath, false),
		Log:      slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}
	if err := run(context.Background(), opts); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// run builds the cluster, shows it and pings across it; the cluster is
// gone when run returns.
func run(ctx context.Context, opts cluster.Options) (err error) {
	fmt.Printf("net-conf.json: %s\n", opts.NetConf)
	c, err := cluster.New(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			fmt.Fprintln(os.Stderr, c.Diagnose(ctx))
		}
		err = errors.Join(err, c.Close())
	}()
	var pods []*cluster.Pod
	for _, n := range c.Nodes {
		for range 2 {
			p, err := n.AddPod(ctx)
			if err != nil {
				return err
			}
			pods = append(pods, p)
		}
	}
	if err := printNodes(ctx, c); err != nil {
		return err
	}
	for _, p := range pods {
		srv, err := p.NS.ServeEcho(echoPort)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	if err := printTraffic(ctx, pods); err != nil {
		return err
	}
	return printCarried(ctx, c)
}

// printNodes shows each node's subnet, datapath (from its subnet file) and
// backend (from its lease).
func printNodes(ctx context.Context, c *cluster.Cluster) error {
	leases, err := c.Etcd.Leases(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "\nNODE\tNODE IP\tSUBNET\tDATAPATH\tBACKEND\tWEFTD PID")
	for _, n := range c.Nodes {
		subnet, err := n.Subnet()
		if err != nil {
			return err
		}
		dp, err := n.Datapath()
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\n", n.Name, n.IP, subnet, dp, backendOf(leases, subnet), n.WeftdPID())
	}
	return w.Flush()
}

func backendOf(leases map[netip.Prefix]lease.Attrs, subnet netip.Prefix) string {
	if a, ok := leases[subnet]; ok {
		return a.BackendType
	}
	return "(no lease)"
}

// Each cross-node pair of the table: pingCount pings pingInterval apart,
// then a TCP stream of streamTime each way to the echo server every pod
// runs on echoPort.
const (
	pingCount    = 5
	pingInterval = 100 * time.Millisecond
	reachTimeout = 60 * time.Second
	echoPort     = 5201
	streamTime   = 500 * time.Millisecond
)

// printTraffic pings every pod from every pod on another node, then sends
// it a TCP stream, and prints a table; it fails if any pair lost a packet
// or a byte.
func printTraffic(ctx context.Context, pods []*cluster.Pod) error {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "\nFROM POD\tTO POD\tNODES\tDATAPATHS\tPING LOSS\tAVG RTT\tTCP %v EACH WAY\n", streamTime)
	var failed int
	for _, from := range pods {
		for _, to := range pods {
			if from.Node == to.Node {
				continue
			}
			if err := from.NS.WaitReach(ctx, to.IP, reachTimeout); err != nil {
				return err
			}
			r, err := from.NS.Ping(ctx, to.IP, pingCount, pingInterval)
			if err != nil {
				return err
			}
			var tcp string
			sent, err := from.NS.EchoStream(ctx, netip.AddrPortFrom(to.IP, echoPort), streamTime, 0)
			if err != nil {
				tcp = "FAILED: " + err.Error()
			} else {
				tcp = fmt.Sprintf("%.0f MiB/s", float64(sent)/(1<<20)/streamTime.Seconds())
			}
			if r.Lost() > 0 || err != nil {
				failed++
			}
			fmt.Fprintf(w, "%s %s\t%s %s\t%s -> %s\t%s -> %s\t%d/%d (%.0f%%)\t%v\t%s\n",
				from.ID, from.IP, to.ID, to.IP, from.Node.Name, to.Node.Name,
				datapath(from.Node), datapath(to.Node), r.Lost(), r.Sent, 100*r.Loss(), r.RTT.Round(time.Microsecond), tcp)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d pod pairs lost pings or failed the TCP transfer", failed)
	}
	fmt.Println("\nall cross-node pod pairs reach each other")
	return nil
}

// printCarried shows, per node, the packets and bytes each backend of its
// datapath counted (weftd's /metrics): which path carried the pings and
// which the TCP streams.
func printCarried(ctx context.Context, c *cluster.Cluster) error {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "\nNODE\tBACKEND\tTX PACKETS\tRX PACKETS\tTX MiB\tRX MiB")
	for _, n := range c.Nodes {
		for _, b := range []string{"vxlan-ebpf", "host-gw-ebpf", "vxlan-kernel"} {
			var v [4]float64
			for i, q := range [][2]string{
				{"packets", "tx"}, {"packets", "rx"}, {"bytes", "tx"}, {"bytes", "rx"},
			} {
				var err error
				if v[i], err = n.Metric(ctx, "weft_datapath_"+q[0]+"_total", `backend="`+b+`"`, `direction="`+q[1]+`"`); err != nil {
					return err
				}
			}
			if v[0]+v[1] > 0 {
				fmt.Fprintf(w, "%s\t%s\t%.0f\t%.0f\t%.1f\t%.1f\n", n.Name, b, v[0], v[1], v[2]/(1<<20), v[3]/(1<<20))
			}
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Println("(netfilter decides, eBPF forwards: pings, TCP handshakes and closes take the kernel path,\n" +
		" vxlan-kernel = flannel.1 through netfilter; established TCP streams take the eBPF fast path, *-ebpf)\ntearing down")
	return nil
}

func datapath(n *cluster.Node) string {
	dp, err := n.Datapath()
	if err != nil {
		return "?"
	}
	return dp
}

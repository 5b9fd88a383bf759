package cluster

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// live is every cluster not yet closed, for CloseOnInterrupt.
var live = struct {
	sync.Mutex
	m map[*Cluster]struct{}
}{m: map[*Cluster]struct{}{}}

func register(c *Cluster) {
	live.Lock()
	defer live.Unlock()
	live.m[c] = struct{}{}
}

func unregister(c *Cluster) {
	live.Lock()
	defer live.Unlock()
	delete(live.m, c)
}

// CloseOnInterrupt makes SIGINT and SIGTERM close every open cluster and
// exit with status 130, so Ctrl-C never leaves namespaces, processes or
// mounts behind. Call it once from main or TestMain.
func CloseOnInterrupt() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "%v: tearing down the namespace clusters\n", sig)
		live.Lock()
		open := make([]*Cluster, 0, len(live.m))
		for c := range live.m {
			open = append(open, c)
		}
		live.Unlock()
		for _, c := range open {
			if err := c.Close(); err != nil {
				fmt.Fprintf(os.Stderr, "teardown %s: %v\n", c.Prefix, err)
			}
		}
		os.Exit(130)
	}()
}

package cluster

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// live is every harness not yet closed (namespace clusters, and others
// that Track), for CloseOnInterrupt.
var live = struct {
	sync.Mutex
	m map[io.Closer]string
}{m: map[io.Closer]string{}}

// Track makes CloseOnInterrupt close c (named name in its messages) until
// Untrack. Harnesses built on this package's pieces (e.g. test/k8s) call
// it when they start.
func Track(c io.Closer, name string) {
	live.Lock()
	defer live.Unlock()
	live.m[c] = name
}

// Untrack ends Track, typically from c's Close.
func Untrack(c io.Closer) {
	live.Lock()
	defer live.Unlock()
	delete(live.m, c)
}

// CloseOnInterrupt makes SIGINT and SIGTERM close every open cluster (and
// whatever else is tracked) and exit with status 130, so Ctrl-C never leaves
// namespaces, processes or mounts behind. Call it once from main or
// TestMain.
func CloseOnInterrupt() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "%v: tearing down the namespace clusters\n", sig)
		live.Lock()
		open := make(map[io.Closer]string, len(live.m))
		for c, name := range live.m {
			open[c] = name
		}
		live.Unlock()
		for c, name := range open {
			if err := c.Close(); err != nil {
				fmt.Fprintf(os.Stderr, "teardown %s: %v\n", name, err)
			}
		}
		os.Exit(130)
	}()
}

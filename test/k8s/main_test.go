package k8s

import (
	"os"
	"testing"

	"github.com/weftnet/weft/test/cluster"
)

func TestMain(m *testing.M) {
	// Ctrl-C tears every cluster down (nodes, cgroups, namespaces).
	cluster.CloseOnInterrupt()
	os.Exit(m.Run())
}

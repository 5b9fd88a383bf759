package kubetest

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/test/testns"
)

// TestClusterInNetNS runs the cluster inside a network namespace on a
// non-loopback address, as the e2e harness does with its underlay, and
// reaches it through the Cluster's namespace dialer.
func TestClusterInNetNS(t *testing.T) {
	ns := testns.New(t, testns.Prefix(), "infra")
	ns.MustRun(t, "ip", "link", "add", "underlay", "type", "veth", "peer", "name", "underlay-peer")
	ns.MustRun(t, "ip", "addr", "add", "192.0.2.1/24", "dev", "underlay")
	ns.MustRun(t, "ip", "link", "set", "underlay", "up")
	ns.MustRun(t, "ip", "link", "set", "underlay-peer", "up")

	c := Start(t, Options{BindAddress: "192.0.2.1", NetNS: ns.Name})
	if c.URL[:len("https://192.0.2.1:")] != "https://192.0.2.1:" {
		t.Fatalf("URL %s does not use the bind address", c.URL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Admin(t).CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("get namespace default through the netns dialer: %v", err)
	}
	// The API server listens only inside the namespace.
	if err := c.get(c.URL+"/readyz", c.AdminToken); err != nil {
		t.Fatalf("readyz through the netns dialer: %v", err)
	}
	root := *c
	root.Dial = dialer("")
	if err := root.get(c.URL+"/readyz", c.AdminToken); err == nil {
		t.Fatal("the API server inside the namespace is reachable from the root namespace")
	}
}

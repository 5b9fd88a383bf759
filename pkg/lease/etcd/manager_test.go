package etcd

import (
	"context"
	"strings"
	"testing"

	"github.com/weftnet/weft/pkg/lease"
)

func TestNetworkConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	m := e.manager(nil)
	ctx := context.Background()

	if _, err := m.NetworkConfig(ctx); err == nil || !strings.Contains(err.Error(), "/coreos.com/network/config not found") {
		t.Fatalf("missing config: err = %v, want a 'not found' error naming the key", err)
	}

	e.put(DefaultPrefix+"/config", `{"Network":"10.5.0.0/16",`)
	if _, err := m.NetworkConfig(ctx); err == nil || !strings.Contains(err.Error(), DefaultPrefix+"/config") {
		t.Fatalf("bad config: err = %v, want an error naming the key", err)
	}
	if _, err := m.Acquire(ctx, vxlanAttrs("192.168.64.3", "c6:d2:8e:11:22:33"), lease.Lease{}); err == nil {
		t.Fatal("Acquire with a bad config succeeded")
	}

	e.put(DefaultPrefix+"/config", netConf)
	cfg, err := m.NetworkConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Network.String() != "10.5.0.0/16" || cfg.SubnetLen != 24 || cfg.SubnetMax.String() != "10.5.254.0" {
		t.Fatalf("config = %+v", cfg)
	}
}

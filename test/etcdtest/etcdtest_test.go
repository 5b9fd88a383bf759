package etcdtest

import (
	"context"
	"testing"
	"time"
)

func TestStopStartKeepsData(t *testing.T) {
	s := Start(t)
	c := s.Client()
	ctx := context.Background()
	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := c.Get(short, "k"); err == nil {
		t.Fatal("etcd answers after Stop")
	}
	s.Start()
	resp, err := c.Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("after restart: %v, %v; want k=v", resp, err)
	}
	s.Compact(ctx)
	s.Compact(ctx) // again at the same revision: fine
}

package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/weftnet/weft/pkg/lease"
)

// etcd keys, flannel's layout (FLANNEL-COMPAT.md).
const (
	// EtcdPrefix is weftd's default --etcd-prefix.
	EtcdPrefix = "/coreos.com/network"
	// ConfigKey holds net-conf.json.
	ConfigKey = EtcdPrefix + "/config"
	// SubnetsPrefix is where the leases live, one key per subnet.
	SubnetsPrefix = EtcdPrefix + "/subnets/"
)

// etcdPort is etcd's client port on the infra namespace's underlay address.
const etcdPort = 2379

// ErrNotFound is returned by Etcd.Get for a missing key.
var ErrNotFound = errors.New("key not found")

// SubnetKey is the etcd key of the lease for subnet (e.g.
// /coreos.com/network/subnets/10.244.3.0-24).
func SubnetKey(subnet netip.Prefix) string {
	return SubnetsPrefix + subnet.Addr().String() + "-" + fmt.Sprint(subnet.Bits())
}

// Etcd is the cluster's etcd server, running in the infra namespace, and a
// client that reaches it from there.
type Etcd struct {
	// Endpoint is the client URL nodes use (http://<infra ip>:2379).
	Endpoint string
	ns       *Netns
	dir      string
	proc     *Process
	client   *clientv3.Client
}

// startEtcd starts etcd in ns listening on ip, with its data and log in dir,
// and waits until it answers.
func startEtcd(ctx context.Context, ns *Netns, ip netip.Addr, dir string) (*Etcd, error) {
	e := &Etcd{Endpoint: fmt.Sprintf("http://%s", netip.AddrPortFrom(ip, etcdPort)), ns: ns, dir: dir}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{e.Endpoint},
		DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(e.dial)},
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", e.Endpoint, err)
	}
	e.client = client
	// e is returned even on error: close it to stop a half-started server.
	return e, e.Start(ctx)
}

// dial connects to etcd from inside the infra namespace.
func (e *Etcd) dial(ctx context.Context, addr string) (net.Conn, error) {
	if _, rest, ok := strings.Cut(addr, "://"); ok {
		addr = rest
	}
	return e.ns.DialContext(ctx, "tcp", addr)
}

// Start starts the etcd server (again, after Stop) on its data directory and
// waits until it answers.
func (e *Etcd) Start(ctx context.Context) error {
	if e.proc != nil {
		if done, _ := e.proc.Exited(); !done {
			return fmt.Errorf("etcd already running (pid %d)", e.proc.PID())
		}
	}
	peer := "http://127.0.0.1:2380"
	cmd := e.ns.Command(context.Background(), "etcd",
		"--name", "infra",
		"--data-dir", filepath.Join(e.dir, "data"),
		"--listen-client-urls", e.Endpoint,
		"--advertise-client-urls", e.Endpoint,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "infra="+peer)
	p, err := StartProcess(cmd, e.LogPath())
	if err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	e.proc = p
	return Eventually(ctx, 30*time.Second, "etcd answers on "+e.Endpoint, func() error {
		if done, err := p.Exited(); done {
			return fmt.Errorf("etcd exited: %v (log %s)", err, e.LogPath())
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := e.client.Get(cctx, "health")
		return err
	})
}

// Stop ends the etcd server (SIGTERM); its data survives for Start.
func (e *Etcd) Stop() error {
	if e.proc == nil {
		return nil
	}
	return e.proc.Stop(syscall.SIGTERM)
}

// LogPath is etcd's log file.
func (e *Etcd) LogPath() string { return filepath.Join(e.dir, "etcd.log") }

// Client is a client that reaches etcd through the infra namespace.
func (e *Etcd) Client() *clientv3.Client { return e.client }

// Put writes key.
func (e *Etcd) Put(ctx context.Context, key, value string) error {
	if _, err := e.client.Put(ctx, key, value); err != nil {
		return fmt.Errorf("etcd put %s: %w", key, err)
	}
	return nil
}

// Get reads key; ErrNotFound if it does not exist.
func (e *Etcd) Get(ctx context.Context, key string) (string, error) {
	resp, err := e.client.Get(ctx, key)
	if err != nil {
		return "", fmt.Errorf("etcd get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("etcd get %s: %w", key, ErrNotFound)
	}
	return string(resp.Kvs[0].Value), nil
}

// List reads every key under prefix.
func (e *Etcd) List(ctx context.Context, prefix string) (map[string]string, error) {
	resp, err := e.client.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcd list %s: %w", prefix, err)
	}
	kv := make(map[string]string, len(resp.Kvs))
	for _, x := range resp.Kvs {
		kv[string(x.Key)] = string(x.Value)
	}
	return kv, nil
}

// Delete removes key.
func (e *Etcd) Delete(ctx context.Context, key string) error {
	if _, err := e.client.Delete(ctx, key); err != nil {
		return fmt.Errorf("etcd delete %s: %w", key, err)
	}
	return nil
}

// ExpireLease revokes the etcd lease attached to key, which deletes the key
// exactly as if its TTL had run out.
func (e *Etcd) ExpireLease(ctx context.Context, key string) error {
	resp, err := e.client.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("etcd get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return fmt.Errorf("expire %s: %w", key, ErrNotFound)
	}
	id := clientv3.LeaseID(resp.Kvs[0].Lease)
	if id == clientv3.NoLease {
		return fmt.Errorf("expire %s: key has no etcd lease (a permanent reservation)", key)
	}
	if _, err := e.client.Revoke(ctx, id); err != nil {
		return fmt.Errorf("revoke etcd lease %x of %s: %w", int64(id), key, err)
	}
	return nil
}

// Leases reads the subnet leases, keyed by subnet, one entry per family: a
// dual-stack lease is two, and its IPv6 entry has PublicIPv6 and
// BackendV6Data as PublicIP and BackendData (see addFamilyLeases).
func (e *Etcd) Leases(ctx context.Context) (map[netip.Prefix]lease.Attrs, error) {
	kv, err := e.List(ctx, SubnetsPrefix)
	if err != nil {
		return nil, err
	}
	out := make(map[netip.Prefix]lease.Attrs, len(kv))
	for k, v := range kv {
		subnets, err := parseSubnetKey(strings.TrimPrefix(k, SubnetsPrefix))
		if err != nil {
			return nil, err
		}
		var val LeaseValue
		if err := json.Unmarshal([]byte(v), &val); err != nil {
			return nil, fmt.Errorf("lease %s: %w", k, err)
		}
		if err := addFamilyLeases(out, "lease "+k, subnets, val.BackendType, val.parts()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// LeaseKey is the key of the lease that holds subnet (of either family:
// a dual-stack key names both).
func (e *Etcd) LeaseKey(ctx context.Context, subnet netip.Prefix) (string, error) {
	kv, err := e.List(ctx, SubnetsPrefix)
	if err != nil {
		return "", err
	}
	for k := range kv {
		subnets, err := parseSubnetKey(strings.TrimPrefix(k, SubnetsPrefix))
		if err == nil && slices.Contains(subnets, subnet) {
			return k, nil
		}
	}
	return "", fmt.Errorf("lease of %s: %w", subnet, ErrNotFound)
}

// close stops the server and the client.
func (e *Etcd) close() error {
	if e == nil {
		return nil
	}
	return errors.Join(e.Stop(), e.client.Close())
}

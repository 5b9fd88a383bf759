// Package etcd is the etcd lease source: flannel's etcd subnet manager layout
// (<prefix>/config, <prefix>/subnets/10.244.3.0-24 with flannel's lease JSON),
// so weft and flannel nodes can share one etcd.
package etcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"

	"github.com/weftnet/weft/pkg/backoff"
	"github.com/weftnet/weft/pkg/lease"
	"github.com/weftnet/weft/pkg/netconf"
)

// Defaults for Config, flannel's where flannel has them.
const (
	DefaultPrefix         = "/coreos.com/network"
	DefaultTTL            = 24 * time.Hour
	DefaultRenewMargin    = 60 * time.Minute
	DefaultRetryInterval  = time.Minute
	DefaultMinBackoff     = time.Second
	DefaultRequestTimeout = 10 * time.Second
)

// A silent connection to etcd (a peer gone without a reset, a NAT that
// dropped the flow) is found by gRPC keepalive: while a watch or another
// request is open and nothing arrives for keepAliveTime, the client pings,
// and closes the connection when the ping is not answered within
// keepAliveTimeout, so it is declared dead at most 15 s after it went quiet.
// keepAliveTime stays above etcd's --grpc-keepalive-min-time (5 s), which
// ends connections that ping more often. The client then reconnects, at
// most reconnectMaxDelay apart (gRPC's default is 2 min), each attempt
// bounded by connectTimeout, and the watch resumes from the last revision
// it saw (or lists again if that was compacted).
const (
	keepAliveTime     = 10 * time.Second
	keepAliveTimeout  = 5 * time.Second
	reconnectMaxDelay = 5 * time.Second
	connectTimeout    = 5 * time.Second
)

// Config says how to reach etcd and how to hold leases. Zero fields take the
// defaults above.
type Config struct {
	// Endpoints are etcd client URLs (--etcd-endpoints); an entry may hold
	// several, comma-separated, as flannel's flag does.
	Endpoints []string
	// Prefix is the key prefix (--etcd-prefix).
	Prefix string
	// KeyFile, CertFile and CAFile enable TLS (--etcd-keyfile, ...).
	KeyFile, CertFile, CAFile string
	// Username and Password enable etcd authentication.
	Username, Password string
	// TTL is the etcd lease TTL of a subnet lease (flannel: 86400 s).
	TTL time.Duration
	// RenewMargin is how long before expiry Keep renews
	// (--subnet-lease-renew-margin); it must be shorter than TTL.
	RenewMargin time.Duration
	// RetryInterval caps the backoff between retries of Keep and Watch while
	// etcd fails (flannel retries a failed renewal every minute).
	RetryInterval time.Duration
	// MinBackoff is the first retry delay; it doubles up to RetryInterval.
	MinBackoff time.Duration
	// RequestTimeout bounds each etcd request.
	RequestTimeout time.Duration
	// OnRenew, if set, is called after each renewal attempt with its error
	// (nil on success), e.g. to count renewals in metrics.
	OnRenew func(error)

	// dial, if set, opens the connections to etcd (tests dial inside a
	// network namespace with it).
	dial func(ctx context.Context, addr string) (net.Conn, error)
}

func (c *Config) setDefaults() {
	var eps []string
	for _, e := range c.Endpoints {
		for ep := range strings.SplitSeq(e, ",") {
			if ep = strings.TrimSpace(ep); ep != "" {
				eps = append(eps, ep)
			}
		}
	}
	c.Endpoints = eps
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.RenewMargin == 0 {
		c.RenewMargin = DefaultRenewMargin
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
}

func (c *Config) validate() error {
	switch {
	case len(c.Endpoints) == 0:
		return errors.New("no etcd endpoints: set --etcd-endpoints")
	case c.TTL < 2*time.Second:
		return fmt.Errorf("lease TTL %v is too short: use at least 2s", c.TTL)
	case c.RenewMargin <= 0 || c.RenewMargin >= c.TTL:
		return fmt.Errorf("--subnet-lease-renew-margin %v must be positive and shorter than the lease TTL %v", c.RenewMargin, c.TTL)
	case c.MinBackoff <= 0 || c.RetryInterval < c.MinBackoff:
		return fmt.Errorf("retry interval %v must be at least the minimum backoff %v", c.RetryInterval, c.MinBackoff)
	}
	return nil
}

// Manager is the etcd lease source; it implements lease.Manager.
type Manager struct {
	cfg Config
	cli *clientv3.Client
}

var _ lease.Manager = (*Manager)(nil)

// New validates cfg and connects to etcd. Without Username it does not wait
// for etcd to be reachable: requests fail (and Keep and Watch retry) until
// it is. With Username it authenticates at once and fails if etcd is down.
func New(cfg Config) (*Manager, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("etcd lease manager: %w", err)
	}
	cc := clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.RequestTimeout,
		Username:    cfg.Username,
		Password:    cfg.Password,
		// Failures are reported through slog by the callers.
		Logger:               zap.NewNop(),
		DialKeepAliveTime:    keepAliveTime,
		DialKeepAliveTimeout: keepAliveTimeout,
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: time.Second, Multiplier: 1.6, Jitter: 0.2, MaxDelay: reconnectMaxDelay},
			MinConnectTimeout: connectTimeout,
		})},
	}
	if cfg.dial != nil {
		cc.DialOptions = append(cc.DialOptions, grpc.WithContextDialer(cfg.dial))
	}
	if cfg.KeyFile != "" || cfg.CertFile != "" || cfg.CAFile != "" {
		info := transport.TLSInfo{KeyFile: cfg.KeyFile, CertFile: cfg.CertFile, TrustedCAFile: cfg.CAFile}
		tc, err := info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd TLS (--etcd-keyfile/--etcd-certfile/--etcd-cafile): %w", err)
		}
		cc.TLS = tc
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("connect to etcd %v: %w", cfg.Endpoints, err)
	}
	return &Manager{cfg: cfg, cli: cli}, nil
}

// Close releases the etcd connection; end Keep and Watch first. Leases stay
// in etcd until they expire.
func (m *Manager) Close() error {
	if err := m.cli.Close(); err != nil {
		return fmt.Errorf("close etcd client: %w", err)
	}
	return nil
}

func (m *Manager) configKey() string { return m.cfg.Prefix + "/config" }

func (m *Manager) subnetsPrefix() string { return m.cfg.Prefix + "/subnets/" }

// request derives the context of one etcd request.
func (m *Manager) request(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, m.cfg.RequestTimeout)
}

// retryBackoff paces the retries of Keep and Watch.
func (m *Manager) retryBackoff() *backoff.Backoff {
	return &backoff.Backoff{Min: m.cfg.MinBackoff, Max: m.cfg.RetryInterval}
}

// NetworkConfig reads and parses net-conf.json from <prefix>/config.
func (m *Manager) NetworkConfig(ctx context.Context) (*netconf.Config, error) {
	key := m.configKey()
	rctx, cancel := m.request(ctx)
	defer cancel()
	resp, err := m.cli.Get(rctx, key)
	if err != nil {
		return nil, fmt.Errorf("read network config %s from etcd: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("network config %s not found in etcd: put net-conf.json there (etcdctl put %s '{\"Network\":\"10.244.0.0/16\",\"Backend\":{\"Type\":\"vxlan\"}}')", key, key)
	}
	cfg, err := netconf.Parse(resp.Kvs[0].Value)
	if err != nil {
		return nil, fmt.Errorf("network config %s in etcd: %w", key, err)
	}
	return cfg, nil
}

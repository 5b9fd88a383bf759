// Package kube is the Kubernetes lease source (flannel's --kube-subnet-mgr).
// A node's subnet is its Node's spec.podCIDR, assigned by
// kube-controller-manager; each node publishes its public IP and backend data
// in flannel's Node annotations, so weft and flannel nodes see each other.
package kube

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weftnet/weft/pkg/lease"
	"github.com/weftnet/weft/pkg/netconf"
)

// Defaults for the empty fields of Config.
const (
	DefaultAnnotationPrefix = "flannel.alpha.coreos.com"
	DefaultNetConfPath      = "/etc/kube-flannel/net-conf.json"
)

// Config configures the Kubernetes lease source.
type Config struct {
	// Kubeconfig is a kubeconfig file; empty means the in-cluster
	// ServiceAccount credentials.
	Kubeconfig string
	// APIURL overrides the API server address (flannel's --kube-api-url).
	APIURL string
	// NodeName is this node's Node name; empty means $NODE_NAME.
	NodeName string
	// AnnotationPrefix prefixes the annotation keys; empty means
	// DefaultAnnotationPrefix.
	AnnotationPrefix string
	// NetConfPath is the net-conf.json file (the ConfigMap mount); empty
	// means DefaultNetConfPath.
	NetConfPath string
	// SetNodeNetworkUnavailable lets SetNetworkAvailable clear the Node's
	// NetworkUnavailable condition.
	SetNodeNetworkUnavailable bool
	// Logger receives the manager's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Manager is the Kubernetes lease source. It implements lease.Manager.
type Manager struct {
	cfg    Config
	client nodeClient
	keys   annotationKeys
	log    *slog.Logger
	nodes  *nodeCache

	mu      sync.Mutex
	netconf *netconf.Config
	base    *lease.Attrs // the attrs given to Acquire
}

var _ lease.Manager = (*Manager)(nil)

// New connects to the API server described by cfg and starts a Node informer
// that runs until ctx ends. It does not wait for the API server to answer.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	rc, err := restConfig(cfg)
	if err != nil {
		return nil, err
	}
	client, err := newRESTNodes(rc)
	if err != nil {
		return nil, err
	}
	return newManager(ctx, cfg, client, rc.Host)
}

// newManager fills cfg's defaults and starts the Node informer on client.
func newManager(ctx context.Context, cfg Config, client nodeClient, host string) (*Manager, error) {
	if cfg.NodeName == "" {
		cfg.NodeName = os.Getenv("NODE_NAME")
	}
	if cfg.NodeName == "" {
		return nil, fmt.Errorf("kube subnet manager: node name unknown: set NODE_NAME (downward API fieldRef spec.nodeName)")
	}
	if cfg.AnnotationPrefix == "" {
		cfg.AnnotationPrefix = DefaultAnnotationPrefix
	}
	if cfg.NetConfPath == "" {
		cfg.NetConfPath = DefaultNetConfPath
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	keys, err := newAnnotationKeys(cfg.AnnotationPrefix)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("node", cfg.NodeName)
	m := &Manager{cfg: cfg, client: client, keys: keys, log: log, nodes: newNodeCache(client, host, log)}
	go m.nodes.run(ctx)
	return m, nil
}

// restConfig builds the client configuration: the kubeconfig file if given,
// else the in-cluster credentials; APIURL overrides the server address.
func restConfig(cfg Config) (*rest.Config, error) {
	var rc *rest.Config
	var err error
	if cfg.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags(cfg.APIURL, cfg.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", cfg.Kubeconfig, err)
		}
	} else {
		rc, err = rest.InClusterConfig()
		switch {
		case err != nil && cfg.APIURL == "":
			return nil, fmt.Errorf("no Kubernetes credentials (%w): run in a pod with a ServiceAccount, or pass --kubeconfig-file", err)
		case err != nil:
			rc = &rest.Config{Host: cfg.APIURL}
		case cfg.APIURL != "":
			rc.Host = cfg.APIURL
		}
	}
	rc.UserAgent = "weftd"
	return rc, nil
}

// NetworkConfig reads and validates net-conf.json from Config.NetConfPath.
// The first valid configuration is kept: it is what this process runs with.
func (m *Manager) NetworkConfig(ctx context.Context) (*netconf.Config, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.netconf != nil {
		return m.netconf, nil
	}
	data, err := os.ReadFile(m.cfg.NetConfPath)
	if err != nil {
		return nil, fmt.Errorf("read network config: %w", err)
	}
	nc, err := netconf.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("network config %s: %w", m.cfg.NetConfPath, err)
	}
	m.netconf = nc
	return nc, nil
}

// Package cni is weft's CNI plugin: it reads flannel's plugin configuration
// and the node's subnet file, and delegates to bridge + host-local as
// flannel's plugin does, so it can be installed as /opt/cni/bin/flannel.
//
// Differences from flannel's plugin: without "subnetFile" it reads
// /run/weft/subnet.env, falling back to flannel's /run/flannel/subnet.env;
// host-local routes to the cluster network name the gateway (same kernel
// route, but CHECK of older bridge plugins passes); STATUS reports the plugin
// unavailable until the subnet file exists, and GC drops saved configs of
// containers the runtime no longer has. DEL without a saved config succeeds.
package cni

import (
	"encoding/json"
	"fmt"

	"github.com/weftnet/weft/pkg/subnetfile"
)

// Defaults of the plugin's configuration fields.
const (
	// DefaultSubnetFile is weftd's subnet file, tried first when the config
	// has no "subnetFile".
	DefaultSubnetFile = subnetfile.DefaultPath
	// FlannelSubnetFile is flannel's subnet file, the fallback when weft's
	// does not exist (migration from flannel, or weftd run with flannel's path).
	FlannelSubnetFile = "/run/flannel/subnet.env"
	// DefaultDataDir is where the delegate config of each container is kept
	// for DEL; flannel's directory, so weft can delete pods flannel added.
	DefaultDataDir = "/var/lib/cni/flannel"
)

// NetConf is the plugin's network configuration, in flannel's format. The
// "type" is not checked, so the same config works for "flannel" and "weft".
type NetConf struct {
	// CNIVersion is the spec version of the config; passed to the delegate.
	CNIVersion string `json:"cniVersion"`
	// Name is the network name; it becomes the delegate's name.
	Name string `json:"name"`
	// Type is the plugin type the runtime invoked us as.
	Type string `json:"type"`
	// SubnetFile overrides the subnet file path (see DefaultSubnetFile).
	SubnetFile string `json:"subnetFile,omitempty"`
	// DataDir overrides DefaultDataDir.
	DataDir string `json:"dataDir,omitempty"`
	// Delegate holds the delegate plugin's config; unset keys are filled in.
	Delegate map[string]any `json:"delegate,omitempty"`
	// IPAM is the base of the delegate's ipam section.
	IPAM map[string]any `json:"ipam,omitempty"`
	// RuntimeConfig is passed to the delegate unchanged.
	RuntimeConfig map[string]any `json:"runtimeConfig,omitempty"`
}

// ParseNetConf decodes the plugin's stdin config and applies the defaults
// that do not depend on the filesystem (DataDir).
func ParseNetConf(data []byte) (*NetConf, error) {
	n := &NetConf{}
	if err := json.Unmarshal(data, n); err != nil {
		return nil, fmt.Errorf("parse CNI network config: %w", err)
	}
	if n.Name == "" {
		return nil, fmt.Errorf(`CNI network config has no "name": set the network name (flannel's is "cbr0")`)
	}
	if n.DataDir == "" {
		n.DataDir = DefaultDataDir
	}
	return n, nil
}

package cni

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/weftnet/weft/pkg/subnetfile"
)

// Delegate plugin defaults (flannel's).
const (
	defaultDelegate = "bridge"
	defaultIPAM     = "host-local"
	defaultBridge   = "cni0" // the bridge plugin's default "bridge"
)

// DelegateConf builds the delegate plugin's network config from n and the
// node's subnet env, as flannel does: keys set in n.Delegate win, except
// "name", "cniVersion" and "ipam", which are always set. The ipam section is
// n.IPAM with "type" defaulting to host-local, "ranges" set to the node's
// subnets (replacing any "subnet"/"ranges") and "routes" extended with the
// cluster networks (via the subnet's gateway for host-local).
func DelegateConf(n *NetConf, env subnetfile.Env) (map[string]any, error) {
	d := maps.Clone(n.Delegate)
	if d == nil {
		d = map[string]any{}
	}
	typ, err := delegateType(d)
	if err != nil {
		return nil, err
	}
	d["type"] = typ
	d["name"] = n.Name
	if n.CNIVersion != "" {
		d["cniVersion"] = n.CNIVersion
	}
	setDefault(d, "ipMasq", !env.IPMasq)
	if env.MTU > 0 {
		setDefault(d, "mtu", env.MTU)
	}
	if typ == defaultDelegate {
		setDefault(d, "isGateway", true)
	}
	if n.RuntimeConfig != nil {
		d["runtimeConfig"] = n.RuntimeConfig
	}
	ipam, err := delegateIPAM(n.IPAM, env)
	if err != nil {
		return nil, err
	}
	d["ipam"] = ipam
	return d, nil
}

// delegateType returns d's "type", or bridge when it is unset.
func delegateType(d map[string]any) (string, error) {
	v, ok := d["type"]
	if !ok {
		return defaultDelegate, nil
	}
	s, ok := v.(string)
	if !ok || s == "" {
		return "", fmt.Errorf(`CNI config "delegate.type" must be a plugin name, got %v`, v)
	}
	return s, nil
}

// bridgeName is the bridge a bridge delegate attaches pods to.
func bridgeName(d map[string]any) string {
	if s, ok := d["bridge"].(string); ok && s != "" {
		return s
	}
	return defaultBridge
}

func setDefault(m map[string]any, key string, v any) {
	if _, ok := m[key]; !ok {
		m[key] = v
	}
}

// delegateIPAM builds the delegate's ipam section on top of base.
func delegateIPAM(base map[string]any, env subnetfile.Env) (map[string]any, error) {
	ipam := maps.Clone(base)
	if ipam == nil {
		ipam = map[string]any{}
	}
	setDefault(ipam, "type", defaultIPAM)
	routes, err := ipamRoutes(ipam["routes"])
	if err != nil {
		return nil, err
	}
	// host-local's gateway is the subnet's first address; naming it in the
	// route (flannel leaves it out) lets CHECK of bridge < v1.2 find the
	// kernel route, which always has it.
	hostLocal := ipam["type"] == defaultIPAM
	var ranges []any
	for _, p := range []struct{ network, subnet netip.Prefix }{
		{env.Network, env.Subnet},
		{env.IPv6Network, env.IPv6Subnet},
	} {
		if !p.subnet.IsValid() {
			continue
		}
		ranges = append(ranges, []any{map[string]any{"subnet": p.subnet.Masked().String()}})
		if !p.network.IsValid() {
			continue
		}
		route := map[string]any{"dst": p.network.Masked().String()}
		if hostLocal {
			route["gw"] = p.subnet.Masked().Addr().Next().String()
		}
		routes = addRoute(routes, route)
	}
	if len(ranges) == 0 {
		return nil, fmt.Errorf("subnet file has no FLANNEL_SUBNET or FLANNEL_IPV6_SUBNET: check weftd's --subnet-file output")
	}
	delete(ipam, "subnet") // the subnet file's ranges replace a host-local "subnet"
	ipam["ranges"] = ranges
	if len(routes) > 0 {
		ipam["routes"] = routes
	}
	return ipam, nil
}

// ipamRoutes checks the config's ipam "routes" (a list of route objects).
func ipamRoutes(v any) ([]any, error) {
	if v == nil {
		return nil, nil
	}
	routes, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf(`CNI config "ipam.routes" must be a list of {"dst": ...} objects, got %v`, v)
	}
	return slices.Clone(routes), nil // base belongs to the caller's config
}

// addRoute appends route unless routes already has one to its "dst".
func addRoute(routes []any, route map[string]any) []any {
	for _, r := range routes {
		if m, ok := r.(map[string]any); ok && m["dst"] == route["dst"] {
			return routes
		}
	}
	return append(routes, route)
}

// Package subnetfile writes and reads the node's subnet file (subnet.env),
// flannel's hand-off to the CNI plugin: FLANNEL_NETWORK and FLANNEL_SUBNET
// (the subnet's first address) with IPv4, FLANNEL_IPV6_NETWORK and
// FLANNEL_IPV6_SUBNET with IPv6 (an IPv6-only node has only these, as
// flanneld writes it), FLANNEL_MTU, FLANNEL_IPMASQ, and weft's WEFT_BPF_DIR
// and WEFT_ENDPOINT_DIR when the eBPF datapath is active.
package subnetfile

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/weftnet/weft/pkg/atomicfile"
)

// DefaultPath is weft's default subnet file (flannel's is
// /run/flannel/subnet.env).
const DefaultPath = "/run/weft/subnet.env"

// The file's variables.
const (
	keyNetwork     = "FLANNEL_NETWORK"
	keySubnet      = "FLANNEL_SUBNET"
	keyMTU         = "FLANNEL_MTU"
	keyIPMasq      = "FLANNEL_IPMASQ"
	keyIPv6Network = "FLANNEL_IPV6_NETWORK"
	keyIPv6Subnet  = "FLANNEL_IPV6_SUBNET"
	keyBPFDir      = "WEFT_BPF_DIR"
	keyEndpointDir = "WEFT_ENDPOINT_DIR"
)

// Env is the content of a subnet file.
type Env struct {
	// Network is the cluster's IPv4 pod CIDR; zero without IPv4.
	Network netip.Prefix
	// Subnet is this node's IPv4 pod subnet, masked (10.244.1.0/24); the
	// file holds its first address (FLANNEL_SUBNET=10.244.1.1/24). Zero
	// without IPv4.
	Subnet netip.Prefix
	// MTU is the MTU for pod interfaces.
	MTU int
	// IPMasq is true when weftd masquerades pod traffic leaving the
	// cluster (so the bridge plugin must not).
	IPMasq bool
	// IPv6Network and IPv6Subnet are the IPv6 pair; zero without IPv6.
	IPv6Network, IPv6Subnet netip.Prefix
	// BPFDir is the eBPF datapath's pin directory; empty when the eBPF
	// datapath is not active.
	BPFDir string
	// EndpointDir is where the CNI plugin records each pod's endpoint for
	// the eBPF datapath (pkg/endpoint); empty when the eBPF datapath is not
	// active or an older weftd wrote the file.
	EndpointDir string
}

// Write writes e to path atomically (a temporary file renamed over path),
// creating path's directory if needed. The file's mode is 0644.
func Write(path string, e Env) error {
	data, err := e.marshal()
	if err != nil {
		return fmt.Errorf("subnet file %s: %w", path, err)
	}
	if err := atomicfile.Write(path, data, 0o644, 0o755); err != nil {
		return fmt.Errorf("subnet file: %w", err)
	}
	return nil
}

// marshal renders e in flannel's order and format.
func (e Env) marshal() ([]byte, error) {
	if e.Network.IsValid() != e.Subnet.IsValid() || e.IPv6Network.IsValid() != e.IPv6Subnet.IsValid() {
		return nil, fmt.Errorf("network %v and subnet %v, IPv6 network %v and subnet %v: each pair must be set together", e.Network, e.Subnet, e.IPv6Network, e.IPv6Subnet)
	}
	if !e.Subnet.IsValid() && !e.IPv6Subnet.IsValid() {
		return nil, fmt.Errorf("neither an IPv4 nor an IPv6 subnet is set")
	}
	var b bytes.Buffer
	if e.Subnet.IsValid() {
		fmt.Fprintf(&b, "%s=%s\n%s=%s\n", keyNetwork, e.Network, keySubnet, firstAddr(e.Subnet))
	}
	if e.IPv6Subnet.IsValid() {
		fmt.Fprintf(&b, "%s=%s\n%s=%s\n", keyIPv6Network, e.IPv6Network, keyIPv6Subnet, firstAddr(e.IPv6Subnet))
	}
	fmt.Fprintf(&b, "%s=%d\n", keyMTU, e.MTU)
	fmt.Fprintf(&b, "%s=%t\n", keyIPMasq, e.IPMasq)
	if e.BPFDir != "" {
		fmt.Fprintf(&b, "%s=%s\n", keyBPFDir, e.BPFDir)
	}
	if e.EndpointDir != "" {
		fmt.Fprintf(&b, "%s=%s\n", keyEndpointDir, e.EndpointDir)
	}
	return b.Bytes(), nil
}

// firstAddr is the subnet's first usable address with the subnet's length,
// e.g. 10.244.1.1/24 for 10.244.1.0/24.
func firstAddr(p netip.Prefix) netip.Prefix {
	return netip.PrefixFrom(p.Masked().Addr().Next(), p.Bits())
}

// Read parses the subnet file at path, written by weftd or flanneld. A
// missing file gives an error that matches fs.ErrNotExist.
func Read(path string) (Env, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Env{}, fmt.Errorf("read subnet file: %w", err)
	}
	e, err := parse(data)
	if err != nil {
		return Env{}, fmt.Errorf("subnet file %s: %w", path, err)
	}
	return e, nil
}

// parse reads KEY=VALUE lines; blank lines, comments and unknown keys are
// skipped (other tools may add their own variables).
func parse(data []byte) (Env, error) {
	var e Env
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return Env{}, fmt.Errorf("line %d: %q is not KEY=VALUE", n, line)
		}
		if err := e.set(key, val); err != nil {
			return Env{}, fmt.Errorf("line %d: %w", n, err)
		}
		seen[key] = true
	}
	if err := sc.Err(); err != nil {
		return Env{}, err
	}
	for _, k := range []string{keyMTU, keyIPMasq} {
		if !seen[k] {
			return Env{}, fmt.Errorf("%s is missing", k)
		}
	}
	// A family's pair comes whole; one of them at least (flanneld writes
	// only the IPv6 pair for an IPv6-only node).
	for _, pair := range [][2]string{{keyNetwork, keySubnet}, {keyIPv6Network, keyIPv6Subnet}} {
		if seen[pair[0]] != seen[pair[1]] {
			missing := pair[0]
			if seen[missing] {
				missing = pair[1]
			}
			return Env{}, fmt.Errorf("%s is missing", missing)
		}
	}
	if !seen[keySubnet] && !seen[keyIPv6Subnet] {
		return Env{}, fmt.Errorf("%s and %s are missing: the file names no subnet", keySubnet, keyIPv6Subnet)
	}
	return e, nil
}

// set assigns one variable.
func (e *Env) set(key, val string) error {
	var err error
	switch key {
	case keyNetwork:
		e.Network, err = parsePrefix(key, val, 32)
	case keySubnet:
		e.Subnet, err = parsePrefix(key, val, 32)
	case keyIPv6Network:
		e.IPv6Network, err = parsePrefix(key, val, 128)
	case keyIPv6Subnet:
		e.IPv6Subnet, err = parsePrefix(key, val, 128)
	case keyMTU:
		if e.MTU, err = strconv.Atoi(val); err != nil || e.MTU <= 0 {
			return fmt.Errorf("%s=%q is not a positive number", key, val)
		}
	case keyIPMasq:
		if e.IPMasq, err = strconv.ParseBool(val); err != nil {
			return fmt.Errorf("%s=%q is not true or false", key, val)
		}
	case keyBPFDir:
		e.BPFDir = val
	case keyEndpointDir:
		e.EndpointDir = val
	}
	return err
}

// parsePrefix parses a CIDR of the given address length and masks it.
func parsePrefix(key, val string, bits int) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(val)
	if err != nil || p.Addr().BitLen() != bits {
		family := "IPv4"
		if bits == 128 {
			family = "IPv6"
		}
		return netip.Prefix{}, fmt.Errorf("%s=%q is not an %s CIDR", key, val, family)
	}
	return p.Masked(), nil
}

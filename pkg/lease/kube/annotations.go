package kube

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/weftnet/weft/pkg/lease"
)

// annotationKeys are flannel's Node annotation keys under one prefix.
type annotationKeys struct {
	subnetManager, backendType, backendData, publicIP string
	backendV6Data, publicIPv6                         string
	// Set by the user, never by weft: the address to publish instead.
	publicIPOverwrite, publicIPv6Overwrite string
}

func newAnnotationKeys(prefix string) (annotationKeys, error) {
	p := strings.TrimSuffix(prefix, "/") + "/"
	k := annotationKeys{
		subnetManager:       p + "kube-subnet-manager",
		backendType:         p + "backend-type",
		backendData:         p + "backend-data",
		backendV6Data:       p + "backend-v6-data",
		publicIP:            p + "public-ip",
		publicIPv6:          p + "public-ipv6",
		publicIPOverwrite:   p + "public-ip-overwrite",
		publicIPv6Overwrite: p + "public-ipv6-overwrite",
	}
	if errs := validation.IsQualifiedName(k.publicIPv6Overwrite); len(errs) > 0 {
		return k, fmt.Errorf("annotation prefix %q: %s", prefix, strings.Join(errs, "; "))
	}
	return k, nil
}

// patch returns the annotation values that publish a, and whether n already
// carries them. A nil value deletes a stale key: the public IP and backend
// data of a family a does not have.
func (k annotationKeys) patch(n *corev1.Node, a lease.Attrs) (map[string]*string, bool) {
	str := func(s string) *string { return &s }
	data := func(d json.RawMessage) *string {
		if len(d) == 0 {
			return str("null")
		}
		return str(string(d))
	}
	want := map[string]*string{
		k.subnetManager: str("true"),
		k.backendType:   str(a.BackendType),
		k.backendData:   nil,
		k.publicIP:      nil,
		k.backendV6Data: nil,
		k.publicIPv6:    nil,
	}
	if a.PublicIP.IsValid() {
		want[k.publicIP], want[k.backendData] = str(a.PublicIP.String()), data(a.BackendData)
	}
	if a.PublicIPv6 != nil {
		want[k.publicIPv6], want[k.backendV6Data] = str(a.PublicIPv6.String()), data(a.BackendV6Data)
	}
	for key, v := range want {
		cur, ok := n.Annotations[key]
		if (v == nil && ok) || (v != nil && (!ok || cur != *v)) {
			return want, false
		}
	}
	return want, true
}

// leaseOf returns the lease node n publishes: a half for each family with a
// podCIDR and that family's public IP annotation (flannel's IPv6-only
// nodes may publish public-ip 0.0.0.0, which counts as none). ok is false
// when n publishes no half; err says why a published lease cannot be used.
func (k annotationKeys) leaseOf(n *corev1.Node) (l lease.Lease, ok bool, err error) {
	ann := n.Annotations
	if ann[k.backendType] == "" {
		return l, false, nil
	}
	v4, v6, err := podCIDRs(n)
	if err != nil {
		return l, false, err
	}
	l.Attrs.BackendType = ann[k.backendType]
	if v4.IsValid() {
		if l.Attrs.PublicIP, l.Attrs.BackendData, err = k.half(ann, k.publicIP, k.backendData, false); err != nil {
			return l, false, err
		}
		if l.Attrs.PublicIP.IsValid() {
			l.Subnet = v4
		}
	}
	if v6.IsValid() {
		ip6, data, err := k.half(ann, k.publicIPv6, k.backendV6Data, true)
		if err != nil {
			return l, false, err
		}
		if ip6.IsValid() {
			l.IPv6Subnet, l.Attrs.PublicIPv6, l.Attrs.BackendV6Data = v6, &ip6, data
		}
	}
	return l, l.Subnet.IsValid() || l.IPv6Subnet.IsValid(), nil
}

// half reads one family's public IP and backend data annotations; the IP
// is invalid when the node publishes none.
func (k annotationKeys) half(ann map[string]string, ipKey, dataKey string, v6 bool) (netip.Addr, json.RawMessage, error) {
	family := "IPv4"
	if v6 {
		family = "IPv6"
	}
	s := ann[ipKey]
	if s == "" {
		return netip.Addr{}, nil, nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Is6() != v6 || ip.Is4In6() {
		return netip.Addr{}, nil, fmt.Errorf("annotation %s=%q is not an %s address", ipKey, s, family)
	}
	if ip.IsUnspecified() {
		return netip.Addr{}, nil, nil
	}
	var data json.RawMessage
	if d, set := ann[dataKey]; set {
		if !json.Valid([]byte(d)) {
			return netip.Addr{}, nil, fmt.Errorf("annotation %s=%q is not JSON", dataKey, d)
		}
		data = json.RawMessage(d)
	}
	return ip, data, nil
}

// podCIDRs returns n's pod subnets (masked) of each family from
// spec.podCIDRs in either order, or spec.podCIDR on old API servers; a
// family without one is the zero Prefix.
func podCIDRs(n *corev1.Node) (v4, v6 netip.Prefix, err error) {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	if len(cidrs) > 2 {
		return v4, v6, fmt.Errorf("node %q has %d podCIDRs %v: want one per address family", n.Name, len(cidrs), cidrs)
	}
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return v4, v6, fmt.Errorf("podCIDR %q: %w", c, err)
		}
		dst := &v4
		if p.Addr().Is6() {
			dst = &v6
		}
		if dst.IsValid() {
			return v4, v6, fmt.Errorf("node %q has two podCIDRs of one family %v: want one per address family", n.Name, cidrs)
		}
		*dst = p.Masked()
	}
	return v4, v6, nil
}

// sameLease reports whether a and b are the same lease with the same attrs.
func sameLease(a, b lease.Lease) bool {
	return a.Subnet == b.Subnet && a.IPv6Subnet == b.IPv6Subnet && a.Expiration.Equal(b.Expiration) &&
		a.Attrs.PublicIP == b.Attrs.PublicIP && addrOf(a.Attrs.PublicIPv6) == addrOf(b.Attrs.PublicIPv6) &&
		a.Attrs.BackendType == b.Attrs.BackendType && bytes.Equal(a.Attrs.BackendData, b.Attrs.BackendData) &&
		bytes.Equal(a.Attrs.BackendV6Data, b.Attrs.BackendV6Data)
}

// addrOf is *p, or the zero Addr for nil.
func addrOf(p *netip.Addr) netip.Addr {
	if p == nil {
		return netip.Addr{}
	}
	return *p
}

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
	subnetManager, backendType, backendData, publicIP, publicIPv6 string
	// Set by the user, never by weft: the address to publish instead.
	publicIPOverwrite, publicIPv6Overwrite string
}

func newAnnotationKeys(prefix string) (annotationKeys, error) {
	p := strings.TrimSuffix(prefix, "/") + "/"
	k := annotationKeys{
		subnetManager:       p + "kube-subnet-manager",
		backendType:         p + "backend-type",
		backendData:         p + "backend-data",
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
// carries them. A nil value deletes a stale key.
func (k annotationKeys) patch(n *corev1.Node, a lease.Attrs) (map[string]*string, bool) {
	data := "null"
	if len(a.BackendData) > 0 {
		data = string(a.BackendData)
	}
	str := func(s string) *string { return &s }
	want := map[string]*string{
		k.subnetManager: str("true"),
		k.backendType:   str(a.BackendType),
		k.backendData:   str(data),
		k.publicIP:      str(a.PublicIP.String()),
		k.publicIPv6:    nil,
	}
	if a.PublicIPv6 != nil {
		want[k.publicIPv6] = str(a.PublicIPv6.String())
	}
	for key, v := range want {
		cur, ok := n.Annotations[key]
		if (v == nil && ok) || (v != nil && (!ok || cur != *v)) {
			return want, false
		}
	}
	return want, true
}

// leaseOf returns the lease node n publishes. ok is false when n publishes
// none (no IPv4 podCIDR or no backend annotations); err says why a
// published lease cannot be used.
func (k annotationKeys) leaseOf(n *corev1.Node) (l lease.Lease, ok bool, err error) {
	ann := n.Annotations
	if ann[k.backendType] == "" {
		return l, false, nil
	}
	subnet, err := podCIDRv4(n)
	if err != nil || !subnet.IsValid() {
		return l, false, err
	}
	ip, err := netip.ParseAddr(ann[k.publicIP])
	if err != nil || !ip.Is4() {
		return l, false, fmt.Errorf("annotation %s=%q is not an IPv4 address", k.publicIP, ann[k.publicIP])
	}
	data := []byte(ann[k.backendData])
	if !json.Valid(data) {
		return l, false, fmt.Errorf("annotation %s=%q is not JSON", k.backendData, ann[k.backendData])
	}
	l = lease.Lease{Subnet: subnet, Attrs: lease.Attrs{PublicIP: ip, BackendType: ann[k.backendType], BackendData: data}}
	if s, set := ann[k.publicIPv6]; set && s != "" {
		ip6, err := netip.ParseAddr(s)
		if err != nil || !ip6.Is6() {
			return l, false, fmt.Errorf("annotation %s=%q is not an IPv6 address", k.publicIPv6, s)
		}
		l.Attrs.PublicIPv6 = &ip6
	}
	return l, true, nil
}

// podCIDRv4 returns n's IPv4 pod subnet (masked) from spec.podCIDRs, or
// spec.podCIDR on old API servers; the zero Prefix if none is assigned.
func podCIDRv4(n *corev1.Node) (netip.Prefix, error) {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("podCIDR %q: %w", c, err)
		}
		if p.Addr().Is4() {
			return p.Masked(), nil
		}
	}
	return netip.Prefix{}, nil
}

// sameLease reports whether a and b are the same lease with the same attrs.
func sameLease(a, b lease.Lease) bool {
	v6 := func(p *netip.Addr) netip.Addr {
		if p == nil {
			return netip.Addr{}
		}
		return *p
	}
	return a.Subnet == b.Subnet && a.Expiration.Equal(b.Expiration) &&
		a.Attrs.PublicIP == b.Attrs.PublicIP && v6(a.Attrs.PublicIPv6) == v6(b.Attrs.PublicIPv6) &&
		a.Attrs.BackendType == b.Attrs.BackendType && bytes.Equal(a.Attrs.BackendData, b.Attrs.BackendData)
}

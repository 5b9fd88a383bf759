package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weftnet/weft/pkg/backoff"
	"github.com/weftnet/weft/pkg/lease"
	"github.com/weftnet/weft/pkg/netconf"
)

// apiTimeout bounds one API request.
const apiTimeout = 30 * time.Second

// Acquire returns this node's lease: the subnet of each enabled family
// from its Node's podCIDRs (in either order) and attrs (PublicIP and
// PublicIPv6 replaced by the public-ip-overwrite and public-ipv6-overwrite
// annotations if the user set them), after publishing them in the Node's
// annotations. Kubernetes assigns the subnets, so hint is ignored. While a
// podCIDR is missing or outside its Network, or the API server is
// unreachable, Acquire logs why (once a minute at most) and waits until ctx
// ends.
func (m *Manager) Acquire(ctx context.Context, attrs lease.Attrs, _ lease.Lease) (lease.Lease, error) {
	nc, err := m.NetworkConfig(ctx)
	if err != nil {
		return lease.Lease{}, fmt.Errorf("acquire lease for node %s: %w", m.cfg.NodeName, err)
	}
	m.mu.Lock()
	m.base = &attrs
	m.mu.Unlock()

	sub := m.nodes.subscribe(m.cfg.NodeName)
	defer sub.stop()
	var l lease.Lease
	err = m.converge(ctx, sub.wake, func(ctx context.Context) error {
		n, err := m.nodes.get(m.cfg.NodeName)
		if err != nil {
			return err
		}
		if l, err = m.ownLease(n, nc, attrs); err != nil {
			return err
		}
		return m.publish(ctx, n, l.Attrs)
	})
	if err != nil {
		return lease.Lease{}, fmt.Errorf("acquire lease for node %s: %w", m.cfg.NodeName, err)
	}
	m.log.Info("acquired lease", "subnet", l.String(), "publicIP", l.Attrs.PublicIP, "publicIPv6", addrOf(l.Attrs.PublicIPv6))
	return l, nil
}

// Keep holds the lease until ctx ends. Kubernetes leases do not expire;
// Keep re-publishes the annotations when someone removes or changes them,
// and calls changed when the Node's podCIDRs or public-ip(v6)-overwrite
// change (a Node deleted and registered again).
func (m *Manager) Keep(ctx context.Context, l lease.Lease, changed func(lease.Lease)) {
	nc, err := m.NetworkConfig(ctx)
	if err != nil {
		// Acquire read it: it is cached and cannot fail now.
		m.log.Error("keep lease: " + err.Error())
		return
	}
	m.mu.Lock()
	base := l.Attrs
	if m.base != nil {
		base = *m.base
	}
	m.mu.Unlock()

	sub := m.nodes.subscribe(m.cfg.NodeName)
	defer sub.stop()
	for {
		err := m.converge(ctx, sub.wake, func(ctx context.Context) error {
			n, err := m.nodes.get(m.cfg.NodeName)
			if err != nil {
				return err
			}
			cur, err := m.ownLease(n, nc, base)
			if err != nil {
				return err
			}
			if !sameLease(cur, l) {
				m.log.Info("lease changed", "subnet", cur.String(), "publicIP", cur.Attrs.PublicIP, "publicIPv6", addrOf(cur.Attrs.PublicIPv6), "oldSubnet", l.String())
				l = cur
				changed(l)
			}
			return m.publish(ctx, n, l.Attrs)
		})
		if err != nil {
			return // ctx ended
		}
		select {
		case <-ctx.Done():
			return
		case <-sub.wake:
		}
	}
}

// ownLease derives this node's lease from its Node, or says in one line what
// the user has to fix: a podCIDR of each family nc enables, inside that
// family's Network.
func (m *Manager) ownLease(n *corev1.Node, nc *netconf.Config, base lease.Attrs) (lease.Lease, error) {
	v4, v6, err := podCIDRs(n)
	if err != nil {
		return lease.Lease{}, fmt.Errorf("node %q: %w", n.Name, err)
	}
	l := lease.Lease{Attrs: base}
	if l.Subnet, err = ownSubnet(n, "IPv4", "Network", nc.EnableIPv4, v4, nc.Network); err != nil {
		return lease.Lease{}, err
	}
	if l.IPv6Subnet, err = ownSubnet(n, "IPv6", "IPv6Network", nc.EnableIPv6, v6, nc.IPv6Network); err != nil {
		return lease.Lease{}, err
	}
	if !nc.EnableIPv4 {
		l.Attrs.PublicIP, l.Attrs.BackendData = netip.Addr{}, nil
	} else if l.Attrs.PublicIP, err = m.overwrite(n, m.keys.publicIPOverwrite, l.Attrs.PublicIP, false); err != nil {
		return lease.Lease{}, err
	}
	if !nc.EnableIPv6 {
		l.Attrs.PublicIPv6, l.Attrs.BackendV6Data = nil, nil
	} else {
		ip6, err := m.overwrite(n, m.keys.publicIPv6Overwrite, addrOf(l.Attrs.PublicIPv6), true)
		if err != nil {
			return lease.Lease{}, err
		}
		if ip6.IsValid() {
			l.Attrs.PublicIPv6 = &ip6
		}
	}
	return l, nil
}

// ownSubnet checks the node's podCIDR subnet of one family (name, with the
// net-conf.json key netKey) when the family is on; it is the zero Prefix
// when the family is off.
func ownSubnet(n *corev1.Node, name, netKey string, on bool, subnet, network netip.Prefix) (netip.Prefix, error) {
	switch {
	case !on:
		return netip.Prefix{}, nil
	case !subnet.IsValid():
		return subnet, fmt.Errorf("node %q has no %s podCIDR assigned: run kube-controller-manager with --allocate-node-cidrs=true --cluster-cidr=%s (kubeadm: kubeadm init --pod-network-cidr=%s; dual stack: both networks, comma-separated); waiting for it", n.Name, name, network, network)
	case subnet.Bits() < network.Bits() || !network.Contains(subnet.Addr()):
		return subnet, fmt.Errorf("node %q podCIDR %s is outside net-conf.json %s %s: the ConfigMap's %s must match kube-controller-manager --cluster-cidr; fix it and restart weft", n.Name, subnet, netKey, network, netKey)
	}
	return subnet, nil
}

// overwrite returns the address the user set in n's annotation key (an
// IPv6 one when v6), else ip.
func (m *Manager) overwrite(n *corev1.Node, key string, ip netip.Addr, v6 bool) (netip.Addr, error) {
	s := n.Annotations[key]
	if s == "" {
		return ip, nil
	}
	family := "IPv4"
	if v6 {
		family = "IPv6"
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Is6() != v6 || a.Is4In6() {
		return ip, fmt.Errorf("node %q annotation %s=%q is not an %s address: fix or remove it", n.Name, key, s, family)
	}
	return a, nil
}

// publish writes a into n's annotations through nodes/status, unless n
// already carries them.
func (m *Manager) publish(ctx context.Context, n *corev1.Node, a lease.Attrs) error {
	want, done := m.keys.patch(n, a)
	if done {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": want}})
	if err != nil {
		return fmt.Errorf("encode annotations: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	_, err = m.client.Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "weftd"}, "status")
	if err != nil {
		return apiError(fmt.Sprintf("publish annotations on node %q", n.Name), err)
	}
	m.log.Info("published node annotations", "publicIP", a.PublicIP, "publicIPv6", addrOf(a.PublicIPv6), "backendType", a.BackendType)
	return nil
}

// apiError wraps a failed request, adding what to fix when RBAC denied it.
func apiError(what string, err error) error {
	if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
		return fmt.Errorf("%s: %w%s", what, err, rbacHint)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// converge runs step until it succeeds or ctx ends. Failures are retried
// with backoff, sooner when the own Node changes, and each distinct problem
// is logged at most once a minute.
func (m *Manager) converge(ctx context.Context, wake <-chan struct{}, step func(context.Context) error) error {
	report := func(err error, _ time.Duration) {
		if !errors.Is(err, errNotSynced) {
			m.log.Error(err.Error())
		}
	}
	return backoff.Retry(ctx, backoff.Options{Wake: wake, Report: report}, func() error { return step(ctx) })
}

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
)

// apiTimeout bounds one API request.
const apiTimeout = 30 * time.Second

// Acquire returns this node's lease: the IPv4 subnet of its Node's podCIDR
// and attrs (PublicIP replaced by the public-ip-overwrite annotation if the
// user set one), after publishing them in the Node's annotations. Kubernetes
// assigns the subnet, so hint is ignored. While the podCIDR is missing or
// outside the Network, or the API server is unreachable, Acquire logs why
// (once a minute at most) and waits until ctx ends.
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
		if l, err = m.ownLease(n, nc.Network, attrs); err != nil {
			return err
		}
		return m.publish(ctx, n, l.Attrs)
	})
	if err != nil {
		return lease.Lease{}, fmt.Errorf("acquire lease for node %s: %w", m.cfg.NodeName, err)
	}
	m.log.Info("acquired lease", "subnet", l.Subnet, "publicIP", l.Attrs.PublicIP)
	return l, nil
}

// Keep holds the lease until ctx ends. Kubernetes leases do not expire;
// Keep re-publishes the annotations when someone removes or changes them,
// and calls changed when the Node's podCIDR or public-ip-overwrite changes
// (a Node deleted and registered again).
func (m *Manager) Keep(ctx context.Context, l lease.Lease, changed func(lease.Lease)) {
	var network netip.Prefix
	if nc, err := m.NetworkConfig(ctx); err == nil {
		network = nc.Network
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
			cur, err := m.ownLease(n, network, base)
			if err != nil {
				return err
			}
			if !sameLease(cur, l) {
				m.log.Info("lease changed", "subnet", cur.Subnet, "publicIP", cur.Attrs.PublicIP, "oldSubnet", l.Subnet)
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
// the user has to fix. An invalid network skips the Network check.
func (m *Manager) ownLease(n *corev1.Node, network netip.Prefix, base lease.Attrs) (lease.Lease, error) {
	subnet, err := podCIDRv4(n)
	switch {
	case err != nil:
		return lease.Lease{}, fmt.Errorf("node %q: %w", n.Name, err)
	case !subnet.IsValid():
		return lease.Lease{}, fmt.Errorf("node %q has no IPv4 podCIDR assigned: run kube-controller-manager with --allocate-node-cidrs=true --cluster-cidr=%s (kubeadm: kubeadm init --pod-network-cidr=%s); waiting for it", n.Name, network, network)
	case network.IsValid() && (subnet.Bits() < network.Bits() || !network.Contains(subnet.Addr())):
		return lease.Lease{}, fmt.Errorf("node %q podCIDR %s is outside net-conf.json Network %s: the ConfigMap's Network must match kube-controller-manager --cluster-cidr; fix it and restart weft", n.Name, subnet, network)
	}
	attrs := base
	if s := n.Annotations[m.keys.publicIPOverwrite]; s != "" {
		ip, err := netip.ParseAddr(s)
		if err != nil || !ip.Is4() {
			return lease.Lease{}, fmt.Errorf("node %q annotation %s=%q is not an IPv4 address: fix or remove it", n.Name, m.keys.publicIPOverwrite, s)
		}
		attrs.PublicIP = ip
	}
	if s := n.Annotations[m.keys.publicIPv6Overwrite]; s != "" {
		ip, err := netip.ParseAddr(s)
		if err != nil || !ip.Is6() {
			return lease.Lease{}, fmt.Errorf("node %q annotation %s=%q is not an IPv6 address: fix or remove it", n.Name, m.keys.publicIPv6Overwrite, s)
		}
		attrs.PublicIPv6 = &ip
	}
	return lease.Lease{Subnet: subnet, Attrs: attrs}, nil
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
	m.log.Info("published node annotations", "publicIP", a.PublicIP, "backendType", a.BackendType)
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

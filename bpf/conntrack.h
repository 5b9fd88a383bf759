/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What netfilter already decided about a packet when cni0's tc ingress sees it.
 *
 * With br_netfilter (net.bridge.bridge-nf-call-iptables=1: the default while
 * the bridge module has it, and required by Kubernetes) the bridge runs the
 * IPv4 PREROUTING hooks as a pod's frame enters its bridge port, before the
 * frame reaches cni0. A Service's DNAT has then already rewritten the packet
 * (it looks like plain pod-to-pod traffic) and its conntrack entry, attached
 * to the skb, is confirmed only if the packet leaves through POSTROUTING.
 * Short-cutting it would lose the NAT state, so the reply would reach the
 * client untranslated. The entry's status tells: read it through the kernel
 * skb (CO-RE, so the layouts are the running kernel's).
 */
#ifndef WEFT_CONNTRACK_H
#define WEFT_CONNTRACK_H

#include <bpf/bpf_core_read.h>

/* The fields used of the kernel's struct sk_buff and struct nf_conn. */
struct sk_buff___weft {
	unsigned long _nfct;
} __attribute__((preserve_access_index));

struct nf_conn___weft {
	unsigned long status;
} __attribute__((preserve_access_index));

/* Linux >= 6.3 (the decap flags already need it); the verifier inlines it. */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

/* include/linux/skbuff.h, include/uapi/linux/netfilter/nf_conntrack_common.h */
#define NFCT_INFOMASK 7UL
#define IP_CT_IS_REPLY 3
#define IPS_NAT_MASK ((1UL << 4) | (1UL << 5)) /* IPS_SRC_NAT | IPS_DST_NAT */

enum ct_nat {
	CT_NAT_NONE,     /* no conntrack entry on the skb, or one without NAT */
	CT_NAT_ORIGINAL, /* NATed connection, packet in its original direction */
	CT_NAT_REPLY,    /* NATed connection, packet in its reply direction */
};

/* ct_nat reports whether the conntrack entry netfilter attached to skb NATs. */
static __always_inline enum ct_nat ct_nat(struct __sk_buff *skb)
{
	struct sk_buff___weft *kskb;
	unsigned long nfct, status;
	void *ct;

	/* Kernels without conntrack: nothing can have NATed the packet. */
	if (!bpf_core_field_exists(struct sk_buff___weft, _nfct) ||
	    !bpf_core_type_exists(struct nf_conn___weft))
		return CT_NAT_NONE;
	kskb = bpf_cast_to_kern_ctx(skb);
	nfct = kskb->_nfct;
	ct = (void *)(nfct & ~NFCT_INFOMASK);
	if (!ct)
		return CT_NAT_NONE;
	/* Unreadable (never seen): assume NAT, the stack copes either way. */
	if (bpf_probe_read_kernel(&status, sizeof(status),
				  ct + bpf_core_field_offset(struct nf_conn___weft, status)))
		status = IPS_NAT_MASK;
	if (!(status & IPS_NAT_MASK))
		return CT_NAT_NONE;
	return (nfct & NFCT_INFOMASK) >= IP_CT_IS_REPLY ? CT_NAT_REPLY : CT_NAT_ORIGINAL;
}

#endif /* WEFT_CONNTRACK_H */

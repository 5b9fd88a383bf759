/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Rewriting a NATed flow's packet on the fast path as netfilter's NAT would:
 * the addresses and ports come from the flow's conntrack entry
 * (conntrack.h), so the translation is netfilter's (kube-proxy's DNAT,
 * masquerade), eBPF only applies it.
 */
#ifndef WEFT_NAT_H
#define WEFT_NAT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "conntrack.h"
#include "packet.h"

#define IPV4_CSUM_OFF 10
#define IPV4_SADDR_OFF 12
#define IPV4_DADDR_OFF 16
#define TCP_CSUM_OFF 16
#define UDP_CSUM_OFF 6

/* rewrite_field replaces size bytes at off (old is their value) and fixes
 * the L4 checksum at csum (pseudo: the field is in the pseudo header, an
 * address) and, for addresses, the IPv4 header checksum at l3csum. */
static __always_inline int rewrite_field(struct __sk_buff *skb, __u32 off, __u32 csum, __u32 l3csum,
					 __u64 l4flags, __be32 old, __be32 new, __u32 size)
{
	if (old == new)
		return 0;
	if (bpf_l4_csum_replace(skb, csum, old, new, l4flags | size))
		return -1;
	if (l3csum && bpf_l3_csum_replace(skb, l3csum, old, new, size))
		return -1;
	return bpf_skb_store_bytes(skb, off, &new, size, 0);
}

/* apply_xlat rewrites the IPv4 packet at l3off (L4 header at l4off) to x
 * (IPv4: NATed IPv6 flows take the kernel path). */
static __always_inline int apply_xlat(struct __sk_buff *skb, __u32 l3off, __u32 l4off, __u8 proto,
				      const struct xlat *x)
{
	/* UDP checksum 0 means none: it stays 0. */
	__u64 flags = proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	__u32 csum = l4off + (proto == IPPROTO_UDP ? UDP_CSUM_OFF : TCP_CSUM_OFF);
	__be32 addr[2];
	__be16 port[2];

	if (bpf_skb_load_bytes(skb, l3off + IPV4_SADDR_OFF, addr, sizeof(addr)) ||
	    bpf_skb_load_bytes(skb, l4off, port, sizeof(port)))
		return -1;
	if (rewrite_field(skb, l3off + IPV4_SADDR_OFF, csum, l3off + IPV4_CSUM_OFF,
			  flags | BPF_F_PSEUDO_HDR, addr[0], x->saddr.w[3], 4) ||
	    rewrite_field(skb, l3off + IPV4_DADDR_OFF, csum, l3off + IPV4_CSUM_OFF,
			  flags | BPF_F_PSEUDO_HDR, addr[1], x->daddr.w[3], 4) ||
	    rewrite_field(skb, l4off, csum, 0, flags, port[0], x->sport, 2) ||
	    rewrite_field(skb, l4off + 2, csum, 0, flags, port[1], x->dport, 2))
		return -1;
	return 0;
}

#endif /* WEFT_NAT_H */

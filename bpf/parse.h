/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Reading packets: bounds, IPv4 header properties, L4 ports and flags. */
#ifndef WEFT_PARSE_H
#define WEFT_PARSE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "packet.h"

/* ensure makes the first len bytes directly readable; -1 if the packet is shorter. */
static __always_inline int ensure(struct __sk_buff *skb, __u32 len)
{
	if ((void *)(long)skb->data + len <= (void *)(long)skb->data_end)
		return 0;
	if (skb->len < len)
		return -1;
	return bpf_skb_pull_data(skb, len) ? -1 : 0;
}

/* ipv4_at returns the IPv4 header at off if it is directly readable. */
static __always_inline struct ipv4 *ipv4_at(struct __sk_buff *skb, __u32 off)
{
	struct ipv4 *ip = (void *)(long)skb->data + off;

	if ((void *)(ip + 1) > (void *)(long)skb->data_end)
		return NULL;
	return ip;
}

static __always_inline int is_fragment(const struct ipv4 *ip)
{
	return ip->frag_off & bpf_htons(IPV4_MF | IPV4_OFFSET_MASK);
}

/* ipv4_hlen is the header length, 0 when the header is not IPv4. */
static __always_inline __u32 ipv4_hlen(const struct ipv4 *ip)
{
	if ((ip->ver_ihl & 0xf0) != 0x40 || (ip->ver_ihl & 0xf) < 5)
		return 0;
	return (ip->ver_ihl & 0xf) * 4;
}

/* udp_dport reads the UDP destination port of the IPv4 packet at off (0 if
 * it is no UDP, not the first fragment, or too short). */
static __always_inline __be16 udp_dport(struct __sk_buff *skb, __u32 off, const struct ipv4 *ip)
{
	__u32 hlen = ipv4_hlen(ip);
	__be16 port;

	if (!hlen || ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(IPV4_OFFSET_MASK)))
		return 0;
	if (bpf_skb_load_bytes(skb, off + hlen + 2, &port, sizeof(port)))
		return 0;
	return port;
}

static __always_inline int in_subnet(__be32 addr, __be32 subnet, __u32 prefixlen)
{
	__be32 mask;

	if (prefixlen == 0)
		return 1;
	if (prefixlen > 32)
		return 0;
	mask = bpf_htonl(~0U << (32 - prefixlen));
	return (addr & mask) == (subnet & mask);
}

static __always_inline int mac_equal(const __u8 *a, const __u8 *b)
{
	return *(const __u32 *)a == *(const __u32 *)b &&
	       *(const __u16 *)&a[4] == *(const __u16 *)&b[4];
}

#endif /* WEFT_PARSE_H */

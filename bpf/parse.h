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

/* map4 is the IPv4 address a mapped into IPv6 (::ffff:a). */
static __always_inline void map4(union addr *m, __be32 a)
{
	m->w[0] = 0;
	m->w[1] = 0;
	m->w[2] = bpf_htonl(0xffff);
	m->w[3] = a;
}

static __always_inline int addr_equal(const union addr *a, const union addr *b)
{
	return ((a->w[0] ^ b->w[0]) | (a->w[1] ^ b->w[1]) | (a->w[2] ^ b->w[2]) | (a->w[3] ^ b->w[3])) == 0;
}

static __always_inline int addr_zero(const union addr *a)
{
	return (a->w[0] | a->w[1] | a->w[2] | a->w[3]) == 0;
}

/* mapped reports whether a is an IPv4 address mapped into IPv6. */
static __always_inline int mapped(const union addr *a)
{
	return (a->w[0] | a->w[1]) == 0 && a->w[2] == bpf_htonl(0xffff);
}

/* IPv6 link-local unicast (fe80::/10). */
static __always_inline int link_local(const union addr *a)
{
	return a->b[0] == 0xfe && (a->b[1] & 0xc0) == 0x80;
}

/* What the programs read of an IP header of either family. */
struct l3 {
	union addr saddr; /* IPv4 mapped */
	union addr daddr;
	/* Offset of the L4 header; 0 when the packet has none there: a later
	 * fragment, or an IPv6 extension header chain longer than the
	 * programs walk (opaque). */
	__u32 l4off;
	__u32 len;      /* the packet's length as its header says */
	__u8 proto;     /* L4 protocol (the last header walked) */
	__u8 ttl;       /* TTL or hop limit */
	__u8 fragment;  /* a fragment (first or later) */
	__u8 options;   /* IPv4 options or IPv6 extension headers */
};

/* IPv6 extension headers walked before giving up (opaque). */
#define IPV6_MAX_EXT 6

/* ipv6_ext walks the extension headers after the IPv6 header at off
 * (next header next) and fills in l3's L4 header. */
static __always_inline void ipv6_ext(struct __sk_buff *skb, __u32 off, __u8 next, struct l3 *l3)
{
	__u32 at = off + IPV6_HLEN;
	struct {
		__u8 next;
		__u8 len;
		__be16 frag; /* fragment header: offset and M flag */
	} ext;

#pragma unroll
	for (int i = 0; i < IPV6_MAX_EXT; i++) {
		if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING && next != IPPROTO_DSTOPTS &&
		    next != IPPROTO_FRAGMENT) {
			l3->proto = next;
			l3->l4off = at;
			return;
		}
		l3->options = 1;
		if (bpf_skb_load_bytes(skb, at, &ext, sizeof(ext)))
			break;
		if (next == IPPROTO_FRAGMENT) {
			l3->fragment = 1;
			if (ext.frag & bpf_htons(IPV6_FRAG_OFFSET_MASK)) {
				l3->proto = ext.next;
				return; /* a later fragment: no L4 header here */
			}
			at += 8;
		} else {
			at += (ext.len + 1) * 8;
		}
		next = ext.next;
	}
	l3->proto = next; /* opaque: l4off stays 0 */
}

/* parse_l3 reads the IP header of family v6 at off into l3; -1 when there
 * is none of that family (or it is cut short), PARSE_MAPPED for an IPv6
 * header with an IPv4-mapped address, which never appears on the wire
 * (RFC 4291 2.5.5.2) and would match IPv4 entries of the maps. */
#define PARSE_MAPPED -2
static __always_inline int parse_l3(struct __sk_buff *skb, __u32 off, const int v6, struct l3 *l3)
{
	__builtin_memset(l3, 0, sizeof(*l3));
	if (v6) {
		struct ipv6 ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) || (ip.ver_tc_flow & bpf_htonl(0xf0000000)) != bpf_htonl(0x60000000))
			return -1;
		if (mapped(&ip.saddr) || mapped(&ip.daddr))
			return PARSE_MAPPED;
		l3->saddr = ip.saddr;
		l3->daddr = ip.daddr;
		l3->len = IPV6_HLEN + bpf_ntohs(ip.payload_len);
		l3->ttl = ip.hop_limit;
		ipv6_ext(skb, off, ip.nexthdr, l3);
		return 0;
	}
	struct ipv4 ip;
	__u32 hlen;

	if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)))
		return -1;
	hlen = ipv4_hlen(&ip);
	if (!hlen)
		return -1;
	map4(&l3->saddr, ip.saddr);
	map4(&l3->daddr, ip.daddr);
	l3->len = bpf_ntohs(ip.tot_len);
	l3->ttl = ip.ttl;
	l3->proto = ip.protocol;
	l3->fragment = is_fragment(&ip) != 0;
	l3->options = hlen != IPV4_HLEN;
	if (!(ip.frag_off & bpf_htons(IPV4_OFFSET_MASK)))
		l3->l4off = off + hlen;
	return 0;
}

/* simple reports whether l3's packet has neither options nor extension
 * headers and is no fragment: what the fast path carries. */
static __always_inline int simple(const struct l3 *l3)
{
	return !l3->options && !l3->fragment;
}

/* udp_dport reads the UDP destination port of l3's packet (0 if it is no
 * UDP, has no L4 header here, or is too short). */
static __always_inline __be16 udp_dport(struct __sk_buff *skb, const struct l3 *l3)
{
	__be16 port;

	if (l3->proto != IPPROTO_UDP || !l3->l4off)
		return 0;
	if (bpf_skb_load_bytes(skb, l3->l4off + 2, &port, sizeof(port)))
		return 0;
	return port;
}

/* family_on is the node config of family v6 if that family is on. */
static __always_inline const struct family_config *family_on(const struct node_config *cfg, const int v6)
{
	const struct family_config *f = &cfg->family[v6 ? FAMILY_IPV6 : FAMILY_IPV4];

	return addr_zero(&f->node_ip) ? NULL : f;
}

static __always_inline int mac_equal(const __u8 *a, const __u8 *b)
{
	return *(const __u32 *)a == *(const __u32 *)b &&
	       *(const __u16 *)&a[4] == *(const __u16 *)&b[4];
}

#endif /* WEFT_PARSE_H */

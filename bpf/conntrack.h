/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Netfilter decides, eBPF forwards: a pod packet may bypass the host stack
 * only when the kernel's conntrack already holds a confirmed entry for its
 * flow that netfilter accepted, that has seen traffic both ways, and that
 * no NAT rewrites. Everything else (new connections, TCP SYN/FIN/RST,
 * Services, masquerade, ICMP, fragments) takes the stack, so FORWARD rules,
 * NAT and policy engines see it and conntrack frees what closes.
 *
 * TCP: conntrack's window tracking would call packets invalid once it
 * stops seeing the middle of a flow. As netfilter's own flowtable offload
 * does, the entry is made liberal in both directions (IP_CT_TCP_FLAG_BE_LIBERAL)
 * before the flow is offloaded; BPF cannot set that flag, so the program asks
 * weftd to (ring buffer weft_ct_requests) and keeps the flow on the stack
 * until it is set.
 *
 * A flow whose entry is about to expire takes the stack for one packet,
 * which refreshes the entry with the timeouts netfilter's sysctls set.
 */
#ifndef WEFT_CONNTRACK_H
#define WEFT_CONNTRACK_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "maps.h"
#include "parse.h"

/* The fields used of the kernel's conntrack types (CO-RE: offsets are the
 * running kernel's). */
struct ip_ct_tcp_state {
	__u8 flags;
} __attribute__((preserve_access_index));

struct ip_ct_tcp {
	struct ip_ct_tcp_state seen[2];
	__u8 state;
} __attribute__((preserve_access_index));

union nf_conntrack_proto {
	struct ip_ct_tcp tcp;
} __attribute__((preserve_access_index));

struct nf_conn {
	__u32 timeout;
	unsigned long status;
	union nf_conntrack_proto proto;
} __attribute__((preserve_access_index));

/* net/netfilter/nf_conntrack_bpf.c; 12 bytes is the size every kernel
 * with these kfuncs accepts. */
struct bpf_ct_opts {
	__s32 netns_id;
	__s32 error;
	__u8 l4proto;
	__u8 dir;
	__u8 reserved[2];
};

extern struct nf_conn *bpf_skb_ct_lookup(struct __sk_buff *skb, struct bpf_sock_tuple *tuple,
					 __u32 tuple__sz, struct bpf_ct_opts *opts,
					 __u32 opts__sz) __ksym;
extern void bpf_ct_release(struct nf_conn *ct) __ksym;

/* include/uapi/linux/netfilter/nf_conntrack_{common,tcp}.h */
#define IPS_SEEN_REPLY (1UL << 1)
#define IPS_NAT_MASK ((1UL << 4) | (1UL << 5)) /* IPS_SRC_NAT | IPS_DST_NAT */
#define IPS_HELPER (1UL << 13)
#define IPS_DYING (1UL << 9)
#define TCP_CONNTRACK_ESTABLISHED 3
#define IP_CT_TCP_FLAG_BE_LIBERAL 0x08

/* TCP flags byte (offset 13 of the TCP header). */
#define TCP_FLAGS_OFF 13
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04

/* request_liberal asks weftd to make f's conntrack entry liberal. A full
 * ring only delays that: the flow's next packet asks again. */
static __always_inline void request_liberal(struct flow *f)
{
	bpf_ringbuf_output(&weft_ct_requests, f, sizeof(*f), 0);
}

/*
 * offloadable reports whether the IPv4 packet ip, whose L4 header is at
 * l4off, belongs to a flow netfilter has accepted and established without
 * NAT, so it may take the fast path.
 */
static __always_inline int offloadable(struct __sk_buff *skb, const struct ipv4 *ip, __u32 l4off,
				       const struct node_config *cfg)
{
	struct bpf_ct_opts opts = { .netns_id = BPF_F_CURRENT_NETNS, .l4proto = ip->protocol };
	struct bpf_sock_tuple tuple = {};
	struct nf_conn *ct;
	unsigned long status;
	struct flow f = {};
	__u8 tcp_flags;
	int fast = 0;
	__s32 left;

	if (ip->protocol == IPPROTO_TCP) {
		if (bpf_skb_load_bytes(skb, l4off + TCP_FLAGS_OFF, &tcp_flags, 1))
			return 0;
		if (tcp_flags & (TCP_FIN | TCP_SYN | TCP_RST))
			return 0; /* conntrack follows the connection's state */
	} else if (ip->protocol != IPPROTO_UDP) {
		return 0;
	}
	if (bpf_skb_load_bytes(skb, l4off, &tuple.ipv4.sport, 2 * sizeof(__be16)))
		return 0;
	tuple.ipv4.saddr = ip->saddr;
	tuple.ipv4.daddr = ip->daddr;
	ct = bpf_skb_ct_lookup(skb, &tuple, sizeof(tuple.ipv4), &opts, sizeof(opts));
	if (!ct)
		return 0; /* new, or not accepted (yet): netfilter decides */
	status = ct->status;
	left = (__s32)(ct->timeout - (__u32)bpf_jiffies64());
	if ((status & IPS_SEEN_REPLY) && !(status & (IPS_NAT_MASK | IPS_HELPER | IPS_DYING)) &&
	    left > (__s32)cfg->ct_refresh_jiffies) {
		if (ip->protocol == IPPROTO_UDP) {
			fast = 1;
		} else if (ct->proto.tcp.state == TCP_CONNTRACK_ESTABLISHED) {
			fast = ct->proto.tcp.seen[0].flags & ct->proto.tcp.seen[1].flags &
			       IP_CT_TCP_FLAG_BE_LIBERAL;
			if (!fast) {
				f.saddr = tuple.ipv4.saddr;
				f.daddr = tuple.ipv4.daddr;
				f.sport = tuple.ipv4.sport;
				f.dport = tuple.ipv4.dport;
				f.proto = IPPROTO_TCP;
				request_liberal(&f);
			}
		}
	}
	bpf_ct_release(ct);
	return fast;
}

#endif /* WEFT_CONNTRACK_H */

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Netfilter decides, eBPF forwards: a pod packet may bypass the host stack
 * only when the kernel's conntrack already holds a confirmed entry for its
 * flow that netfilter accepted and that has seen traffic both ways.
 * Everything else (new connections, TCP SYN/FIN/RST, ICMP, fragments) takes
 * the stack, so FORWARD rules, NAT and policy engines see it and conntrack
 * frees what closes. A NATed flow (a Service, masquerade) is rewritten as
 * its entry says, as netfilter's flowtable does (nat.h).
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

union nf_inet_addr {
	__be32 ip;
} __attribute__((preserve_access_index));

union nf_conntrack_man_proto {
	__be16 all;
} __attribute__((preserve_access_index));

struct nf_conntrack_man {
	union nf_inet_addr u3;
	union nf_conntrack_man_proto u;
} __attribute__((preserve_access_index));

struct nf_conntrack_tuple {
	struct nf_conntrack_man src;
	struct {
		union nf_inet_addr u3;
		union {
			__be16 all;
		} u;
	} dst;
} __attribute__((preserve_access_index));

struct nf_conntrack_tuple_hash {
	struct nf_conntrack_tuple tuple;
} __attribute__((preserve_access_index));

struct nf_conn {
	__u32 timeout;
	struct nf_conntrack_tuple_hash tuplehash[2];
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
#define IPS_SEQ_ADJUST (1UL << 6)
#define IPS_DYING (1UL << 9)
#define IPS_HELPER (1UL << 13)
#define TCP_CONNTRACK_ESTABLISHED 3
#define IP_CT_TCP_FLAG_BE_LIBERAL 0x08

/* TCP flags byte (offset 13 of the TCP header). */
#define TCP_FLAGS_OFF 13
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04

/* What conntrack says about a packet's flow. */
enum offload {
	OFFLOAD_NO,  /* the kernel path: netfilter decides */
	OFFLOAD_YES, /* established and accepted: the fast path */
	OFFLOAD_ASK, /* TCP, established, waiting to be made liberal by weftd */
};

/*
 * The addresses and ports a packet leaves netfilter with: its own, or, for
 * a NATed IPv4 flow (a Service's DNAT, masquerade), the inverse of the other
 * direction's tuple, as netfilter's NAT would rewrite it. NATed IPv6 flows
 * stay on the kernel path.
 */
struct xlat {
	union addr saddr; /* IPv4 mapped */
	union addr daddr;
	__be16 sport;
	__be16 dport;
	__u8 nat; /* the packet must be rewritten to the above */
};

/* request_liberal asks weftd to make f's conntrack entry liberal. A full
 * ring only delays that: the flow's next packet asks again. */
static __always_inline void request_liberal(struct flow *f)
{
	bpf_ringbuf_output(&weft_ct_requests, f, sizeof(*f), 0);
}

/* inverse sets x to the inverse of tuple t (IPv4): where a packet of the
 * other direction comes from and goes to after NAT. */
#define inverse(x, t)                                 \
	do {                                          \
		map4(&(x)->saddr, (t).dst.u3.ip);     \
		(x)->sport = (t).dst.u.all;           \
		map4(&(x)->daddr, (t).src.u3.ip);     \
		(x)->dport = (t).src.u.all;           \
	} while (0)

/*
 * offload_state looks up the flow of the packet l3 (family v6) in
 * conntrack: OFFLOAD_YES when netfilter has accepted and established it (x
 * says how NAT rewrites the packet), OFFLOAD_ASK when only the liberal flag
 * is missing (f is the flow to ask for), else OFFLOAD_NO.
 */
static __always_inline enum offload offload_state(struct __sk_buff *skb, const struct l3 *l3, const int v6,
						  const struct node_config *cfg, struct xlat *x,
						  struct flow *f)
{
	struct bpf_ct_opts opts = { .netns_id = BPF_F_CURRENT_NETNS, .l4proto = l3->proto };
	struct bpf_sock_tuple tuple = {};
	enum offload state = OFFLOAD_NO;
	__be16 ports[2];
	struct nf_conn *ct;
	unsigned long status;
	__u8 tcp_flags;
	__s32 left;

	if (!l3->l4off)
		return OFFLOAD_NO;
	if (l3->proto == IPPROTO_TCP) {
		if (bpf_skb_load_bytes(skb, l3->l4off + TCP_FLAGS_OFF, &tcp_flags, 1))
			return OFFLOAD_NO;
		if (tcp_flags & (TCP_FIN | TCP_SYN | TCP_RST))
			return OFFLOAD_NO; /* conntrack follows the connection's state */
	} else if (l3->proto != IPPROTO_UDP) {
		return OFFLOAD_NO;
	}
	if (bpf_skb_load_bytes(skb, l3->l4off, ports, sizeof(ports)))
		return OFFLOAD_NO;
	if (v6) {
		__builtin_memcpy(tuple.ipv6.saddr, l3->saddr.w, 16);
		__builtin_memcpy(tuple.ipv6.daddr, l3->daddr.w, 16);
		tuple.ipv6.sport = ports[0];
		tuple.ipv6.dport = ports[1];
		ct = bpf_skb_ct_lookup(skb, &tuple, sizeof(tuple.ipv6), &opts, sizeof(opts));
	} else {
		tuple.ipv4.saddr = l3->saddr.w[3];
		tuple.ipv4.daddr = l3->daddr.w[3];
		tuple.ipv4.sport = ports[0];
		tuple.ipv4.dport = ports[1];
		ct = bpf_skb_ct_lookup(skb, &tuple, sizeof(tuple.ipv4), &opts, sizeof(opts));
	}
	if (!ct)
		return OFFLOAD_NO; /* new, or not accepted (yet): netfilter decides */
	status = ct->status;
	left = (__s32)(ct->timeout - (__u32)bpf_jiffies64());
	if (!(status & IPS_SEEN_REPLY) || (status & (IPS_SEQ_ADJUST | IPS_HELPER | IPS_DYING)) ||
	    (v6 && (status & IPS_NAT_MASK)) || left <= (__s32)cfg->ct_refresh_jiffies)
		goto out;
	if (l3->proto == IPPROTO_UDP)
		state = OFFLOAD_YES;
	else if (ct->proto.tcp.state == TCP_CONNTRACK_ESTABLISHED)
		state = ct->proto.tcp.seen[0].flags & ct->proto.tcp.seen[1].flags & IP_CT_TCP_FLAG_BE_LIBERAL ?
				OFFLOAD_YES : OFFLOAD_ASK;
	x->saddr = l3->saddr;
	x->daddr = l3->daddr;
	x->sport = ports[0];
	x->dport = ports[1];
	x->nat = 0;
	if (status & IPS_NAT_MASK) {
		x->nat = 1;
		if (opts.dir == 0)
			inverse(x, ct->tuplehash[1].tuple);
		else
			inverse(x, ct->tuplehash[0].tuple);
	}
	f->saddr = l3->saddr;
	f->daddr = l3->daddr;
	f->sport = ports[0];
	f->dport = ports[1];
	f->proto = l3->proto;
out:
	bpf_ct_release(ct);
	return state;
}

#endif /* WEFT_CONNTRACK_H */

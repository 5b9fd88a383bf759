/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The pinned maps the programs share with weftd, weft-cni and weftctl, and
 * the counting helpers every program uses.
 */
#ifndef WEFT_MAPS_H
#define WEFT_MAPS_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "weft.h"
#include "parse.h"

#define PIN_BY_NAME __uint(pinning, LIBBPF_PIN_BY_NAME)

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm_key);
	__type(value, struct peer);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	PIN_BY_NAME;
} weft_peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct node_config);
	__uint(max_entries, 1);
	PIN_BY_NAME;
} weft_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, union addr);
	__type(value, struct endpoint);
	__uint(max_entries, 16384);
	PIN_BY_NAME;
} weft_endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct pod);
	__uint(max_entries, 16384);
	PIN_BY_NAME;
} weft_pods SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, union addr);
	__type(value, struct known_node);
	__uint(max_entries, 16384);
	PIN_BY_NAME;
} weft_nodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct traffic);
	__uint(max_entries, FAMILY_MAX * COUNTER_SLOTS);
	PIN_BY_NAME;
} weft_traffic SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct traffic);
	__uint(max_entries, FAMILY_MAX * DROP_SLOTS);
	PIN_BY_NAME;
} weft_drops SEC(".maps");

/* Established TCP flows that wait for weftd to make conntrack liberal. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
	PIN_BY_NAME;
} weft_ct_requests SEC(".maps");

static __always_inline void count(void *map, __u32 idx, __u64 bytes)
{
	struct traffic *t = bpf_map_lookup_elem(map, &idx);

	if (t) {
		t->packets++;
		t->bytes += bytes;
	}
}

/* count_traffic counts a packet of family v6 under counter c. */
static __always_inline void count_traffic(const int v6, __u32 c, __u64 bytes)
{
	count(&weft_traffic, (v6 ? FAMILY_IPV6 * COUNTER_SLOTS : 0) + c, bytes);
}

/* drop counts the packet (family v6; ARP and others count as IPv4) under
 * reason and drops it. */
static __always_inline int drop(struct __sk_buff *skb, const int v6, __u32 reason)
{
	count(&weft_drops, (v6 ? FAMILY_IPV6 * DROP_SLOTS : 0) + reason, skb->len);
	return TC_ACT_SHOT;
}

/* config is the node config once weftd has turned a family on. */
static __always_inline struct node_config *config(void)
{
	__u32 zero = 0;
	struct node_config *cfg = bpf_map_lookup_elem(&weft_config, &zero);

	if (!cfg)
		return NULL;
	if (addr_zero(&cfg->family[FAMILY_IPV4].node_ip) && addr_zero(&cfg->family[FAMILY_IPV6].node_ip))
		return NULL;
	return cfg;
}

#endif /* WEFT_MAPS_H */

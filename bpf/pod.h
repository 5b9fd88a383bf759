/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What a pod may send: frames with its own MAC, IPv4 and ARP with its own
 * address, and nothing to a node's tunnel port (a pod must not inject
 * tunnel traffic, which masquerade would give its node's address).
 */
#ifndef WEFT_POD_H
#define WEFT_POD_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "maps.h"
#include "parse.h"

#define ETH_P_ARP 0x0806

/* The Ethernet/IPv4 ARP body after the 8-byte fixed header. */
struct arp_ipv4 {
	__u8 sha[ETH_ALEN];
	__be32 spa;
} __attribute__((packed));

/* pod_source_ok reports whether the frame from the pod behind this veth
 * carries only that pod's addresses. A veth with no registered pod (weftd
 * has not learned it yet) is not checked here: its traffic is left to the
 * kernel. */
static __always_inline int pod_source_ok(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct arp_ipv4 arp;
	struct pod *pod;
	struct eth *eth;
	struct ipv4 *ip;

	pod = bpf_map_lookup_elem(&weft_pods, &ifindex);
	if (!pod)
		return 1;
	if (ensure(skb, ETH_HLEN))
		return 0;
	eth = (void *)(long)skb->data;
	if ((void *)(eth + 1) > (void *)(long)skb->data_end || !mac_equal(eth->src, pod->mac))
		return 0;
	if (eth->proto == bpf_htons(ETH_P_IP)) {
		if (ensure(skb, ETH_HLEN + IPV4_HLEN))
			return 0;
		ip = ipv4_at(skb, ETH_HLEN);
		return ip && ip->saddr == pod->ip;
	}
	if (eth->proto == bpf_htons(ETH_P_ARP)) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 8, &arp, sizeof(arp)))
			return 0;
		/* spa 0: an address probe (RFC 5227). */
		return mac_equal(arp.sha, pod->mac) && (arp.spa == pod->ip || arp.spa == 0);
	}
	return 1; /* other protocols: the MAC is the pod's */
}

/* to_tunnel reports whether the pod's IPv4 packet ip goes to the tunnel
 * port of a node address (this node's or a known node's). */
static __always_inline int to_tunnel(struct __sk_buff *skb, const struct node_config *cfg,
				     const struct ipv4 *ip)
{
	if (!cfg->port || udp_dport(skb, ETH_HLEN, ip) != bpf_htons(cfg->port))
		return 0;
	return ip->daddr == cfg->node_ip || bpf_map_lookup_elem(&weft_nodes, &ip->daddr);
}

#endif /* WEFT_POD_H */

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What a pod may send: frames with its own MAC, IPv4, IPv6 and ARP with its
 * own addresses (IPv6 neighbour discovery also link-local ones), and
 * nothing to a node's tunnel port (a pod must not inject
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

#define ICMPV6_ROUTER_ADVERT 134
#define ICMPV6_NEIGH_ADVERT 136
#define ICMPV6_REDIRECT 137

/* ipv6_source_ok reports whether the pod's IPv6 packet l3 carries only
 * what the pod may send: its address, or a link-local one or none (::, DAD)
 * as neighbour discovery uses; no router advertisements or redirects; and
 * neighbour advertisements only for its own or a link-local address. */
static __always_inline int ipv6_source_ok(struct __sk_buff *skb, const struct pod *pod, const struct l3 *l3)
{
	const union addr *own = &pod->ip[FAMILY_IPV6];
	union addr target;
	__u8 type;

	if (!addr_equal(&l3->saddr, own) && !link_local(&l3->saddr) && !addr_zero(&l3->saddr))
		return 0;
	if (l3->proto != IPPROTO_ICMPV6 || !l3->l4off)
		return 1;
	if (bpf_skb_load_bytes(skb, l3->l4off, &type, 1))
		return 0;
	if (type == ICMPV6_ROUTER_ADVERT || type == ICMPV6_REDIRECT)
		return 0;
	if (type != ICMPV6_NEIGH_ADVERT)
		return 1;
	if (bpf_skb_load_bytes(skb, l3->l4off + 8, &target, sizeof(target)))
		return 0;
	return addr_equal(&target, own) || link_local(&target);
}

/* pod_source_ok reports whether the frame from the pod behind this veth
 * carries only that pod's addresses. A veth with no registered pod (weftd
 * has not learned it yet) is not checked here: known_source leaves its
 * traffic to the kernel. */
static __always_inline int pod_source_ok(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct arp_ipv4 arp;
	struct pod *pod;
	struct eth *eth;
	struct l3 l3;
	__be16 proto;

	pod = bpf_map_lookup_elem(&weft_pods, &ifindex);
	if (!pod)
		return 1;
	if (ensure(skb, ETH_HLEN))
		return 0;
	eth = (void *)(long)skb->data;
	if ((void *)(eth + 1) > (void *)(long)skb->data_end || !mac_equal(eth->src, pod->mac))
		return 0;
	proto = eth->proto;
	if (proto == bpf_htons(ETH_P_IP))
		return !parse_l3(skb, ETH_HLEN, 0, &l3) && addr_equal(&l3.saddr, &pod->ip[FAMILY_IPV4]);
	if (proto == bpf_htons(ETH_P_IPV6))
		return !parse_l3(skb, ETH_HLEN, 1, &l3) && ipv6_source_ok(skb, pod, &l3);
	if (proto == bpf_htons(ETH_P_ARP)) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 8, &arp, sizeof(arp)))
			return 0;
		/* spa 0: an address probe (RFC 5227). */
		return mac_equal(arp.sha, pod->mac) && (arp.spa == pod->ip[FAMILY_IPV4].w[3] || arp.spa == 0);
	}
	return 1; /* other protocols: the MAC is the pod's */
}

/* known_source reports whether the packet l3 in the frame eth comes from
 * a registered pod: its source address is an endpoint with the frame's
 * source MAC and, at a veth, behind this veth. Only such packets take the
 * fast path; a pod weftd does not know (yet) takes the kernel path,
 * neither checked nor dropped. */
static __always_inline int known_source(struct __sk_buff *skb, const struct eth *eth, const struct l3 *l3,
					const int veth)
{
	struct endpoint *ep = bpf_map_lookup_elem(&weft_endpoints, &l3->saddr);

	return ep && mac_equal(ep->mac, eth->src) && (!veth || ep->host_ifindex == skb->ifindex);
}

/* to_tunnel reports whether the pod's packet l3 (family v6) goes to the
 * tunnel port of a node address (this node's or a known node's), or hides
 * its L4 header behind more IPv6 extension headers than the programs walk. */
static __always_inline int to_tunnel(struct __sk_buff *skb, const struct node_config *cfg,
				     const struct family_config *fam, const struct l3 *l3)
{
	if (!cfg->port)
		return 0;
	if (!l3->l4off && !l3->fragment)
		return 1; /* opaque */
	if (udp_dport(skb, l3) != bpf_htons(cfg->port))
		return 0;
	return addr_equal(&l3->daddr, &fam->node_ip) || bpf_map_lookup_elem(&weft_nodes, &l3->daddr);
}

#endif /* WEFT_POD_H */

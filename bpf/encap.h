/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Sending a pod's packet to a remote node: VXLAN encapsulation or host-gw. */
#ifndef WEFT_ENCAP_H
#define WEFT_ENCAP_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "maps.h"
#include "parse.h"
#include "uapi_compat.h"

#define AF_INET 2
/* UDP source port range for VXLAN, the kernel's default ephemeral range. */
#define SPORT_MIN 32768
#define SPORT_MAX 60999

static __always_inline __sum16 ipv4_csum(const struct ipv4 *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < IPV4_HLEN / 2; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__sum16)~sum;
}

/* decrement_ttl is a router's TTL decrement with incremental checksum update. */
static __always_inline void decrement_ttl(struct ipv4 *ip)
{
	__u32 check = ip->check;

	check += bpf_htons(0x0100);
	ip->check = (__sum16)(check + (check >= 0xffff));
	ip->ttl--;
}

/*
 * encap_vxlan wraps the pod's frame in flannel's VXLAN and sends it to the
 * peer. Outer DF stays clear, as flannel's kernel vxlan device leaves it, so
 * an underlay hop with a smaller MTU fragments instead of black-holing.
 * Until the headers are added the packet is untouched: a packet the kernel
 * will not grow, or that would not fit the uplink, takes the kernel path
 * (which routes it and decrements its TTL once).
 */
static __always_inline int encap_vxlan(struct __sk_buff *skb, const struct node_config *cfg,
				       const struct peer *peer, __u32 frame_len)
{
	const __u64 flags = BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
			    BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN) |
			    BPF_F_ADJ_ROOM_FIXED_GSO;
	__u32 inner_len = skb->len - ETH_HLEN;
	__u32 hash = bpf_get_hash_recalc(skb);
	__u32 mtu_len = 0;
	struct vxlan_encap h = {};
	struct ipv4 ip = {}, *inner;

	if (inner_len + VXLAN_ENCAP_LEN > 0xffff)
		return TC_ACT_OK; /* outer length would overflow */
	if (bpf_check_mtu(skb, cfg->uplink_ifindex, &mtu_len, VXLAN_ENCAP_LEN, 0))
		return TC_ACT_OK; /* too big for the uplink: the kernel fragments or says so */

	ip.ver_ihl = 0x45;
	ip.tot_len = bpf_htons(inner_len + VXLAN_ENCAP_LEN);
	ip.id = (__be16)bpf_get_prandom_u32();
	ip.ttl = 64;
	ip.protocol = IPPROTO_UDP;
	ip.saddr = cfg->node_ip;
	ip.daddr = peer->node_ip;
	ip.check = ipv4_csum(&ip);
	h.ip = ip;

	/* Outer MACs stay zero: bpf_redirect_neigh fills them in. */
	h.outer_eth.proto = bpf_htons(ETH_P_IP);
	/* Source port from the flow hash (ECMP/RSS entropy); checksum 0 (RFC 7348). */
	h.udp.source = bpf_htons((__u16)((((__u64)hash * (SPORT_MAX - SPORT_MIN)) >> 32) + SPORT_MIN));
	h.udp.dest = bpf_htons(cfg->port);
	h.udp.len = bpf_htons(inner_len + VXLAN_ENCAP_LEN - IPV4_HLEN);
	h.vxlan.flags = VXLAN_FLAG_VNI;
	h.vxlan.vni = bpf_htonl(cfg->vni << 8);
	__builtin_memcpy(h.inner_eth.dst, peer->vtep_mac, ETH_ALEN);
	__builtin_memcpy(h.inner_eth.src, cfg->vtep_mac, ETH_ALEN);
	h.inner_eth.proto = bpf_htons(ETH_P_IP);

	if (bpf_skb_adjust_room(skb, VXLAN_ENCAP_LEN, BPF_ADJ_ROOM_MAC, flags))
		return TC_ACT_OK; /* unchanged: the kernel path carries it */
	if (bpf_skb_store_bytes(skb, 0, &h, sizeof(h), 0) || ensure(skb, sizeof(h) + IPV4_HLEN))
		return drop(skb, DROP_HEADER_REWRITE);
	inner = ipv4_at(skb, sizeof(h));
	if (!inner)
		return drop(skb, DROP_HEADER_REWRITE);
	decrement_ttl(inner);
	count(&weft_traffic, COUNTER_VXLAN_TX, frame_len);
	/* NULL next hop: a FIB lookup on the outer header, so routed underlays work. */
	return bpf_redirect_neigh(cfg->uplink_ifindex, NULL, 0, 0);
}

/* transmit sends the pod's IPv4 frame (header ip) to peer's node. */
static __always_inline int transmit(struct __sk_buff *skb, const struct node_config *cfg,
				    const struct peer *peer, struct ipv4 *ip)
{
	struct bpf_redir_neigh nh = { .nh_family = AF_INET };
	__u32 len = skb->len;

	if (peer->mode == MODE_HOST_GW) {
		decrement_ttl(ip);
		nh.ipv4_nh = peer->node_ip;
		count(&weft_traffic, COUNTER_HOST_GW_TX, len);
		return bpf_redirect_neigh(cfg->uplink_ifindex, &nh, sizeof(nh), 0);
	}
	return encap_vxlan(skb, cfg, peer, len);
}

#endif /* WEFT_ENCAP_H */

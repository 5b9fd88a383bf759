/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Sending a pod's packet to a remote node: VXLAN or udp encapsulation, or host-gw. */
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
 * encap wraps the pod's frame in flannel's VXLAN (vxlan set) or flannel's
 * udp format (the IPv4 packet as the payload of UDP between the node's
 * udp ports) and sends it to the peer. Outer DF: clear for VXLAN, as
 * flannel's kernel vxlan device leaves it, so an underlay hop with a
 * smaller MTU fragments instead of black-holing; set for udp, as flanneld's
 * socket sends it. Until the headers are added the packet is untouched: a
 * packet the kernel will not grow, or that would not fit the uplink, takes
 * the kernel path (which routes it and decrements its TTL once).
 */
static __always_inline int encap(struct __sk_buff *skb, const struct node_config *cfg,
				 const struct peer *peer, __u32 frame_len, const int vxlan)
{
	const __u32 encap_len = vxlan ? VXLAN_ENCAP_LEN : UDP_ENCAP_LEN;
	const __u32 hdr_len = ETH_HLEN + encap_len; /* what is written of h */
	const __u64 flags = BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
			    BPF_F_ADJ_ROOM_FIXED_GSO |
			    (vxlan ? BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN) : 0);
	__u32 inner_len = skb->len - ETH_HLEN;
	__u32 mtu_len = 0;
	struct vxlan_encap h = {};
	struct ipv4 ip = {}, *inner;

	if (inner_len + encap_len > 0xffff)
		return TC_ACT_OK; /* outer length would overflow */
	if (bpf_check_mtu(skb, cfg->uplink_ifindex, &mtu_len, encap_len, 0))
		return TC_ACT_OK; /* too big for the uplink: the kernel fragments or says so */

	ip.ver_ihl = 0x45;
	ip.tot_len = bpf_htons(inner_len + encap_len);
	ip.id = (__be16)bpf_get_prandom_u32();
	ip.frag_off = vxlan ? 0 : bpf_htons(IPV4_DF);
	ip.ttl = 64;
	ip.protocol = IPPROTO_UDP;
	ip.saddr = cfg->node_ip;
	ip.daddr = peer->node_ip;
	ip.check = ipv4_csum(&ip);
	h.ip = ip;

	/* Outer MACs stay zero: bpf_redirect_neigh fills them in. */
	h.outer_eth.proto = bpf_htons(ETH_P_IP);
	/* Checksum 0 (RFC 7348; flannel's udp receivers take it). */
	h.udp.dest = bpf_htons(cfg->port);
	h.udp.len = bpf_htons(inner_len + encap_len - IPV4_HLEN);
	if (vxlan) {
		__u32 hash = bpf_get_hash_recalc(skb);

		/* Source port from the flow hash (ECMP/RSS entropy). */
		h.udp.source = bpf_htons((__u16)((((__u64)hash * (SPORT_MAX - SPORT_MIN)) >> 32) + SPORT_MIN));
		h.vxlan.flags = VXLAN_FLAG_VNI;
		h.vxlan.vni = bpf_htonl(cfg->vni << 8);
		__builtin_memcpy(h.inner_eth.dst, peer->vtep_mac, ETH_ALEN);
		__builtin_memcpy(h.inner_eth.src, cfg->vtep_mac, ETH_ALEN);
		h.inner_eth.proto = bpf_htons(ETH_P_IP);
	} else {
		h.udp.source = h.udp.dest; /* flanneld's socket is bound to its port */
	}

	if (bpf_skb_adjust_room(skb, encap_len, BPF_ADJ_ROOM_MAC, flags))
		return TC_ACT_OK; /* unchanged: the kernel path carries it */
	if (bpf_skb_store_bytes(skb, 0, &h, hdr_len, 0) || ensure(skb, hdr_len + IPV4_HLEN))
		return drop(skb, DROP_HEADER_REWRITE);
	inner = ipv4_at(skb, hdr_len);
	if (!inner)
		return drop(skb, DROP_HEADER_REWRITE);
	decrement_ttl(inner);
	count(&weft_traffic, vxlan ? COUNTER_VXLAN_TX : COUNTER_UDP_TX, frame_len);
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
	if (peer->mode == MODE_UDP)
		return encap(skb, cfg, peer, len, 0);
	return encap(skb, cfg, peer, len, 1);
}

#endif /* WEFT_ENCAP_H */

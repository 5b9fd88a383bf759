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
#define AF_INET6 10
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

/* decrement_hops is a router's TTL (checksum updated) or hop limit
 * decrement of the IP header of family v6 at off; -1 if it is unreadable. */
static __always_inline int decrement_hops(struct __sk_buff *skb, __u32 off, const int v6)
{
	void *data, *end;

	if (ensure(skb, off + IP_HLEN(v6)))
		return -1;
	data = (void *)(long)skb->data + off;
	end = (void *)(long)skb->data_end;
	if (v6) {
		struct ipv6 *ip = data;

		if ((void *)(ip + 1) > end)
			return -1;
		ip->hop_limit--;
		return 0;
	}
	struct ipv4 *ip = data;

	if ((void *)(ip + 1) > end)
		return -1;
	decrement_ttl(ip);
	return 0;
}

/* The IPv6 pseudo header (RFC 8200 8.1). */
struct pseudo6 {
	union addr saddr;
	union addr daddr;
	__be32 len;
	__be32 next;
};

/* csum_fold folds a 32-bit ones' complement sum into a checksum. */
static __always_inline __sum16 csum_fold(__s64 sum)
{
	__u32 s = (__u32)sum;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__sum16)~s;
}

/*
 * udp6_csum is the outer UDP checksum of VXLAN over IPv6 (t: the headers
 * after the outer IPv6 header, checksum 0) carrying the pod's IPv6 header
 * inner (hop limit already decremented) and its TCP or UDP segment, without
 * reading the segment: its sum, checksum field included, is the complement
 * of its pseudo header's, once its checksum is right (local checksum
 * offload, as the kernel computes it for a CHECKSUM_PARTIAL inner packet;
 * a device summing the whole datagram gets the same). 0 is sent as 0xffff.
 */
static __always_inline __sum16 udp6_csum(const union addr *saddr, const union addr *daddr,
					 const struct vxlan_tunnel *t, const struct ipv6 *inner)
{
	struct {
		struct vxlan_tunnel t;
		struct ipv6 inner;
		__u8 pad[2]; /* to a multiple of 4 bytes, zero: adds nothing */
	} __attribute__((packed)) hdrs = { .t = *t, .inner = *inner };
	struct pseudo6 outer = {
		.saddr = *saddr, .daddr = *daddr, .len = bpf_htonl(bpf_ntohs(t->udp.len)),
		.next = bpf_htonl(IPPROTO_UDP),
	};
	struct pseudo6 pod = {
		.saddr = inner->saddr, .daddr = inner->daddr, .len = bpf_htonl(bpf_ntohs(inner->payload_len)),
		.next = bpf_htonl(inner->nexthdr),
	};
	__s64 sum = bpf_csum_diff(NULL, 0, (void *)&outer, sizeof(outer), 0);
	__sum16 check;

	/* + the headers - the pod's pseudo header. */
	sum = bpf_csum_diff((void *)&pod, sizeof(pod), (void *)&hdrs, sizeof(hdrs), (__wsum)sum);
	check = csum_fold(sum);
	return check ? check : (__sum16)0xffff;
}

/*
 * encap wraps the pod's frame in flannel's VXLAN (vxlan set) over IPv4 or
 * IPv6 (v6), as flannel.<VNI> and flannel-v6.<VNI> send it, or in flannel's
 * udp format (IPv4: the packet as the payload of UDP between the node's udp
 * ports) and sends it to the peer. Outer IPv4 DF: clear for VXLAN, as
 * flannel's kernel vxlan device leaves it, so an underlay hop with a smaller
 * MTU fragments instead of black-holing; set for udp, as flanneld's socket
 * sends it. Outer IPv6: traffic class with the pod packet's ECN bits (CE as
 * ECT(0)), flow label 0, hop limit 64 and a UDP checksum, as the kernel's
 * vxlan device sends them (IPv6 receivers drop a zero checksum). Until the
 * headers are added the packet is untouched: a packet the kernel will not
 * grow or that would not fit the uplink takes the kernel path (which routes
 * it and decrements its TTL once). IPv6 GSO packets go to vxlan_device.
 */
static __always_inline int encap(struct __sk_buff *skb, const struct node_config *cfg,
				 const struct family_config *fam, const struct peer *peer,
				 __u32 frame_len, const int vxlan, const int v6)
{
	const __u32 encap_len = vxlan ? VXLAN_ENCAP_LEN(v6) : UDP_ENCAP_LEN;
	const __u32 hdr_len = ETH_HLEN + encap_len; /* what is written of h */
	const __u64 flags = (v6 ? BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 : BPF_F_ADJ_ROOM_ENCAP_L3_IPV4) |
			    BPF_F_ADJ_ROOM_ENCAP_L4_UDP | BPF_F_ADJ_ROOM_FIXED_GSO |
			    (vxlan ? BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN) : 0);
	__u32 inner_len = skb->len - ETH_HLEN;
	__u32 mtu_len = 0;
	struct vxlan_encap h = {};
	struct vxlan_tunnel *t = v6 ? &h.t6 : &h.t4;

	if (inner_len + encap_len > 0xffff)
		return TC_ACT_OK; /* outer length would overflow */
	if (bpf_check_mtu(skb, cfg->uplink_ifindex, &mtu_len, encap_len, 0))
		return TC_ACT_OK; /* too big for the uplink: the kernel fragments or says so */

	t->udp.dest = bpf_htons(cfg->port);
	t->udp.len = bpf_htons(inner_len + encap_len - IP_HLEN(v6));
	if (vxlan) {
		__u32 hash = bpf_get_hash_recalc(skb);

		/* Source port from the flow hash (ECMP/RSS entropy). */
		t->udp.source = bpf_htons((__u16)((((__u64)hash * (SPORT_MAX - SPORT_MIN)) >> 32) + SPORT_MIN));
		t->vxlan.flags = VXLAN_FLAG_VNI;
		t->vxlan.vni = bpf_htonl(cfg->vni << 8);
		__builtin_memcpy(t->inner_eth.dst, peer->vtep_mac, ETH_ALEN);
		__builtin_memcpy(t->inner_eth.src, fam->vtep_mac, ETH_ALEN);
		t->inner_eth.proto = bpf_htons(v6 ? ETH_P_IPV6 : ETH_P_IP);
	} else {
		t->udp.source = t->udp.dest; /* flanneld's socket is bound to its port */
	}
	/* Outer MACs stay zero: bpf_redirect_neigh fills them in. */
	h.outer_eth.proto = bpf_htons(v6 ? ETH_P_IPV6 : ETH_P_IP);
	if (v6) {
		struct ipv6 inner;
		__u32 ecn;

		if (bpf_skb_load_bytes(skb, ETH_HLEN, &inner, sizeof(inner)))
			return TC_ACT_OK;
		inner.hop_limit--;
		ecn = (bpf_ntohl(inner.ver_tc_flow) >> 20) & 3;
		h.ip6.ver_tc_flow = bpf_htonl(0x60000000 | (ecn == 3 ? 2 : ecn) << 20);
		h.ip6.payload_len = t->udp.len;
		h.ip6.nexthdr = IPPROTO_UDP;
		h.ip6.hop_limit = 64;
		h.ip6.saddr = fam->node_ip;
		h.ip6.daddr = peer->node_ip;
		t->udp.check = udp6_csum(&fam->node_ip, &peer->node_ip, t, &inner);
	} else {
		struct ipv4 ip = {};

		ip.ver_ihl = 0x45;
		ip.tot_len = bpf_htons(inner_len + encap_len);
		ip.id = (__be16)bpf_get_prandom_u32();
		ip.frag_off = vxlan ? 0 : bpf_htons(IPV4_DF);
		ip.ttl = 64;
		ip.protocol = IPPROTO_UDP;
		ip.saddr = fam->node_ip.w[3];
		ip.daddr = peer->node_ip.w[3];
		ip.check = ipv4_csum(&ip);
		h.ip4 = ip;
		/* Checksum 0 (RFC 7348; flannel's udp receivers take it). */
	}

	if (bpf_skb_adjust_room(skb, encap_len, BPF_ADJ_ROOM_MAC, flags))
		return TC_ACT_OK; /* unchanged: the kernel path carries it */
	if (bpf_skb_store_bytes(skb, 0, &h, hdr_len, 0) || decrement_hops(skb, hdr_len, v6))
		return drop(skb, v6, DROP_HEADER_REWRITE);
	count_traffic(v6, vxlan ? COUNTER_VXLAN_TX : COUNTER_UDP_TX, frame_len);
	/* NULL next hop: a FIB lookup on the outer header, so routed underlays work. */
	return bpf_redirect_neigh(cfg->uplink_ifindex, NULL, 0, 0);
}

/*
 * vxlan_device hands an IPv6 GSO packet (a pod's TSO burst) for a VXLAN
 * peer to flannel-v6.<VNI>, addressed as the kernel path would (inner
 * Ethernet from the node's v6 VTEP MAC to the peer's, hop limit
 * decremented), skipping the bridge, routing and netfilter of the pod
 * packet. BPF cannot have the kernel checksum each segment's outer UDP
 * header (bpf_skb_adjust_room marks SKB_GSO_UDP_TUNNEL, never _CSUM, and
 * IPv6 receivers drop a zero checksum); the device's own encapsulation
 * does (SKB_GSO_UDP_TUNNEL_CSUM), to the peer's fdb entry, which the slow
 * path programs. Segments too big for the device, or no device: the kernel
 * path.
 */
static __always_inline int vxlan_device(struct __sk_buff *skb, const struct family_config *fam,
					const struct peer *peer, __u32 frame_len)
{
	struct eth eth = { .proto = bpf_htons(ETH_P_IPV6) };
	__u32 mtu_len = 0;

	if (!fam->vxlan_ifindex || bpf_check_mtu(skb, fam->vxlan_ifindex, &mtu_len, 0, 0))
		return TC_ACT_OK;
	__builtin_memcpy(eth.dst, peer->vtep_mac, ETH_ALEN);
	__builtin_memcpy(eth.src, fam->vtep_mac, ETH_ALEN);
	if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0) || decrement_hops(skb, ETH_HLEN, 1))
		return drop(skb, 1, DROP_HEADER_REWRITE);
	count_traffic(1, COUNTER_VXLAN_TX, frame_len);
	count_traffic(1, COUNTER_VXLAN_DEVICE_TX, frame_len - ETH_HLEN);
	return bpf_redirect(fam->vxlan_ifindex, 0);
}

/* transmit sends the pod's frame (family v6) to peer's node. */
static __always_inline int transmit(struct __sk_buff *skb, const struct node_config *cfg,
				    const struct family_config *fam, const struct peer *peer, const int v6)
{
	struct bpf_redir_neigh nh = { .nh_family = v6 ? AF_INET6 : AF_INET };
	__u32 len = skb->len;

	if (peer->mode == MODE_HOST_GW) {
		if (decrement_hops(skb, ETH_HLEN, v6))
			return drop(skb, v6, DROP_HEADER_REWRITE);
		if (v6)
			__builtin_memcpy(nh.ipv6_nh, peer->node_ip.w, 16);
		else
			nh.ipv4_nh = peer->node_ip.w[3];
		count_traffic(v6, COUNTER_HOST_GW_TX, len);
		return bpf_redirect_neigh(cfg->uplink_ifindex, &nh, sizeof(nh), 0);
	}
	if (peer->mode == MODE_UDP)
		return v6 ? TC_ACT_OK : encap(skb, cfg, fam, peer, len, 0, v6);
	if (v6 && skb->gso_size)
		return vxlan_device(skb, fam, peer, len);
	return encap(skb, cfg, fam, peer, len, 1, v6);
}

#endif /* WEFT_ENCAP_H */

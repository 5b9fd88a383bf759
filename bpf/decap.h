/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Receiving from a remote node: validate VXLAN or flannel's udp (known
 * node, inner source in one of that node's subnets), then decapsulate and
 * deliver established flows straight into the pod; host-gw the same
 * without the tunnel.
 */
#ifndef WEFT_DECAP_H
#define WEFT_DECAP_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "maps.h"
#include "parse.h"
#include "conntrack.h"
#include "nat.h"
#include "uapi_compat.h"

/*
 * to_local_pod reports whether the fast path may deliver the packet l3
 * (family v6) to a local pod: its flow is established (x: its NAT) and goes
 * to a pod this node knows (ep). A flow that only lacks its liberal mark
 * asks for it and stays on the kernel path meanwhile.
 */
static __always_inline int to_local_pod(struct __sk_buff *skb, const struct l3 *l3, const int v6,
					const struct node_config *cfg, struct xlat *x,
					struct endpoint *ep)
{
	enum offload state;
	struct endpoint *found;
	struct flow f = {};

	state = offload_state(skb, l3, v6, cfg, x, &f);
	if (state == OFFLOAD_NO)
		return 0;
	found = bpf_map_lookup_elem(&weft_endpoints, &x->daddr);
	if (!found)
		return 0;
	if (state == OFFLOAD_ASK) {
		request_liberal(&f);
		return 0;
	}
	*ep = *found;
	return 1;
}

/* deliver hands a pod-bound frame of family v6 (Ethernet at offset 0, L4
 * protocol proto) to the pod, NATed as x says. */
static __always_inline int deliver(struct __sk_buff *skb, const struct node_config *cfg,
				   const struct endpoint *ep, const struct xlat *x, __u8 proto,
				   __u32 counter, const int v6)
{
	struct eth eth = { .proto = bpf_htons(v6 ? ETH_P_IPV6 : ETH_P_IP) };

	if (x->nat && apply_xlat(skb, ETH_HLEN, ETH_HLEN + IPV4_HLEN, proto, x))
		return drop(skb, v6, DROP_HEADER_REWRITE);

	__builtin_memcpy(eth.dst, ep->mac, ETH_ALEN);
	__builtin_memcpy(eth.src, cfg->bridge_mac, ETH_ALEN);
	if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0))
		return drop(skb, v6, DROP_HEADER_REWRITE);
	count_traffic(v6, counter, skb->len);
	return bpf_redirect_peer(ep->host_ifindex, 0);
}

/* sent_by reports whether the node whose tunnel traffic comes from
 * outer_src may send with inner source src: src is in one of its subnets,
 * or its own. */
static __always_inline int sent_by(const union addr *src, const union addr *outer_src)
{
	struct lpm_key key = { .prefixlen = 128, .addr = *src };
	struct peer *peer;

	if (addr_equal(src, outer_src))
		return 1;
	peer = bpf_map_lookup_elem(&weft_peers, &key);
	return peer && (addr_equal(&peer->node_ip, outer_src) || addr_equal(&peer->tunnel_ip, outer_src));
}

/* rx_tunnel handles VXLAN (vxlan set) or flannel's udp to this node's port
 * on a local address, outer header outer of family v6 (VXLAN carries the
 * same family inside). */
static __always_inline int rx_tunnel(struct __sk_buff *skb, const struct node_config *cfg,
				     const struct l3 *outer, const int vxlan, const int v6)
{
	const __u32 tunnel_len = vxlan ? VXLAN_TUNNEL_LEN : UDP_HLEN;
	const __u32 encap_len = IP_HLEN(v6) + tunnel_len;
	const __u32 inner_off = outer->l4off + tunnel_len;
	/* The outer IP packet's length from its L4 header on. */
	const __u32 l4_len = outer->len - (outer->l4off - ETH_HLEN);
	struct vxlan_tunnel t;
	struct l3 inner;
	struct xlat x = {};
	struct endpoint ep;

	if (bpf_skb_load_bytes(skb, outer->l4off, &t, tunnel_len))
		return drop(skb, v6, DROP_MALFORMED);
	/* IPv4 options: flannel never sends them. IPv6 extension headers are
	 * validated below, then left to the kernel. */
	if (!v6 && outer->options)
		return drop(skb, v6, DROP_MALFORMED);
	if (outer->len < outer->l4off - ETH_HLEN + tunnel_len + IP_HLEN(v6))
		return drop(skb, v6, DROP_MALFORMED);
	/* Trailing bytes past the length are Ethernet padding, not an error. */
	if (!outer->fragment && (bpf_ntohs(t.udp.len) != l4_len ||
				 (skb->gso_size == 0 && outer->len + ETH_HLEN > skb->len)))
		return drop(skb, v6, DROP_MALFORMED);
	if (vxlan && (!(t.vxlan.flags & VXLAN_FLAG_VNI) || t.vxlan.vni != bpf_htonl(cfg->vni << 8)))
		return drop(skb, v6, DROP_BAD_VNI);
	if (!bpf_map_lookup_elem(&weft_nodes, &outer->saddr))
		return drop(skb, v6, DROP_UNKNOWN_NODE);
	/* udp has no header naming the payload: its version nibble does
	 * (parse_l3 fails on another). */
	if (vxlan && t.inner_eth.proto != bpf_htons(v6 ? ETH_P_IPV6 : ETH_P_IP))
		return drop(skb, v6, DROP_INNER_NOT_IPV4);
	if (parse_l3(skb, inner_off, v6, &inner)) {
		__u8 version;

		if (!vxlan && !bpf_skb_load_bytes(skb, inner_off, &version, 1) && (version & 0xf0) != 0x40)
			return drop(skb, v6, DROP_INNER_NOT_IPV4);
		return drop(skb, v6, DROP_MALFORMED);
	}
	if (!sent_by(&inner.saddr, &outer->saddr))
		return drop(skb, v6, DROP_SPOOFED_SOURCE);
	if (outer->fragment || outer->options)
		return TC_ACT_OK; /* validated: the kernel reassembles, decapsulates */
	/* The inner frame may be padded (short frames), never truncated. */
	if (skb->gso_size == 0 && (inner.len < IP_HLEN(v6) || inner.len > l4_len - tunnel_len))
		return drop(skb, v6, DROP_MALFORMED);

	/* Options, fragments, pods we do not know, flows netfilter has not
	 * established: flannel.<VNI>, flannel-v6.<VNI> or flannel0 (weftd's
	 * udp socket) decapsulates, the stack decides. */
	if (!simple(&inner))
		return TC_ACT_OK;
	if (!to_local_pod(skb, &inner, v6, cfg, &x, &ep))
		return TC_ACT_OK;
	if (bpf_skb_adjust_room(skb, -(__s32)encap_len, BPF_ADJ_ROOM_MAC,
				(v6 ? WEFT_ADJ_ROOM_DECAP_L3_IPV6 : WEFT_ADJ_ROOM_DECAP_L3_IPV4) |
					BPF_F_ADJ_ROOM_FIXED_GSO))
		return TC_ACT_OK; /* unchanged: the kernel path decapsulates */
	return deliver(skb, cfg, &ep, &x, inner.proto, vxlan ? COUNTER_VXLAN_RX : COUNTER_UDP_RX, v6);
}

/* rx_host_gw delivers established flows from host-gw peers' pods (packet
 * l3, family v6). */
static __always_inline int rx_host_gw(struct __sk_buff *skb, const struct node_config *cfg,
				      const struct l3 *l3, const int v6)
{
	struct lpm_key key = { .prefixlen = 128, .addr = l3->saddr };
	struct xlat x = {};
	struct endpoint ep;
	struct peer *peer;

	if (!simple(l3))
		return TC_ACT_OK;
	peer = bpf_map_lookup_elem(&weft_peers, &key);
	if (!peer || peer->mode != MODE_HOST_GW)
		return TC_ACT_OK; /* not from a host-gw peer's pods: the kernel routes it */
	if (skb->gso_size == 0 && l3->len + ETH_HLEN > skb->len)
		return drop(skb, v6, DROP_MALFORMED);
	if (l3->ttl <= 1 || !to_local_pod(skb, l3, v6, cfg, &x, &ep))
		return TC_ACT_OK;
	return deliver(skb, cfg, &ep, &x, l3->proto, COUNTER_HOST_GW_RX, v6);
}

#endif /* WEFT_DECAP_H */

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
 * to_local_pod reports whether the fast path may deliver the IPv4 packet ip
 * (L4 header at l4off) to a local pod: its flow is established (x: its NAT)
 * and goes to a pod this node knows (ep). A flow that only lacks its
 * liberal mark asks for it and stays on the kernel path meanwhile.
 */
static __always_inline int to_local_pod(struct __sk_buff *skb, const struct ipv4 *ip, __u32 l4off,
					const struct node_config *cfg, struct xlat *x,
					struct endpoint *ep)
{
	enum offload state;
	struct endpoint *found;
	struct flow f = {};

	state = offload_state(skb, ip, l4off, cfg, x, &f);
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

/* deliver hands a pod-bound IPv4 frame (Ethernet at offset 0, protocol
 * proto) to the pod, NATed as x says. */
static __always_inline int deliver(struct __sk_buff *skb, const struct node_config *cfg,
				   const struct endpoint *ep, const struct xlat *x, __u8 proto,
				   __u32 counter)
{
	struct eth eth = { .proto = bpf_htons(ETH_P_IP) };

	if (x->nat && apply_xlat(skb, ETH_HLEN, ETH_HLEN + IPV4_HLEN, proto, x))
		return drop(skb, DROP_HEADER_REWRITE);

	__builtin_memcpy(eth.dst, ep->mac, ETH_ALEN);
	__builtin_memcpy(eth.src, cfg->bridge_mac, ETH_ALEN);
	if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0))
		return drop(skb, DROP_HEADER_REWRITE);
	count(&weft_traffic, counter, skb->len);
	return bpf_redirect_peer(ep->host_ifindex, 0);
}

/* sent_by reports whether the node whose tunnel traffic comes from
 * outer_src may send with inner source src: src is in one of its subnets,
 * or its own. */
static __always_inline int sent_by(__be32 src, __be32 outer_src)
{
	struct lpm_key key = { .prefixlen = 32, .addr = src };
	struct peer *peer;

	if (src == outer_src)
		return 1;
	peer = bpf_map_lookup_elem(&weft_peers, &key);
	return peer && (peer->node_ip == outer_src || peer->tunnel_ip == outer_src);
}

/* rx_tunnel handles VXLAN (vxlan set) or flannel's udp to this node's
 * port on a local address. */
static __always_inline int rx_tunnel(struct __sk_buff *skb, const struct node_config *cfg,
				     const int vxlan)
{
	const __u32 encap_len = vxlan ? VXLAN_ENCAP_LEN : UDP_ENCAP_LEN;
	const __u32 inner_off = ETH_HLEN + encap_len;
	struct vxlan_encap *h;
	struct xlat x = {};
	struct endpoint ep;
	struct ipv4 *inner;
	__u32 outer_len, inner_len;
	int fragment;
	__u8 proto;

	if (ensure(skb, inner_off + IPV4_HLEN))
		return drop(skb, DROP_MALFORMED);
	h = (void *)(long)skb->data;
	inner = (void *)h + inner_off;
	if ((void *)(inner + 1) > (void *)(long)skb->data_end)
		return drop(skb, DROP_MALFORMED);
	if (h->ip.ver_ihl != 0x45)
		return drop(skb, DROP_MALFORMED);
	outer_len = bpf_ntohs(h->ip.tot_len);
	fragment = h->ip.frag_off & bpf_htons(IPV4_MF);
	if (outer_len < encap_len + IPV4_HLEN)
		return drop(skb, DROP_MALFORMED);
	/* Trailing bytes past tot_len are Ethernet padding, not an error. */
	if (!fragment && (bpf_ntohs(h->udp.len) != outer_len - IPV4_HLEN ||
			  (skb->gso_size == 0 && outer_len + ETH_HLEN > skb->len)))
		return drop(skb, DROP_MALFORMED);
	if (vxlan && (!(h->vxlan.flags & VXLAN_FLAG_VNI) || h->vxlan.vni != bpf_htonl(cfg->vni << 8)))
		return drop(skb, DROP_BAD_VNI);
	if (!bpf_map_lookup_elem(&weft_nodes, &h->ip.saddr))
		return drop(skb, DROP_UNKNOWN_NODE);
	/* udp has no header naming the payload: its version nibble does. */
	if (vxlan ? h->inner_eth.proto != bpf_htons(ETH_P_IP) : (inner->ver_ihl & 0xf0) != 0x40)
		return drop(skb, DROP_INNER_NOT_IPV4);
	if (!ipv4_hlen(inner))
		return drop(skb, DROP_MALFORMED);
	if (!sent_by(inner->saddr, h->ip.saddr))
		return drop(skb, DROP_SPOOFED_SOURCE);
	if (fragment)
		return TC_ACT_OK; /* validated first fragment: the kernel reassembles */
	inner_len = bpf_ntohs(inner->tot_len);
	/* The inner frame may be padded (short frames), never truncated. */
	if (skb->gso_size == 0 && (inner_len < IPV4_HLEN || inner_len > outer_len - encap_len))
		return drop(skb, DROP_MALFORMED);

	/* Options, fragments, pods we do not know, flows netfilter has not
	 * established: flannel.<VNI> or flannel0 (weftd's udp socket)
	 * decapsulates, the stack decides. */
	if (inner->ver_ihl != 0x45 || is_fragment(inner))
		return TC_ACT_OK;
	proto = inner->protocol;
	if (!to_local_pod(skb, inner, inner_off + IPV4_HLEN, cfg, &x, &ep))
		return TC_ACT_OK;
	if (bpf_skb_adjust_room(skb, -(__s32)encap_len, BPF_ADJ_ROOM_MAC,
				WEFT_ADJ_ROOM_DECAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO))
		return TC_ACT_OK; /* unchanged: the kernel path decapsulates */
	return deliver(skb, cfg, &ep, &x, proto, vxlan ? COUNTER_VXLAN_RX : COUNTER_UDP_RX);
}

/* rx_host_gw delivers established flows from host-gw peers' pods. */
static __always_inline int rx_host_gw(struct __sk_buff *skb, const struct node_config *cfg,
				      struct ipv4 *ip)
{
	struct lpm_key key = { .prefixlen = 32 };
	struct xlat x = {};
	struct endpoint ep;
	struct peer *peer;

	if (ip->ver_ihl != 0x45 || is_fragment(ip))
		return TC_ACT_OK;
	key.addr = ip->saddr;
	peer = bpf_map_lookup_elem(&weft_peers, &key);
	if (!peer || peer->mode != MODE_HOST_GW)
		return TC_ACT_OK; /* not from a host-gw peer's pods: the kernel routes it */
	if (skb->gso_size == 0 && bpf_ntohs(ip->tot_len) + ETH_HLEN > skb->len)
		return drop(skb, DROP_MALFORMED);
	if (ip->ttl <= 1 || !to_local_pod(skb, ip, ETH_HLEN + IPV4_HLEN, cfg, &x, &ep))
		return TC_ACT_OK;
	return deliver(skb, cfg, &ep, &x, ip->protocol, COUNTER_HOST_GW_RX);
}

#endif /* WEFT_DECAP_H */

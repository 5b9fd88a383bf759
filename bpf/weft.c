// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * weft's fast path: tc programs that carry pod traffic between nodes in
 * flannel's wire format (VXLAN or host-gw) without the host stack.
 *
 *   weft_veth_ingress   ingress of each pod's host veth: pod -> remote pod,
 *                       encap or host-gw redirect to the uplink before the
 *                       bridge and netfilter see it; passes anything else.
 *   weft_pod_ingress    bridge (cni0) ingress: the same for what the veth
 *                       program passed, unless conntrack NATs the connection
 *                       (conntrack.h).
 *   weft_uplink_ingress uplink ingress: VXLAN / host-gw from a known node ->
 *                       validate, decap and hand to the pod's veth peer.
 *   weft_pod_egress     bridge egress: remembers pod flows the host stack
 *                       delivered (conntrack may NAT them), so their replies
 *                       take the stack too.
 *
 * Anything the programs do not fast-path goes to the kernel unchanged, where
 * flannel's own state (flannel.<VNI>, routes) handles it: the slow path.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "weft.h"
#include "uapi_compat.h"
#include "packet.h"
#include "conntrack.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
/* UDP source port range for VXLAN, the kernel's default ephemeral range. */
#define SPORT_MIN 32768
#define SPORT_MAX 60999

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
	__type(key, __be32);
	__type(value, struct endpoint);
	__uint(max_entries, 16384);
	PIN_BY_NAME;
} weft_endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, struct known_node);
	__uint(max_entries, 16384);
	PIN_BY_NAME;
} weft_nodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct traffic);
	__uint(max_entries, COUNTER_MAX);
	PIN_BY_NAME;
} weft_traffic SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct traffic);
	__uint(max_entries, DROP_MAX);
	PIN_BY_NAME;
} weft_drops SEC(".maps");

/* Value: when the flow was first seen (bpf_ktime_get_ns). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct flow_key);
	__type(value, __u64);
	__uint(max_entries, 65536);
	PIN_BY_NAME;
} weft_stackflows SEC(".maps");

/* Puts the enums into BTF so bpf2go -type can mirror them in Go. */
struct enums {
	enum mode mode;
	enum counter counter;
	enum drop_reason drop_reason;
};
const struct enums *unused_enums __attribute__((unused));

static __always_inline void count(void *map, __u32 idx, __u64 bytes)
{
	struct traffic *t = bpf_map_lookup_elem(map, &idx);

	if (t) {
		t->packets++;
		t->bytes += bytes;
	}
}

static __always_inline int drop(struct __sk_buff *skb, __u32 reason)
{
	count(&weft_drops, reason, skb->len);
	return TC_ACT_SHOT;
}

/* ensure makes the first len bytes directly readable; -1 if the packet is shorter. */
static __always_inline int ensure(struct __sk_buff *skb, __u32 len)
{
	if ((void *)(long)skb->data + len <= (void *)(long)skb->data_end)
		return 0;
	if (skb->len < len)
		return -1;
	return bpf_skb_pull_data(skb, len) ? -1 : 0;
}

static __always_inline struct node_config *config(void)
{
	__u32 zero = 0;
	struct node_config *cfg = bpf_map_lookup_elem(&weft_config, &zero);

	return cfg && cfg->node_ip ? cfg : NULL;
}

static __always_inline int is_fragment(const struct ipv4 *ip)
{
	return ip->frag_off & bpf_htons(IPV4_MF | IPV4_OFFSET_MASK);
}

static __always_inline int has_ports(const struct ipv4 *ip)
{
	return ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP;
}

/* ports reads the L4 source and destination ports of the IPv4 packet at off. */
static __always_inline int ports(struct __sk_buff *skb, __u32 off, const struct ipv4 *ip, __be16 p[2])
{
	return bpf_skb_load_bytes(skb, off + (ip->ver_ihl & 0xf) * 4, p, 2 * sizeof(__be16));
}

static __always_inline void remember(const struct flow_key *k)
{
	__u64 now;

	if (bpf_map_lookup_elem(&weft_stackflows, k))
		return;
	now = bpf_ktime_get_ns();
	bpf_map_update_elem(&weft_stackflows, k, &now, BPF_ANY);
}

static __always_inline int in_subnet(__be32 addr, __be32 subnet, __u32 prefixlen)
{
	__be32 mask;

	if (prefixlen == 0)
		return 1;
	if (prefixlen > 32)
		return 0;
	mask = bpf_htonl(~0U << (32 - prefixlen));
	return (addr & mask) == (subnet & mask);
}

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

static __always_inline int encap_vxlan(struct __sk_buff *skb, const struct node_config *cfg,
				       const struct peer *peer, __u32 frame_len)
{
	const __u64 flags = BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
			    BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN) |
			    BPF_F_ADJ_ROOM_FIXED_GSO;
	__u32 inner_len = skb->len - ETH_HLEN;
	__u32 hash = bpf_get_hash_recalc(skb);
	struct vxlan_encap h = {};
	struct ipv4 ip = {};

	if (inner_len + VXLAN_ENCAP_LEN > 0xffff)
		return TC_ACT_OK; /* outer length would overflow: let the kernel cope */

	ip.ver_ihl = 0x45;
	ip.tot_len = bpf_htons(inner_len + VXLAN_ENCAP_LEN);
	ip.frag_off = bpf_htons(IPV4_DF);
	ip.ttl = 64;
	ip.protocol = IPPROTO_UDP;
	ip.saddr = cfg->node_ip;
	ip.daddr = peer->node_ip;
	ip.check = ipv4_csum(&ip);

	/* Outer MACs stay zero: bpf_redirect_neigh fills them in. */
	h.outer_eth.proto = bpf_htons(ETH_P_IP);
	h.ip = ip;
	/* Source port from the flow hash (ECMP/RSS entropy); checksum 0 (RFC 7348). */
	h.udp.source = bpf_htons((__u16)((((__u64)hash * (SPORT_MAX - SPORT_MIN)) >> 32) + SPORT_MIN));
	h.udp.dest = bpf_htons(cfg->port);
	h.udp.len = bpf_htons(inner_len + VXLAN_ENCAP_LEN - IPV4_HLEN);
	h.vxlan.flags = VXLAN_FLAG_VNI;
	h.vxlan.vni = bpf_htonl(cfg->vni << 8);
	__builtin_memcpy(h.inner_eth.dst, peer->vtep_mac, ETH_ALEN);
	__builtin_memcpy(h.inner_eth.src, cfg->vtep_mac, ETH_ALEN);
	h.inner_eth.proto = bpf_htons(ETH_P_IP);

	if (bpf_skb_adjust_room(skb, VXLAN_ENCAP_LEN, BPF_ADJ_ROOM_MAC, flags) ||
	    bpf_skb_store_bytes(skb, 0, &h, sizeof(h), 0))
		return drop(skb, DROP_HEADER_REWRITE);
	count(&weft_traffic, COUNTER_VXLAN_TX, frame_len);
	/* NULL next hop: a FIB lookup on the outer header, so routed underlays work. */
	return bpf_redirect_neigh(cfg->uplink_ifindex, NULL, 0, 0);
}

/* to_gateway reports whether the frame at skb->data is addressed to the bridge. */
static __always_inline int to_gateway(struct __sk_buff *skb, const struct node_config *cfg)
{
	const struct eth *eth = (void *)(long)skb->data;

	if ((void *)(eth + 1) > (void *)(long)skb->data_end)
		return 0;
	return *(const __u32 *)eth->dst == *(const __u32 *)cfg->bridge_mac &&
	       *(const __u16 *)&eth->dst[4] == *(const __u16 *)&cfg->bridge_mac[4];
}

/*
 * pod_ingress sends a pod's packet for a remote pod to its node. At a pod's
 * veth (veth) it runs before the bridge: only frames routed through the
 * gateway are candidates (others are bridged to local pods), and netfilter
 * has not seen the packet yet (veth scrubs conntrack state), so whatever is
 * not plainly for a remote pod passes untouched to the bridge, where
 * weft_pod_ingress sees it after br_netfilter and decides with conntrack.
 */
static __always_inline int pod_ingress(struct __sk_buff *skb, const int veth)
{
	struct node_config *cfg = config();
	struct flow_key flow = {};
	struct lpm_key key = { .prefixlen = 32 };
	struct bpf_redir_neigh nh = { .nh_family = AF_INET };
	enum ct_nat nat = CT_NAT_NONE;
	struct peer *peer;
	struct ipv4 *ip;
	__be16 p[2];
	__u32 len;
	int l4;

	if (!cfg || skb->protocol != bpf_htons(ETH_P_IP) || ensure(skb, ETH_HLEN + IPV4_HLEN))
		return TC_ACT_OK;
	if (veth && !to_gateway(skb, cfg))
		return TC_ACT_OK;
	ip = (void *)(long)skb->data + ETH_HLEN;
	if ((void *)(ip + 1) > (void *)(long)skb->data_end)
		return TC_ACT_OK;
	/* IP options and fragments are rare: the kernel handles them. */
	if (ip->ver_ihl != 0x45 || is_fragment(ip))
		return TC_ACT_OK;
	l4 = has_ports(ip);
	if (l4) {
		if (ports(skb, ETH_HLEN, ip, p))
			return TC_ACT_OK;
		flow.pod_ip = ip->saddr;
		flow.peer_ip = ip->daddr;
		flow.pod_port = p[0];
		flow.peer_port = p[1];
		flow.proto = ip->protocol;
	}

	key.addr = ip->daddr;
	peer = bpf_map_lookup_elem(&weft_peers, &key);
	if (veth && !peer)
		return TC_ACT_OK; /* the bridge program remembers it, knowing conntrack's view */
	/* A remote pod, unless br_netfilter already DNATed a Service to it. */
	if (peer && !veth)
		nat = ct_nat(skb);
	if (!peer || nat != CT_NAT_NONE) {
		/* The host stack forwards it (Services, host, outside).
		 * Remember the pod socket so replies coming back over the
		 * overlay are not short-cut past conntrack's reverse NAT. A
		 * pod answering a NATed connection is not remembered: that
		 * peer reaches it at the NATed address, which the programs
		 * pass up, and its port may also serve plain pod traffic. */
		if (l4 && nat != CT_NAT_REPLY) {
			flow.peer_ip = 0;
			flow.peer_port = 0;
			remember(&flow);
		}
		return TC_ACT_OK;
	}
	/* Replies of flows the stack delivered into the pod go back the same way. */
	if (l4 && bpf_map_lookup_elem(&weft_stackflows, &flow))
		return TC_ACT_OK;
	if (ip->ttl <= 1)
		return TC_ACT_OK; /* the kernel sends time exceeded */
	len = skb->len;
	if (skb->gso_size == 0 && bpf_ntohs(ip->tot_len) + ETH_HLEN > len)
		return TC_ACT_OK; /* truncated: the kernel drops it */

	decrement_ttl(ip);
	if (peer->mode == MODE_HOST_GW) {
		nh.ipv4_nh = peer->node_ip;
		count(&weft_traffic, COUNTER_HOST_GW_TX, len);
		return bpf_redirect_neigh(cfg->uplink_ifindex, &nh, sizeof(nh), 0);
	}
	return encap_vxlan(skb, cfg, peer, len);
}

SEC("tc")
int weft_veth_ingress(struct __sk_buff *skb)
{
	return pod_ingress(skb, 1);
}

SEC("tc")
int weft_pod_ingress(struct __sk_buff *skb)
{
	return pod_ingress(skb, 0);
}

/* deliver hands a pod-bound IPv4 frame (Ethernet at offset 0) to the pod. */
static __always_inline int deliver(struct __sk_buff *skb, const struct node_config *cfg,
				   const struct endpoint *ep, __u32 counter)
{
	struct eth eth = { .proto = bpf_htons(ETH_P_IP) };

	__builtin_memcpy(eth.dst, ep->mac, ETH_ALEN);
	__builtin_memcpy(eth.src, cfg->bridge_mac, ETH_ALEN);
	if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0))
		return drop(skb, DROP_HEADER_REWRITE);
	count(&weft_traffic, counter, skb->len);
	return bpf_redirect_peer(ep->host_ifindex, 0);
}

/* through_stack reports whether a packet to a local pod belongs to a pod
 * socket whose traffic went out through the host stack (or cannot be told). */
static __always_inline int through_stack(struct __sk_buff *skb, __u32 off, const struct ipv4 *ip)
{
	struct flow_key k = {};
	__be16 p[2];

	if (!has_ports(ip))
		return 0;
	if (ports(skb, off, ip, p))
		return 1;
	k.pod_ip = ip->daddr;
	k.pod_port = p[1];
	k.proto = ip->protocol;
	return bpf_map_lookup_elem(&weft_stackflows, &k) != NULL;
}

static __always_inline int rx_vxlan(struct __sk_buff *skb, const struct node_config *cfg)
{
	const __u32 inner_off = sizeof(struct vxlan_encap);
	struct vxlan_encap *h;
	struct known_node *node;
	struct endpoint *found, ep;
	struct ipv4 *inner;
	__u32 outer_len;
	int fragment;

	if (ensure(skb, inner_off + IPV4_HLEN))
		return drop(skb, DROP_MALFORMED);
	h = (void *)(long)skb->data;
	inner = (void *)(h + 1);
	if ((void *)(inner + 1) > (void *)(long)skb->data_end)
		return drop(skb, DROP_MALFORMED);
	if (h->ip.ver_ihl != 0x45)
		return drop(skb, DROP_MALFORMED);
	outer_len = bpf_ntohs(h->ip.tot_len);
	fragment = h->ip.frag_off & bpf_htons(IPV4_MF);
	if (outer_len < VXLAN_ENCAP_LEN + IPV4_HLEN)
		return drop(skb, DROP_MALFORMED);
	if (!fragment && (bpf_ntohs(h->udp.len) != outer_len - IPV4_HLEN ||
			  (skb->gso_size == 0 && outer_len + ETH_HLEN > skb->len)))
		return drop(skb, DROP_MALFORMED);
	if (!(h->vxlan.flags & VXLAN_FLAG_VNI) || h->vxlan.vni != bpf_htonl(cfg->vni << 8))
		return drop(skb, DROP_BAD_VNI);
	node = bpf_map_lookup_elem(&weft_nodes, &h->ip.saddr);
	if (!node)
		return drop(skb, DROP_UNKNOWN_NODE);
	if (h->inner_eth.proto != bpf_htons(ETH_P_IP))
		return drop(skb, DROP_INNER_NOT_IPV4);
	if ((inner->ver_ihl & 0xf0) != 0x40 || (inner->ver_ihl & 0xf) < 5)
		return drop(skb, DROP_MALFORMED);
	if (!in_subnet(inner->saddr, node->subnet, node->prefixlen) && inner->saddr != h->ip.saddr)
		return drop(skb, DROP_SPOOFED_SOURCE);
	if (fragment)
		return TC_ACT_OK; /* validated first fragment: the kernel reassembles */
	if (skb->gso_size == 0 && bpf_ntohs(inner->tot_len) != outer_len - VXLAN_ENCAP_LEN)
		return drop(skb, DROP_MALFORMED);

	found = bpf_map_lookup_elem(&weft_endpoints, &inner->daddr);
	if (!found || is_fragment(inner) || through_stack(skb, inner_off, inner))
		return TC_ACT_OK; /* flannel.<VNI> decaps it */
	ep = *found;
	if (bpf_skb_adjust_room(skb, -(__s32)VXLAN_ENCAP_LEN, BPF_ADJ_ROOM_MAC,
				WEFT_ADJ_ROOM_DECAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO))
		return drop(skb, DROP_HEADER_REWRITE);
	return deliver(skb, cfg, &ep, COUNTER_VXLAN_RX);
}

static __always_inline int rx_host_gw(struct __sk_buff *skb, const struct node_config *cfg)
{
	struct lpm_key key = { .prefixlen = 32 };
	struct endpoint *found, ep;
	struct peer *peer;
	struct ipv4 *ip;

	ip = (void *)(long)skb->data + ETH_HLEN;
	if ((void *)(ip + 1) > (void *)(long)skb->data_end || is_fragment(ip))
		return TC_ACT_OK;
	found = bpf_map_lookup_elem(&weft_endpoints, &ip->daddr);
	if (!found)
		return TC_ACT_OK;
	key.addr = ip->saddr;
	peer = bpf_map_lookup_elem(&weft_peers, &key);
	if (!peer || peer->mode != MODE_HOST_GW)
		return TC_ACT_OK; /* not from a host-gw peer's pods: the kernel routes it */
	if (skb->gso_size == 0 && bpf_ntohs(ip->tot_len) + ETH_HLEN > skb->len)
		return drop(skb, DROP_MALFORMED);
	if (through_stack(skb, ETH_HLEN, ip))
		return TC_ACT_OK;
	ep = *found;
	return deliver(skb, cfg, &ep, COUNTER_HOST_GW_RX);
}

SEC("tc")
int weft_uplink_ingress(struct __sk_buff *skb)
{
	struct node_config *cfg = config();
	struct ipv4 *ip;
	__be16 dport;

	if (!cfg || skb->protocol != bpf_htons(ETH_P_IP) || ensure(skb, ETH_HLEN + IPV4_HLEN))
		return TC_ACT_OK;
	ip = (void *)(long)skb->data + ETH_HLEN;
	if ((void *)(ip + 1) > (void *)(long)skb->data_end)
		return TC_ACT_OK;
	if ((ip->ver_ihl & 0xf0) != 0x40 || (ip->ver_ihl & 0xf) < 5)
		return TC_ACT_OK; /* not IPv4: the kernel drops it */
	if (ip->protocol == IPPROTO_UDP && ip->daddr == cfg->node_ip &&
	    !(ip->frag_off & bpf_htons(IPV4_OFFSET_MASK)) &&
	    !bpf_skb_load_bytes(skb, ETH_HLEN + (ip->ver_ihl & 0xf) * 4 + 2, &dport, sizeof(dport)) &&
	    dport == bpf_htons(cfg->port))
		return rx_vxlan(skb, cfg);
	return rx_host_gw(skb, cfg);
}

SEC("tc")
int weft_pod_egress(struct __sk_buff *skb)
{
	struct flow_key k = {};
	struct ipv4 *ip;
	__be16 p[2];

	if (skb->protocol != bpf_htons(ETH_P_IP) || ensure(skb, ETH_HLEN + IPV4_HLEN))
		return TC_ACT_OK;
	ip = (void *)(long)skb->data + ETH_HLEN;
	if ((void *)(ip + 1) > (void *)(long)skb->data_end)
		return TC_ACT_OK;
	if (!has_ports(ip) || is_fragment(ip) || ports(skb, ETH_HLEN, ip, p))
		return TC_ACT_OK;
	k.pod_ip = ip->daddr;
	k.peer_ip = ip->saddr;
	k.pod_port = p[1];
	k.peer_port = p[0];
	k.proto = ip->protocol;
	remember(&k);
	return TC_ACT_OK;
}

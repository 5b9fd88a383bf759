// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * weft's tc programs: netfilter decides, eBPF forwards. New connections and
 * anything netfilter has not accepted take the kernel path (flannel.<VNI>
 * and routes, exactly as flannel programs them); a flow whose conntrack
 * entry is established and confirmed is carried in flannel's wire format
 * (VXLAN, udp or host-gw) without the host stack, NATed as its entry says
 * (conntrack.h, nat.h). See docs/datapath.md.
 *
 *   weft_veth_ingress   ingress of each pod's host veth: drops what the pod
 *                       may not send (pod.h), then pod -> remote pod on the
 *                       fast path (encap.h); passes anything else.
 *   weft_pod_ingress    bridge (cni0) ingress: the same fast path for pods
 *                       whose veth has no program yet.
 *   weft_uplink_ingress every other interface's ingress (uplink, lo, ...):
 *                       VXLAN or udp to a local address is validated
 *                       wherever it arrives; established flows (VXLAN or
 *                       udp, and host-gw on the uplink) are handed to the
 *                       pod's veth peer (decap.h).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "weft.h"
#include "packet.h"
#include "maps.h"
#include "parse.h"
#include "conntrack.h"
#include "encap.h"
#include "nat.h"
#include "decap.h"
#include "pod.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Puts the enums and the ring buffer's event into BTF so bpf2go -type can
 * mirror them in Go. */
struct btf_anchor {
	enum mode mode;
	enum counter counter;
	enum drop_reason drop_reason;
	struct flow flow;
};
const struct btf_anchor *unused_anchor __attribute__((unused));

/*
 * pod_ingress carries a pod's packet for a remote pod to its node when
 * netfilter has established its flow. At a pod's veth (veth) it runs before
 * the bridge: only frames routed through the gateway are candidates (others
 * are bridged to local pods).
 */
static __always_inline int pod_ingress(struct __sk_buff *skb, const int veth)
{
	struct node_config *cfg = config();
	struct lpm_key key = { .prefixlen = 32 };
	enum offload state;
	struct flow f = {};
	struct xlat x = {};
	struct peer *peer;
	struct ipv4 *ip;
	__u8 proto;

	if (veth && !pod_source_ok(skb))
		return drop(skb, DROP_POD_SOURCE);
	if (!cfg || skb->protocol != bpf_htons(ETH_P_IP) || ensure(skb, ETH_HLEN + IPV4_HLEN))
		return TC_ACT_OK;
	ip = ipv4_at(skb, ETH_HLEN);
	if (!ip)
		return TC_ACT_OK;
	if (to_tunnel(skb, cfg, ip))
		return drop(skb, DROP_POD_TO_TUNNEL);
	/* The Ethernet header in front of ip is readable: ipv4_at checked it. */
	if (veth && !mac_equal(((struct eth *)((void *)ip - ETH_HLEN))->dst, cfg->bridge_mac))
		return TC_ACT_OK;
	/* IP options and fragments are rare: the kernel handles them. */
	if (ip->ver_ihl != 0x45 || is_fragment(ip) || ip->ttl <= 1)
		return TC_ACT_OK;
	if (skb->gso_size == 0 && bpf_ntohs(ip->tot_len) + ETH_HLEN > skb->len)
		return TC_ACT_OK; /* truncated: the kernel drops it */
	proto = ip->protocol;
	state = offload_state(skb, ip, ETH_HLEN + IPV4_HLEN, cfg, &x, &f);
	if (state == OFFLOAD_NO)
		return TC_ACT_OK;
	/* A remote pod, after NAT: a Service's DNAT picks the destination. */
	key.addr = x.daddr;
	peer = bpf_map_lookup_elem(&weft_peers, &key);
	if (!peer)
		return TC_ACT_OK;
	if (state == OFFLOAD_ASK) {
		request_liberal(&f);
		return TC_ACT_OK;
	}
	if (x.nat && apply_xlat(skb, ETH_HLEN, ETH_HLEN + IPV4_HLEN, proto, &x))
		return drop(skb, DROP_HEADER_REWRITE);
	if (ensure(skb, ETH_HLEN + IPV4_HLEN) || !(ip = ipv4_at(skb, ETH_HLEN)))
		return drop(skb, DROP_HEADER_REWRITE);
	return transmit(skb, cfg, peer, ip);
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

/* local reports whether the kernel delivers ip locally (any local address,
 * not only the node IP) rather than forwarding it. On an interface with
 * forwarding off the lookup stops before the routes (FWD_DISABLED): the
 * kernel forwards nothing that arrives there, so it is local or dropped. */
static __always_inline int local(struct __sk_buff *skb, const struct node_config *cfg,
				 const struct ipv4 *ip)
{
	struct bpf_fib_lookup fib = {
		.family = AF_INET,
		.ifindex = skb->ingress_ifindex,
		.ipv4_src = ip->saddr,
		.ipv4_dst = ip->daddr,
	};
	int ret;

	if (ip->daddr == cfg->node_ip)
		return 1;
	ret = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	return ret == BPF_FIB_LKUP_RET_NOT_FWDED || ret == BPF_FIB_LKUP_RET_FWD_DISABLED;
}

SEC("tc")
int weft_uplink_ingress(struct __sk_buff *skb)
{
	struct node_config *cfg = config();
	struct ipv4 *ip;

	if (!cfg || skb->protocol != bpf_htons(ETH_P_IP) || ensure(skb, ETH_HLEN + IPV4_HLEN))
		return TC_ACT_OK;
	ip = ipv4_at(skb, ETH_HLEN);
	if (!ip || !ipv4_hlen(ip))
		return TC_ACT_OK; /* not IPv4: the kernel drops it */
	if (cfg->port && udp_dport(skb, ETH_HLEN, ip) == bpf_htons(cfg->port) && local(skb, cfg, ip))
		return cfg->mode == MODE_UDP ? rx_tunnel(skb, cfg, 0) : rx_tunnel(skb, cfg, 1);
	/* host-gw peers are on the uplink's segment: elsewhere (lo, other
	 * NICs) the program only validates the tunnel. */
	if (skb->ifindex != cfg->uplink_ifindex)
		return TC_ACT_OK;
	return rx_host_gw(skb, cfg, ip);
}

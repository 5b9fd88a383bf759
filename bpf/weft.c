// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * weft's tc programs: netfilter decides, eBPF forwards. New connections and
 * anything netfilter has not accepted take the kernel path (flannel.<VNI>,
 * flannel-v6.<VNI> and routes, exactly as flannel programs them); a flow
 * whose conntrack entry is established and confirmed is carried in
 * flannel's wire format (VXLAN over IPv4 or IPv6, udp, or host-gw) without
 * the host stack, NATed as its entry says (conntrack.h, nat.h). Every
 * function that handles an IP packet takes its family (v6) as a parameter;
 * inlined with a constant, each program holds one copy per family. See
 * docs/datapath.md.
 *
 *   weft_veth_ingress   ingress of each pod's host veth: drops what the pod
 *                       may not send (pod.h), then pod -> remote pod on the
 *                       fast path (encap.h); passes anything else, and all
 *                       of a pod weftd has not registered.
 *   weft_pod_ingress    bridge (cni0) ingress: the same fast path for
 *                       registered pods whose veth has no program yet.
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
	enum family family;
	struct flow flow;
};
const struct btf_anchor *unused_anchor __attribute__((unused));

/*
 * pod_ingress carries a pod's packet (family v6) for a remote pod to its
 * node when netfilter has established its flow. At a pod's veth (veth) it
 * runs before the bridge: only frames routed through the gateway are
 * candidates (others are bridged to local pods).
 */
static __always_inline int pod_ingress(struct __sk_buff *skb, struct node_config *cfg, const int veth,
				       const int v6)
{
	const struct family_config *fam = family_on(cfg, v6);
	struct lpm_key key = { .prefixlen = 128 };
	enum offload state;
	struct flow f = {};
	struct xlat x = {};
	struct peer *peer;
	struct eth *eth;
	struct l3 l3;

	if (!fam || parse_l3(skb, ETH_HLEN, v6, &l3))
		return TC_ACT_OK;
	if (to_tunnel(skb, cfg, fam, &l3))
		return drop(skb, v6, DROP_POD_TO_TUNNEL);
	if (ensure(skb, ETH_HLEN))
		return TC_ACT_OK;
	eth = (void *)(long)skb->data;
	if ((void *)(eth + 1) > (void *)(long)skb->data_end)
		return TC_ACT_OK;
	if (veth && !mac_equal(eth->dst, cfg->bridge_mac))
		return TC_ACT_OK;
	/* IP options, extension headers and fragments are rare: the kernel
	 * handles them. */
	if (!simple(&l3) || l3.ttl <= 1)
		return TC_ACT_OK;
	/* Truncated: the kernel drops it. IPv6: the outer checksum covers
	 * trailing bytes too, which the fast path does not sum. */
	if (skb->gso_size == 0 && (v6 ? l3.len + ETH_HLEN != skb->len : l3.len + ETH_HLEN > skb->len))
		return TC_ACT_OK;
	if (!known_source(skb, eth, &l3, veth))
		return TC_ACT_OK;
	state = offload_state(skb, &l3, v6, cfg, &x, &f);
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
	if (x.nat && apply_xlat(skb, ETH_HLEN, ETH_HLEN + IPV4_HLEN, l3.proto, &x))
		return drop(skb, v6, DROP_HEADER_REWRITE);
	return transmit(skb, cfg, fam, peer, v6);
}

/* pod_side runs pod_ingress for the frame's family. */
static __always_inline int pod_side(struct __sk_buff *skb, const int veth)
{
	struct node_config *cfg;

	if (veth && !pod_source_ok(skb))
		return drop(skb, skb->protocol == bpf_htons(ETH_P_IPV6), DROP_POD_SOURCE);
	cfg = config();
	if (!cfg)
		return TC_ACT_OK;
	if (skb->protocol == bpf_htons(ETH_P_IP))
		return pod_ingress(skb, cfg, veth, 0);
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return pod_ingress(skb, cfg, veth, 1);
	return TC_ACT_OK;
}

SEC("tc")
int weft_veth_ingress(struct __sk_buff *skb)
{
	return pod_side(skb, 1);
}

SEC("tc")
int weft_pod_ingress(struct __sk_buff *skb)
{
	return pod_side(skb, 0);
}

/* local reports whether the kernel delivers the packet l3 (family v6)
 * locally (any local address, not only the node IP) rather than forwarding
 * it. On an interface with forwarding off the lookup stops before the
 * routes (FWD_DISABLED): the kernel forwards nothing that arrives there, so
 * it is local or dropped. */
static __always_inline int local(struct __sk_buff *skb, const struct family_config *fam,
				 const struct l3 *l3, const int v6)
{
	struct bpf_fib_lookup fib = {
		.family = v6 ? AF_INET6 : AF_INET,
		.ifindex = skb->ingress_ifindex,
	};
	int ret;

	if (addr_equal(&l3->daddr, &fam->node_ip))
		return 1;
	if (v6) {
		__builtin_memcpy(fib.ipv6_src, l3->saddr.w, 16);
		__builtin_memcpy(fib.ipv6_dst, l3->daddr.w, 16);
	} else {
		fib.ipv4_src = l3->saddr.w[3];
		fib.ipv4_dst = l3->daddr.w[3];
	}
	ret = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	return ret == BPF_FIB_LKUP_RET_NOT_FWDED || ret == BPF_FIB_LKUP_RET_FWD_DISABLED;
}

/* uplink validates tunnel traffic of family v6 to a local address and
 * delivers established flows from remote pods. */
static __always_inline int uplink(struct __sk_buff *skb, const struct node_config *cfg, const int v6)
{
	const struct family_config *fam = family_on(cfg, v6);
	/* flannel's udp has no IPv6: over IPv6 only VXLAN is a tunnel. */
	const int tunnel = cfg->port && !(v6 && cfg->mode == MODE_UDP);
	struct l3 l3;
	int ret;

	if (!fam)
		return TC_ACT_OK; /* not of an enabled family: the kernel decides */
	ret = parse_l3(skb, ETH_HLEN, v6, &l3);
	if (ret == PARSE_MAPPED)
		return drop(skb, v6, DROP_MALFORMED);
	if (ret)
		return TC_ACT_OK;
	if (tunnel && !l3.l4off && !l3.fragment && local(skb, fam, &l3, v6))
		return drop(skb, v6, DROP_MALFORMED); /* opaque: could hide a tunnel */
	if (tunnel && udp_dport(skb, &l3) == bpf_htons(cfg->port) && local(skb, fam, &l3, v6))
		return cfg->mode == MODE_UDP ? rx_tunnel(skb, cfg, &l3, 0, v6) : rx_tunnel(skb, cfg, &l3, 1, v6);
	/* host-gw peers are on the uplink's segment: elsewhere (lo, other
	 * NICs) the program only validates the tunnel. */
	if (skb->ifindex != cfg->uplink_ifindex)
		return TC_ACT_OK;
	return rx_host_gw(skb, cfg, &l3, v6);
}

SEC("tc")
int weft_uplink_ingress(struct __sk_buff *skb)
{
	struct node_config *cfg = config();

	if (!cfg)
		return TC_ACT_OK;
	if (skb->protocol == bpf_htons(ETH_P_IP))
		return uplink(skb, cfg, 0);
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return uplink(skb, cfg, 1);
	return TC_ACT_OK;
}

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Wire headers as the programs read and write them. Own definitions (no
 * bitfields) so the layout does not depend on the build host's asm headers.
 */
#ifndef WEFT_PACKET_H
#define WEFT_PACKET_H

#include <linux/types.h>

#include "weft.h"

#define ETH_ALEN 6
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPV4_HLEN 20
#define IPV6_HLEN 40
#define UDP_HLEN 8
#define VXLAN_HLEN 8
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ICMPV6 58
/* IPv6 extension headers the programs walk (RFC 8200 4). */
#define IPPROTO_HOPOPTS 0
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_DSTOPTS 60
#define IPV6_FRAG_OFFSET_MASK 0xfff8
#define IPV6_FRAG_MF 0x0001
#define IPV4_MF 0x2000
#define IPV4_DF 0x4000
#define IPV4_OFFSET_MASK 0x1fff
#define VXLAN_FLAG_VNI 0x08

/* Bytes VXLAN adds in front of the pod's packet (Ethernet stays) after its
 * outer IP header, and in all over IPv4 or IPv6 (v6). */
#define VXLAN_TUNNEL_LEN (UDP_HLEN + VXLAN_HLEN + ETH_HLEN)
#define IP_HLEN(v6) ((v6) ? IPV6_HLEN : IPV4_HLEN)
#define VXLAN_ENCAP_LEN(v6) (IP_HLEN(v6) + VXLAN_TUNNEL_LEN)
/* Bytes flannel's udp backend adds: outer IPv4 and UDP, no header of its own. */
#define UDP_ENCAP_LEN (IPV4_HLEN + UDP_HLEN)

struct eth {
	__u8 dst[ETH_ALEN];
	__u8 src[ETH_ALEN];
	__be16 proto;
} __attribute__((packed));

struct ipv4 {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__sum16 check;
	__be32 saddr;
	__be32 daddr;
};

struct ipv6 {
	__be32 ver_tc_flow; /* version, traffic class, flow label */
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	union addr saddr;
	union addr daddr;
};

struct udp {
	__be16 source;
	__be16 dest;
	__be16 len;
	__sum16 check;
};

struct vxlan {
	__u8 flags;
	__u8 reserved1[3];
	__be32 vni; /* VNI << 8 */
};

/* What VXLAN puts in front of the pod's IP header after the outer IP
 * header; flannel's udp puts only the udp header. */
struct vxlan_tunnel {
	struct udp udp;
	struct vxlan vxlan;
	struct eth inner_eth;
} __attribute__((packed));

/* What VXLAN puts in front of the pod's IP header, outer Ethernet first, over
 * IPv4 (ip4) or IPv6 (ip6); flannel's udp the same up to the udp header. */
struct vxlan_encap {
	struct eth outer_eth;
	union {
		struct {
			struct ipv4 ip4;
			struct vxlan_tunnel t4;
		} __attribute__((packed));
		struct {
			struct ipv6 ip6;
			struct vxlan_tunnel t6;
		} __attribute__((packed));
	};
} __attribute__((packed));

#endif /* WEFT_PACKET_H */

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Wire headers as the programs read and write them. Own definitions (no
 * bitfields) so the layout does not depend on the build host's asm headers.
 */
#ifndef WEFT_PACKET_H
#define WEFT_PACKET_H

#include <linux/types.h>

#define ETH_ALEN 6
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define IPV4_HLEN 20
#define UDP_HLEN 8
#define VXLAN_HLEN 8
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPV4_MF 0x2000
#define IPV4_DF 0x4000
#define IPV4_OFFSET_MASK 0x1fff
#define VXLAN_FLAG_VNI 0x08

/* Bytes VXLAN adds in front of the pod's IPv4 packet (Ethernet stays). */
#define VXLAN_ENCAP_LEN (IPV4_HLEN + UDP_HLEN + VXLAN_HLEN + ETH_HLEN)
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

/* What VXLAN puts in front of the pod's IPv4 header, outer Ethernet first.
 * flannel's udp puts the same up to udp (ETH_HLEN + UDP_ENCAP_LEN bytes). */
struct vxlan_encap {
	struct eth outer_eth;
	struct ipv4 ip;
	struct udp udp;
	struct vxlan vxlan;
	struct eth inner_eth;
} __attribute__((packed));

#endif /* WEFT_PACKET_H */

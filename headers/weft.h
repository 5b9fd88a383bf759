/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Definitions shared by weft's tc programs (bpf/) and the Go loader
 * (pkg/datapath/ebpf, which gets Go mirrors of them from bpf2go -type).
 * Addresses are union addr: 16 bytes in network byte order, IPv6 as is and
 * IPv4 mapped (::ffff:a.b.c.d, RFC 4291 2.5.5.2), so that one map serves
 * both families.
 */
#ifndef WEFT_H
#define WEFT_H

#include <linux/types.h>

/* How traffic to a remote subnet is carried. */
enum mode {
	MODE_VXLAN = 1,
	MODE_HOST_GW = 2,
	MODE_UDP = 3, /* flannel's udp: the pod's IPv4 packet is the UDP payload */
};

/* An IP family: the second index of the counters maps and of per-family
 * settings. */
enum family {
	FAMILY_IPV4,
	FAMILY_IPV6,
	FAMILY_MAX,
};

/* Index into the traffic counters map: backend x direction, plus
 * FAMILY_IPV6 * COUNTER_SLOTS for IPv6 traffic. */
enum counter {
	COUNTER_VXLAN_TX,
	COUNTER_VXLAN_RX,
	COUNTER_HOST_GW_TX,
	COUNTER_HOST_GW_RX,
	COUNTER_UDP_TX,
	COUNTER_UDP_RX,
	/* IPv6 GSO packets handed to flannel-v6.<VNI> (also in VXLAN_TX), in
	 * the device's measure (inner IP bytes): its tx counters count them
	 * too, so weftd subtracts them from the kernel path's. */
	COUNTER_VXLAN_DEVICE_TX,
	COUNTER_MAX,
	/* Indexes reserved per family block: a new counter changes no map
	 * definition, so an upgrade keeps the pinned map. */
	COUNTER_SLOTS = 32,
};

_Static_assert(COUNTER_MAX <= COUNTER_SLOTS, "counters overflow their family block: raise COUNTER_SLOTS "
	       "and add the old layout to pkg/datapath/ebpf's counterLayouts");

/* Index into the drop counters map, plus FAMILY_IPV6 * DROP_SLOTS for IPv6
 * packets. New reasons go at the end: the index of a reason never changes. */
enum drop_reason {
	DROP_UNKNOWN_NODE,    /* VXLAN or udp from a source that is no known node */
	DROP_SPOOFED_SOURCE,  /* inner source outside the sending node's subnets */
	DROP_BAD_VNI,         /* VXLAN with another VNI, or without the I flag */
	DROP_MALFORMED,       /* truncated, inconsistent lengths, IP options */
	DROP_INNER_NOT_IPV4,  /* VXLAN carrying another family than its underlay's */
	DROP_HEADER_REWRITE,  /* the kernel refused to add, remove or write headers */
	DROP_POD_SOURCE,      /* a pod sent with a source IP or MAC not its own,
			       * or a router's ICMPv6 (advertisement, redirect) */
	DROP_POD_TO_TUNNEL,   /* a pod sent UDP to a node's tunnel port */
	DROP_MAX,
	/* Indexes reserved per family block (see COUNTER_SLOTS). */
	DROP_SLOTS = 32,
};

_Static_assert(DROP_MAX <= DROP_SLOTS, "drop reasons overflow their family block: raise DROP_SLOTS "
	       "and add the old layout to pkg/datapath/ebpf's counterLayouts");

/* An IPv6 address, or an IPv4 address mapped into IPv6; all zero: none. */
union addr {
	__u8 b[16];
	__be32 w[4];
};

/* Key of the remote subnets LPM trie: an IPv4 prefix is mapped, its length
 * 96 + the IPv4 length. */
struct lpm_key {
	__u32 prefixlen;
	union addr addr;
};

/* A remote node's pod subnet (of either family). */
struct peer {
	union addr node_ip;   /* where traffic for the subnet goes (the lease's PublicIP or PublicIPv6) */
	union addr tunnel_ip; /* the address its VXLAN comes from; zero = node_ip */
	__u8 vtep_mac[6];     /* of its flannel.<VNI> or flannel-v6.<VNI> */
	__u8 mode; /* enum mode */
	__u8 pad;
};

/* This node in one family. A family whose node_ip is zero is off. */
struct family_config {
	union addr node_ip;
	union addr subnet;  /* this node's pod subnet, zero until leased */
	union addr network; /* the cluster's pod network */
	__u32 subnet_len;   /* prefix lengths of the family (24, not 120) */
	__u32 network_len;
	/* The family's kernel vxlan device, flannel.<VNI> or flannel-v6.<VNI>
	 * (vxlan; 0: none): IPv6 GSO packets are encapsulated by it. */
	__u32 vxlan_ifindex;
	__u8 vtep_mac[6]; /* flannel.<VNI>'s or flannel-v6.<VNI>'s (vxlan) */
	__u16 pad;
};

/* This node; the single entry of the config array. No family on = not ready. */
struct node_config {
	struct family_config family[FAMILY_MAX];
	__u32 vni;
	__u16 port; /* tunnel UDP port (VXLAN's or udp's), host byte order */
	__u8 bridge_mac[6];
	__u8 mode; /* MODE_UDP: port is flannel's udp port; else VXLAN's */
	__u8 pad[3];
	__u32 uplink_ifindex;
	__u32 bridge_ifindex;
	/* A flow whose conntrack entry expires within this many jiffies
	 * takes the stack, which refreshes the entry. */
	__u32 ct_refresh_jiffies;
};

/* A local pod address (key: union addr): where to deliver traffic for it. */
struct endpoint {
	__u32 host_ifindex; /* host side of the pod's veth */
	__u8 mac[6];        /* the pod's MAC */
	__u16 pad;
};

/* The pod behind a host veth (key: the veth's ifindex): the only source
 * addresses its frames may carry, one per family (zero: none). */
struct pod {
	union addr ip[FAMILY_MAX];
	__u8 mac[6];
	__u16 pad;
};

/* A known node address (key: union addr): a lease's PublicIP, PublicIPv6
 * or tunnel source. */
struct known_node {
	__u32 leases; /* how many leases name the address */
};

/* Per-CPU packet and byte counts. */
struct traffic {
	__u64 packets;
	__u64 bytes;
};

/*
 * A flow the programs would carry on the fast path once conntrack tracks it
 * liberally (ring buffer event to weftd; either direction's tuple; IPv4
 * addresses mapped).
 */
struct flow {
	union addr saddr;
	union addr daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

#endif /* WEFT_H */

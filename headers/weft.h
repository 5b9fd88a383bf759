/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Definitions shared by weft's tc programs (bpf/) and the Go loader
 * (pkg/datapath/ebpf, which gets Go mirrors of them from bpf2go -type).
 * Addresses (__be32) are in network byte order; bpf2go turns them into
 * uint32 holding the network-order bytes.
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

/* Index into the traffic counters map: backend x direction. */
enum counter {
	COUNTER_VXLAN_TX,
	COUNTER_VXLAN_RX,
	COUNTER_HOST_GW_TX,
	COUNTER_HOST_GW_RX,
	COUNTER_UDP_TX,
	COUNTER_UDP_RX,
	COUNTER_MAX,
};

/* Index into the drop counters map. New reasons go at the end: the index of
 * a reason never changes, so counters survive an upgrade. */
enum drop_reason {
	DROP_UNKNOWN_NODE,    /* VXLAN or udp from a source that is no known node */
	DROP_SPOOFED_SOURCE,  /* inner source outside the sending node's subnets */
	DROP_BAD_VNI,         /* VXLAN with another VNI, or without the I flag */
	DROP_MALFORMED,       /* truncated, inconsistent lengths, IP options */
	DROP_INNER_NOT_IPV4,  /* VXLAN carrying something other than IPv4 */
	DROP_HEADER_REWRITE,  /* the kernel refused to add, remove or write headers */
	DROP_POD_SOURCE,      /* a pod sent with a source IP or MAC not its own */
	DROP_POD_TO_TUNNEL,   /* a pod sent UDP to a node's tunnel port */
	DROP_MAX,
};

/* Key of the remote subnets LPM trie. */
struct lpm_key {
	__u32 prefixlen;
	__be32 addr;
};

/* A remote node's pod subnet. */
struct peer {
	__be32 node_ip;   /* where traffic for the subnet goes (the lease's PublicIP) */
	__be32 tunnel_ip; /* the address its VXLAN comes from; 0 = node_ip */
	__u8 vtep_mac[6];
	__u8 mode; /* enum mode */
	__u8 pad;
};

/* This node; the single entry of the config array. node_ip 0 = not ready. */
struct node_config {
	__be32 subnet;
	__u32 subnet_len;
	__be32 network;
	__u32 network_len;
	__be32 node_ip;
	__u32 vni;
	__u16 port; /* tunnel UDP port (VXLAN's or udp's), host byte order */
	__u8 vtep_mac[6];
	__u8 bridge_mac[6];
	__u8 mode; /* MODE_UDP: port is flannel's udp port; else VXLAN's */
	__u8 pad;
	__u32 uplink_ifindex;
	__u32 bridge_ifindex;
	/* A flow whose conntrack entry expires within this many jiffies
	 * takes the stack, which refreshes the entry. */
	__u32 ct_refresh_jiffies;
};

/* A local pod: where to deliver traffic for its IP. */
struct endpoint {
	__u32 host_ifindex; /* host side of the pod's veth */
	__u8 mac[6];        /* the pod's MAC */
	__u16 pad;
};

/* The pod behind a host veth (key: the veth's ifindex): the only source
 * addresses its frames may carry. */
struct pod {
	__be32 ip;
	__u8 mac[6];
	__u16 pad;
};

/* A known node address (key): a lease's PublicIP or tunnel source, or one of
 * this node's own. */
struct known_node {
	__u32 leases; /* how many leases name the address; 0 = this node's own */
};

/* Per-CPU packet and byte counts. */
struct traffic {
	__u64 packets;
	__u64 bytes;
};

/*
 * A flow the programs would carry on the fast path once conntrack tracks it
 * liberally (ring buffer event to weftd; either direction's tuple).
 */
struct flow {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

#endif /* WEFT_H */

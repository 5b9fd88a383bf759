/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * uapi constants newer than Debian 12's linux-libc-dev (6.1 headers).
 * Values are the kernel's (include/uapi/linux/bpf.h, Linux >= 6.3).
 */
#ifndef WEFT_UAPI_COMPAT_H
#define WEFT_UAPI_COMPAT_H

/* bpf_skb_adjust_room: clear the tunnel state of a decapsulated IPv4 skb. */
#define WEFT_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
/* The same for a decapsulated IPv6 skb. */
#define WEFT_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)

#endif /* WEFT_UAPI_COMPAT_H */

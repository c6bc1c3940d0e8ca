/* lib/parse.h: one frame into a struct ct_pkt: Ethernet, VLAN tags, PPPoE, MPLS, IPv4, IPv6
 * and its extension headers, TCP/UDP, and the packet an ICMP error quotes; the flow key, with
 * both directions sorted into one (ct_endpoint_after). Reads packet bytes only, every access
 * bounds-checked against data_end. */
#ifndef CT_LIB_PARSE_H
#define CT_LIB_PARSE_H

#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/udp.h>

#include "common.h"
#include "tcpopts.h"

#define ETH_P_8021AD_ 0x88A8
#define ETH_P_PPPOE_SES_ 0x8864   /* PPPoE session stage (RFC 2516) */
#define ETH_P_MPLS_UC_ 0x8847     /* MPLS unicast (RFC 3032) */
#define ETH_P_MPLS_MC_ 0x8848     /* MPLS multicast */
#define PPP_IP_ 0x0021
#define PPP_IPV6_ 0x0057

/* Flag combinations a TCP may send, after PSH/ECE/CWR are masked off: SYN, SYN|URG, SYN|ACK, RST,
 * RST|ACK, FIN|ACK, FIN|ACK|URG, ACK, ACK|URG. Everything else (SYN+FIN, SYN+RST, FIN alone,
 * no flags: the scanners' favourites) is INVALID. Indexed by flags & 0x37. */
#define TCP_VALID_FLAGS ((1ULL << 0x02) | (1ULL << 0x22) | (1ULL << 0x12) | (1ULL << 0x04) | \
			 (1ULL << 0x14) | (1ULL << 0x11) | (1ULL << 0x31) | (1ULL << 0x10) | \
			 (1ULL << 0x30))

/* Orders the two endpoints so that both directions build the same key. Any total order works;
 * comparing raw words is the cheapest. Returns 1 when (a, pa) sorts after (b, pb). */
static __always_inline int ct_endpoint_after(union ct_addr *a, __u16 pa, union ct_addr *b, __u16 pb)
{
	if (a->v6w[0] != b->v6w[0]) return a->v6w[0] > b->v6w[0];
	if (a->v6w[1] != b->v6w[1]) return a->v6w[1] > b->v6w[1];
	if (a->v6w[2] != b->v6w[2]) return a->v6w[2] > b->v6w[2];
	if (a->v6w[3] != b->v6w[3]) return a->v6w[3] > b->v6w[3];
	return pa > pb;
}


/* Parses one frame. Returns CT_CLASS_UNTRACKED (pass, no flow), CT_CLASS_INVALID with *reason
 * set, or CT_CLASS_NEW meaning "a TCP/UDP packet to look up" (the caller decides the class).
 * pkt_len is the packet's full length, which in TC may exceed the linear data (GSO). */
/* IPv6 extension headers the parser walks (for packets and for the packets ICMPv6 errors
 * quote), and the length of one from its first bytes h (8 of them readable). */
static __always_inline int ct_ip6_ext(__u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS ||
	       nh == IPPROTO_FRAGMENT || nh == IPPROTO_AH;
}

static __always_inline __u32 ct_ip6_ext_len(__u8 nh, __u8 *h)
{
	if (nh == IPPROTO_FRAGMENT)
		return 8;
	if (nh == IPPROTO_AH)
		return ((__u32)h[1] + 2) * 4;   /* AH counts 4-byte words, less 2 */
	return ((__u32)h[1] + 1) * 8;       /* the others count 8-byte units, less 1 */
}

/* Copies the 8 bytes at off into buf, bounds checked as a number (see ct_parse_ts): for the
 * reads of a walk whose offset the verifier cannot follow (laundered through map memory).
 * Returns non-zero when they are not all in the frame. */
static __always_inline int ct_read8(__u8 *buf, void *data, void *data_end, __u32 off)
{
	__u32 avail = (__u32)((long)data_end - (long)data);
	if (off > 0xffff || off + 8 > avail)
		return 1;
	return bpf_probe_read_kernel(buf, 8, data + off) != 0;
}

static __always_inline int ct_parse(void *data, void *data_end, __u32 pkt_len, struct ct_pkt *p,
				    __u8 *reason)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end) {
		*reason = CT_REASON_L2_TRUNCATED;
		return CT_CLASS_INVALID;
	}
	__u16 proto = eth->h_proto;
	__u32 off = sizeof(*eth);

	/* Untagged IPv4 and IPv6, the most frames by far, go straight to IP; the rest is unwrapped
	 * here first (measured with bench/fastpath_parts.py: the parse stage 55 -> 45 ns). */
	if (proto != htons(ETH_P_IP) && proto != htons(ETH_P_IPV6)) {
		/* Up to CT_MAX_VLAN_TAGS tags are followed to IP; a few more are looked through only to
		 * learn what is inside: IP that deep is INVALID, anything else is not ours and passes
		 * untouched, however many tags wrap it. */
		__u32 tags = 0;
#pragma unroll
		for (int i = 0; i < CT_MAX_VLAN_TAGS + CT_MAX_VLAN_PEEK; i++) {
			if (proto != htons(ETH_P_8021Q) && proto != htons(ETH_P_8021AD_))
				break;
			if (data + off + 4 > data_end) {
				*reason = CT_REASON_L2_TRUNCATED;
				return CT_CLASS_INVALID;
			}
			proto = *(__be16 *)(data + off + 2);
			off += 4;
			tags++;
		}
		if (proto == htons(ETH_P_8021Q) || proto == htons(ETH_P_8021AD_) ||
		    (tags > CT_MAX_VLAN_TAGS && (proto == htons(ETH_P_IP) || proto == htons(ETH_P_IPV6)))) {
			*reason = CT_REASON_L2_TOO_MANY_TAGS;
			return CT_CLASS_INVALID;
		}

		/* Where L3 starts depends on the tags, PPPoE and labels before it: the offset goes through
		 * map memory (here and after PPPoE and MPLS) and is used through pointers of their own, so
		 * the verifier follows what comes after once for any offset, not once per encapsulation. */
		p->l3off = off;
		off = *(volatile __u16 *)&p->l3off;
		if (off > 64) {
			*reason = CT_REASON_L2_TOO_MANY_TAGS;   /* cannot happen: the tag loop bounds it */
			return CT_CLASS_INVALID;
		}
		if (proto == htons(ETH_P_PPPOE_SES_)) {
			/* A PPPoE session frame (provider access links): version/type 0x11, code 0, the
			 * session id, a length, then PPP's 2-byte protocol. IPv4 and IPv6 inside are ours;
			 * PPP's own control (LCP, IPCP, ...) and anything not session data are not. */
			__u8 *h = data + off;
			if ((void *)(h + 8) > data_end) {
				*reason = CT_REASON_L2_TRUNCATED;
				return CT_CLASS_INVALID;
			}
			__u16 ppp = ((__u16)h[6] << 8) | h[7];
			if (h[0] != 0x11 || h[1] != 0 || (ppp != PPP_IP_ && ppp != PPP_IPV6_))
				return CT_CLASS_UNTRACKED;
			if ((((__u16)h[4] << 8) | h[5]) < 2) {   /* its length must cover the protocol */
				*reason = CT_REASON_L2_TRUNCATED;
				return CT_CLASS_INVALID;
			}
			proto = ppp == PPP_IP_ ? htons(ETH_P_IP) : htons(ETH_P_IPV6);
			off += 8;
		} else if (proto == htons(ETH_P_MPLS_UC_) || proto == htons(ETH_P_MPLS_MC_)) {
			/* An MPLS label stack (provider-edge links): 4 bytes a label, the last with the
			 * bottom-of-stack bit. What follows has no type field; IPv4 and IPv6 are told by
			 * their version nibble (what routers do), anything else (a pseudowire's Ethernet
			 * behind its control word, ...) is not ours. At most CT_MAX_MPLS_LABELS labels are
			 * followed, as VLAN tags are counted: a deeper stack is INVALID. */
			int bottom = 0;
			__u8 *h = data + off;
#pragma unroll
			for (int i = 0; i < CT_MAX_MPLS_LABELS; i++) {
				if ((void *)(h + 4) > data_end) {
					*reason = CT_REASON_L2_TRUNCATED;
					return CT_CLASS_INVALID;
				}
				bottom = h[2] & 1;
				h += 4;
				off += 4;
				if (bottom)
					break;
			}
			if (!bottom) {
				*reason = CT_REASON_L2_TOO_MANY_TAGS;
				return CT_CLASS_INVALID;
			}
			if ((void *)(h + 1) > data_end) {
				*reason = CT_REASON_L2_TRUNCATED;
				return CT_CLASS_INVALID;
			}
			__u8 v = h[0] >> 4;
			if (v == 4)
				proto = htons(ETH_P_IP);
			else if (v == 6)
				proto = htons(ETH_P_IPV6);
			else
				return CT_CLASS_UNTRACKED;
		}
		p->l3off = off;
		off = *(volatile __u16 *)&p->l3off;
		if (off > 128) {
			*reason = CT_REASON_L2_TOO_MANY_TAGS;   /* cannot happen: the loops above bound it */
			return CT_CLASS_INVALID;
		}

	}
	/* memset, not "= {}": an initialiser zeroes only a union's first member, and the rest of
	 * an IPv4 key's address would be stack garbage, different for every packet. */
	union ct_addr src, dst;
	__builtin_memset(&src, 0, sizeof(src));
	__builtin_memset(&dst, 0, sizeof(dst));
	__u32 l4off, l4len;
	__u8 l4proto;
	__u8 first_fragment = 0;   /* more fragments follow: L4 lengths cover more than we have */
	__u8 related = 0;          /* an ICMP error: the key is that of the packet it quotes */
	__u8 bad_flags = 0;        /* TCP flags no TCP sends: INVALID once the key is known */

	if (proto == htons(ETH_P_IP)) {
		struct iphdr *iph = data + off;
		if ((void *)(iph + 1) > data_end) {
			*reason = CT_REASON_IP_TRUNCATED;
			return CT_CLASS_INVALID;
		}
		if (iph->version != 4) {
			*reason = CT_REASON_IP_BAD_VERSION;
			return CT_CLASS_INVALID;
		}
		__u32 ihl = iph->ihl * 4;
		if (ihl < sizeof(*iph)) {
			*reason = CT_REASON_IP_BAD_IHL;
			return CT_CLASS_INVALID;
		}
		__u32 tot = ntohs(iph->tot_len);
		/* BIG TCP GSO packets over 64 KiB carry tot_len 0; their length is the packet's. */
		if (tot == 0 && pkt_len > off + 65535)
			tot = pkt_len - off;
		if (tot < ihl) {
			*reason = CT_REASON_IP_BAD_LENGTH;
			return CT_CLASS_INVALID;
		}
		if (off + tot > pkt_len || data + off + ihl > data_end) {
			*reason = CT_REASON_IP_TRUNCATED;
			return CT_CLASS_INVALID;
		}
		/* Fragments: no reassembly. A first fragment carries the L4 header and is tracked by it
		 * (a first fragment too short for that header is INVALID: RFC 1858's tiny fragments);
		 * later fragments have no ports, so they pass untracked and are counted. */
		if (ntohs(iph->frag_off) & 0x1fff) {
			stat_inc(CT_STAT_FRAGMENTS);
			return CT_CLASS_UNTRACKED;
		}
		first_fragment = (ntohs(iph->frag_off) & 0x2000) != 0;
		src.v4 = iph->saddr;
		dst.v4 = iph->daddr;
		l4proto = iph->protocol;
		l4off = off + ihl;
		l4len = tot - ihl;
		p->key.family = 4;
		p->ip_len = tot;
	} else if (proto == htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;
		if ((void *)(ip6 + 1) > data_end) {
			*reason = CT_REASON_IP_TRUNCATED;
			return CT_CLASS_INVALID;
		}
		if (ip6->version != 6) {
			*reason = CT_REASON_IP_BAD_VERSION;
			return CT_CLASS_INVALID;
		}
		__u32 tot = sizeof(*ip6) + ntohs(ip6->payload_len);
		if (tot == sizeof(*ip6) && pkt_len > off + 65535 + sizeof(*ip6))
			tot = pkt_len - off;   /* jumbogram / BIG TCP */
		if (off + tot > pkt_len) {
			*reason = CT_REASON_IP_TRUNCATED;
			return CT_CLASS_INVALID;
		}
		__builtin_memcpy(src.v6, &ip6->saddr, 16);
		__builtin_memcpy(dst.v6, &ip6->daddr, 16);
		__u8 nh = ip6->nexthdr;
		__u32 hoff = sizeof(*ip6);   /* offset from the IPv6 header */
		int done = 0;
#pragma unroll
		for (int i = 0; i < CT_MAX_IP6_EXT; i++) {
			if (!ct_ip6_ext(nh)) {
				done = 1;
				break;
			}
			if (hoff > 512 || hoff + 8 > tot) {
				*reason = CT_REASON_IP6_EXT_TRUNCATED;
				return CT_CLASS_INVALID;
			}
			__u8 *h = data + off + hoff;
			if ((void *)(h + 8) > data_end) {
				*reason = CT_REASON_IP6_EXT_TRUNCATED;
				return CT_CLASS_INVALID;
			}
			if (nh == IPPROTO_FRAGMENT) {
				/* Same policy as IPv4: later fragments pass untracked. */
				if (((h[2] << 8) | h[3]) & 0xfff8) {
					stat_inc(CT_STAT_FRAGMENTS);
					return CT_CLASS_UNTRACKED;
				}
				first_fragment = h[3] & 1;
			}
			hoff += ct_ip6_ext_len(nh, h);
			nh = h[0];
			/* Through map memory, as l3off above: the three length rules leave three ranges
			 * of hoff, the verifier would follow each through the next header and on to
			 * the end of the program (3^6 walks). Read back, it is one number under the
			 * check above: this halved the whole program's verification (624k -> 318k
			 * instructions for the parser and the fast path of ct_xdp). */
			p->walkoff = hoff;
			hoff = *(volatile __u16 *)&p->walkoff;
		}
		if (!done && ct_ip6_ext(nh)) {
			*reason = CT_REASON_IP6_EXT_LIMIT;
			return CT_CLASS_INVALID;
		}
		if (hoff > tot) {
			*reason = CT_REASON_IP6_EXT_TRUNCATED;
			return CT_CLASS_INVALID;
		}
		l4proto = nh;
		l4off = off + hoff;
		l4len = tot - hoff;
		p->key.family = 6;
		p->ip_len = tot;
	} else {
		return CT_CLASS_UNTRACKED;   /* ARP, LLDP, ...: not ours, untouched */
	}

	__u16 sport, dport;
	if (l4off > 1024) {   /* keeps the verifier's view of the offset bounded */
		*reason = CT_REASON_L4_TRUNCATED;
		return CT_CLASS_INVALID;
	}
	if (l4proto == IPPROTO_TCP) {
		struct tcphdr *th = data + l4off;
		if (l4len < sizeof(*th) || (void *)(th + 1) > data_end) {
			*reason = CT_REASON_L4_TRUNCATED;
			return CT_CLASS_INVALID;
		}
		__u32 doff = th->doff * 4;
		if (doff < sizeof(*th) || doff > l4len) {
			*reason = CT_REASON_TCP_BAD_DOFF;
			return CT_CLASS_INVALID;
		}
		__u8 flags = ((__u8 *)th)[13];
		/* A flag combination no TCP sends is INVALID, but its flow's Zeek history records it
		 * (I, Q): the key is parsed on, and the caller looks the flow up for that alone. */
		bad_flags = !((TCP_VALID_FLAGS >> (flags & 0x37)) & 1);
		p->tcp_flags = flags;
		p->seq = ntohl(th->seq);
		p->ack = ntohl(th->ack_seq);
		p->win = ntohs(th->window);
		p->datalen = l4len - doff;
		p->fragmented = first_fragment;
		sport = th->source;
		dport = th->dest;
		/* Options are walked in SYNs only (MSS, scale, SACK, timestamps, the summary); other
		 * segments are only looked at for their timestamps (passive RTT), cheaply. */
		if ((flags & TH_SYN) && doff > sizeof(*th) && !bad_flags) {
			void *opt = (void *)(th + 1);
			__u32 optlen = doff - sizeof(*th);
			if (opt + optlen > data_end) {
				/* Options beyond the frame: a malformed packet, unless the frame is known
				 * to be cut short (a capture's snaplen: pkt_len is the packet's true
				 * length); then read the options that are there. */
				if (pkt_len <= (__u32)(data_end - data) || opt >= data_end) {
					*reason = CT_REASON_L4_TRUNCATED;
					return CT_CLASS_INVALID;
				}
				optlen = data_end - opt;
				p->optcut = 1;   /* in map memory, like optpos: no verifier state */
			}
			__u8 r = ct_parse_syn_options(opt, data_end, optlen, p);
			if (r) {
				*reason = r;
				return CT_CLASS_INVALID;
			}
		}
#ifndef CT_NO_RTT
		else if (doff > sizeof(*th)) {
			ct_parse_ts((void *)(th + 1), data_end, doff - sizeof(*th), p);
		}
#endif
	} else if (l4proto == IPPROTO_UDP) {
		struct udphdr *uh = data + l4off;
		if (l4len < sizeof(*uh) || (void *)(uh + 1) > data_end) {
			*reason = CT_REASON_L4_TRUNCATED;
			return CT_CLASS_INVALID;
		}
		__u32 ulen = ntohs(uh->len);
		if (ulen < sizeof(*uh) || (ulen > l4len && !first_fragment)) {
			*reason = CT_REASON_UDP_BAD_LENGTH;
			return CT_CLASS_INVALID;
		}
		/* for replay's line (len=) and Zeek's payload bytes; UDP judges no lengths */
		p->datalen = ulen - sizeof(*uh);
		sport = uh->source;
		dport = uh->dest;
	} else if (l4proto == IPPROTO_ICMP || l4proto == IPPROTO_ICMPV6) {
		/* Type, code, checksum and the 4-byte rest of header. */
		__u8 *ic = data + l4off;
		if (l4len < 8 || (void *)(ic + 8) > data_end) {
			*reason = CT_REASON_L4_TRUNCATED;
			return CT_CLASS_INVALID;
		}
		/* Errors (ICMP destination unreachable, source quench, redirect, time exceeded,
		 * parameter problem; ICMPv6 1-4) quote the IP header and first 8 bytes of the packet
		 * that caused them: enough for its addresses, ports and TCP sequence number. They
		 * belong to that packet's flow (RELATED), like netfilter's. Echo, neighbour discovery
		 * and the rest are not tracked. */
		__u8 type = ic[0];
		int is_error = l4proto == IPPROTO_ICMP ?
			(type == 3 || type == 4 || type == 5 || type == 11 || type == 12) :
			(type >= 1 && type <= 4);
		if (!is_error)
			return CT_CLASS_UNTRACKED;
		p->icmp_error = 1;
		p->icmp_type = type;
		p->icmp_code = ic[1];
#ifdef CT_REPLAY
		p->icmp_outer[0] = src;
		p->icmp_outer[1] = dst;
		p->icmp_rest = ntohl(*(__be32 *)(ic + 4));
#endif
		/* Quoted bytes beyond the frame but inside the IP length: a capture cut the frame
		 * (snaplen), not a malformed error; it passes untracked. */
		__u8 cut_reason = pkt_len > (__u32)(data_end - data) ? CT_REASON_NONE :
				  CT_REASON_ICMP_BAD_INNER;
		__u32 in = l4off + 8, inlen = l4len - 8, q;
		if (l4proto == IPPROTO_ICMP) {
			struct iphdr *ih = data + in;
			if (inlen < sizeof(*ih)) {
				*reason = CT_REASON_ICMP_BAD_INNER;
				return CT_CLASS_INVALID;
			}
			if ((void *)(ih + 1) > data_end) {
				*reason = cut_reason;
				return cut_reason ? CT_CLASS_INVALID : CT_CLASS_UNTRACKED;
			}
			if (ih->version != 4 || ih->ihl < 5 || inlen < ih->ihl * 4 + 8) {
				*reason = CT_REASON_ICMP_BAD_INNER;
				return CT_CLASS_INVALID;
			}
			if (ih->saddr != dst.v4) {
				*reason = CT_REASON_ICMP_MISDIRECTED;
				return CT_CLASS_INVALID;
			}
			if (ntohs(ih->frag_off) & 0x1fff)
				return CT_CLASS_UNTRACKED;   /* quotes a later fragment: no ports */
			src.v4 = ih->saddr;
			dst.v4 = ih->daddr;
			l4proto = ih->protocol;
			q = in + ih->ihl * 4;
		} else {
			struct ipv6hdr *ih = data + in;
			if (inlen < sizeof(*ih)) {
				*reason = CT_REASON_ICMP_BAD_INNER;
				return CT_CLASS_INVALID;
			}
			if ((void *)(ih + 1) > data_end) {
				*reason = cut_reason;
				return cut_reason ? CT_CLASS_INVALID : CT_CLASS_UNTRACKED;
			}
			if (ih->version != 6) {
				*reason = CT_REASON_ICMP_BAD_INNER;
				return CT_CLASS_INVALID;
			}
			if (ih->saddr.in6_u.u6_addr32[0] != dst.v6w[0] ||
			    ih->saddr.in6_u.u6_addr32[1] != dst.v6w[1] ||
			    ih->saddr.in6_u.u6_addr32[2] != dst.v6w[2] ||
			    ih->saddr.in6_u.u6_addr32[3] != dst.v6w[3]) {
				*reason = CT_REASON_ICMP_MISDIRECTED;
				return CT_CLASS_INVALID;
			}
			__builtin_memcpy(src.v6, &ih->saddr, 16);
			__builtin_memcpy(dst.v6, &ih->daddr, 16);
			l4proto = ih->nexthdr;
			q = in + sizeof(*ih);
			/* The quote's extension headers, walked as Linux's icmpv6_notify skips them
			 * (a quote whose ports cannot be reached is not let through unchecked); a
			 * quoted later fragment has no ports. Lengths are bounded by the quote. */
			int walked = 0;
#pragma unroll
			for (int i = 0; i < CT_MAX_IP6_EXT; i++) {
				if (!ct_ip6_ext(l4proto)) {
					walked = 1;
					break;
				}
				if (q - in > 512 || q - in + 8 > inlen) {
					*reason = CT_REASON_ICMP_BAD_INNER;
					return CT_CLASS_INVALID;
				}
				__u8 xh[8];
				if (ct_read8(xh, data, data_end, q)) {
					*reason = cut_reason;
					return cut_reason ? CT_CLASS_INVALID : CT_CLASS_UNTRACKED;
				}
				if (l4proto == IPPROTO_FRAGMENT && (((xh[2] << 8) | xh[3]) & 0xfff8))
					return CT_CLASS_UNTRACKED;
				q += ct_ip6_ext_len(l4proto, xh);
				l4proto = xh[0];
				/* one range, as in the walk of the packet's own headers above; the offset
				 * read back is a pointer of no known range, so the reads here and of the
				 * quoted ports go through ct_read8 (318k -> 161k instructions) */
				p->walkoff = q;
				q = *(volatile __u16 *)&p->walkoff;
			}
			if (!walked && ct_ip6_ext(l4proto)) {
				*reason = CT_REASON_ICMP_BAD_INNER;   /* a longer chain than followed */
				return CT_CLASS_INVALID;
			}
			if (q - in > 1024 || inlen < q - in + 8) {
				*reason = CT_REASON_ICMP_BAD_INNER;
				return CT_CLASS_INVALID;
			}
		}
		if (l4proto != IPPROTO_TCP && l4proto != IPPROTO_UDP)
			return CT_CLASS_UNTRACKED;   /* about a protocol ctrack does not track */
		__u8 ql4[8];
		if (ct_read8(ql4, data, data_end, q)) {
			*reason = cut_reason;
			return cut_reason ? CT_CLASS_INVALID : CT_CLASS_UNTRACKED;
		}
		sport = *(__be16 *)ql4;
		dport = *(__be16 *)(ql4 + 2);
		if (l4proto == IPPROTO_TCP)
			p->seq = ntohl(*(__be32 *)(ql4 + 4));
		related = 1;
	} else {
		return CT_CLASS_UNTRACKED;
	}

	p->key.proto = l4proto;
	if (ct_endpoint_after(&src, sport, &dst, dport)) {
		p->side = 1;
		p->key.addr[0] = dst;
		p->key.addr[1] = src;
		p->key.port[0] = dport;
		p->key.port[1] = sport;
	} else {
		p->side = 0;
		p->key.addr[0] = src;
		p->key.addr[1] = dst;
		p->key.port[0] = sport;
		p->key.port[1] = dport;
	}
	if (bad_flags) {
		*reason = CT_REASON_TCP_BAD_FLAGS;
		return CT_CLASS_INVALID;
	}
	return related ? CT_CLASS_RELATED : CT_CLASS_NEW;
}

#endif /* CT_LIB_PARSE_H */

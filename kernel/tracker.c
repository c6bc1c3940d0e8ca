/* tracker.c: ctrack's connection tracker, one source for XDP (ct_xdp) and TC (ct_tc).
 *
 * Parses Ethernet/VLAN/IPv4/IPv6/TCP/UDP/ICMP with strict bounds, keeps a flow table of TCP and
 * UDP connections with a TCP state machine per endpoint, validates sequence and acknowledgement
 * numbers per direction (netfilter's td_end/td_maxend/td_maxwin rules), honours only in-window
 * RSTs (RFC 5961), expires flows per state, and counts and reports what it sees.
 *
 * Compiled by BCC at run time; ctrack/tracker.py chooses the build with -D options:
 *   CT_ENFORCE      drop INVALID packets (default: observe, pass everything)
 *   CT_PICKUP       create flows from mid-stream ACKs (default: such packets are INVALID NO_FLOW)
 *   CT_REDIRECT_A/B bump in the wire: a packet arriving on ifindex A leaves on B and vice versa
 *   CT_REPLAY       the clock comes from the `trace` map (capture timestamps) and the verdict of
 *                   the last packet is written there, for replay and tests
 *   CT_NO_EVENTS    no ring buffer events at all
 *   CT_TC_EGRESS    ct_tc also runs at egress of the interface it observes (ctrack run -i)
 *   CT_NO_RTT       no passive RTT (no per-segment timestamp read, no fine clock; ct_entry.rtt
 *                   stays zero)
 *   CT_NO_SYNOPTS   no summary of the SYNs' options (ct_entry.synopts stays zero)
 *   CT_TIMEOUT_*, CT_TABLE_SIZE   see ctrack.h
 *
 * Reads only packet bytes and uapi headers, never a kernel-internal struct: it loads on any kernel
 * whatever headers BCC compiles against.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/if_packet.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/udp.h>

#include "ctrack.h"
#include "rtt.h"     /* ct_rtt_summarise: also the collector's */

#define NS_PER_SEC 1000000000ULL
#define ETH_P_8021AD_ 0x88A8
#define ETH_P_PPPOE_SES_ 0x8864   /* PPPoE session stage (RFC 2516) */
#define ETH_P_MPLS_UC_ 0x8847     /* MPLS unicast (RFC 3032) */
#define ETH_P_MPLS_MC_ 0x8848     /* MPLS multicast */
#define PPP_IP_ 0x0021
#define PPP_IPV6_ 0x0057

/* ---- Maps ------------------------------------------------------------------------------------ */
/* The flow table: preallocated hash (no allocation on the packet path; a full table fails the
 * insert cleanly, and ctrack decides what to evict instead of an LRU evicting a live flow). */
BPF_TABLE("hash", struct ct_key, struct ct_entry, flows, CT_TABLE_SIZE);
BPF_PERCPU_ARRAY(stats, struct ct_stats, 1);
/* Flows that may be evicted when the table is full: an item is pushed when a flow is created
 * (unassured) and when it starts closing, checked again when popped, and pushed back while its
 * flow is live and assured (it may expire or close later). Oldest overwritten when full. */
BPF_QUEUE(evict_queue, struct ct_evict_item, CT_EVICT_QUEUE_SIZE);
#ifndef CT_NO_EVENTS
BPF_RINGBUF_OUTPUT(events, CT_RINGBUF_PAGES);
#endif
/* Never used by the program: it gives user space struct ct_event's layout as BCC derives it
 * for maps (BCC's ring-buffer decoder does not understand the __u64 typedefs). */
BPF_ARRAY(event_layout, struct ct_event, 1);
#ifdef CT_REPLAY
BPF_ARRAY(trace, struct ct_trace, 1);
#endif

/* ---- Small helpers ---------------------------------------------------------------------------- */
/* Sequence-space comparisons modulo 2^32 (RFC 9293 section 3.4). */
static __always_inline int seq_before(__u32 a, __u32 b) { return (__s32)(a - b) < 0; }
static __always_inline int seq_after(__u32 a, __u32 b) { return (__s32)(b - a) < 0; }

static __always_inline struct ct_stats *stats_get(void)
{
	__u32 z = 0;
	return stats.lookup(&z);
}

/* For the rarer counters; the per-packet ones share one lookup in ct_decide. */
static __always_inline void stat_inc(__u32 idx)
{
	struct ct_stats *st = stats_get();
	if (st && idx < CT_STAT_MAX)
		st->v[idx] += 1;   /* per-CPU: no atomics needed */
}

/* The clock of RTT samples: fine (RTTs of a few ms need better than a jiffy); the capture's in
 * replays. Read only for TCP segments of builds with RTT. */
static __always_inline __u64 ct_now_fine(void)
{
#ifdef CT_REPLAY
	__u32 z = 0;
	struct ct_trace *t = trace.lookup(&z);
	return t ? t->now : 0;
#else
	return bpf_ktime_get_ns();
#endif
}

static __always_inline __u64 ct_now(void)
{
#ifdef CT_REPLAY
	__u32 z = 0;
	struct ct_trace *t = trace.lookup(&z);
	return t ? t->now : 0;
#else
	/* CLOCK_MONOTONIC_COARSE: one jiffy of resolution is nothing beside timeouts counted in
	 * seconds, and it costs a quarter of the fast path less than bpf_ktime_get_ns (measured
	 * with bench/fastpath.py: 88 -> 65 ns per established packet). */
	return bpf_ktime_get_coarse_ns();
#endif
}

/* ---- Parsing ---------------------------------------------------------------------------------- */
/* Everything the state machine needs from one packet, copied out of it so that no packet pointer
 * is used while a flow's lock is held. */
struct ct_pkt {
	struct ct_key key;
	__u32 seq;
	__u32 ack;
	__u32 datalen;    /* TCP payload bytes; UDP: the UDP header's length less 8 */
	__u32 ip_len;     /* bytes at the IP layer */
	__u16 win;
	__u16 mss;
	__u8 side;        /* key side of the sender */
	__u8 tcp_flags;   /* FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10 URG 0x20 */
	__u8 wscale;
	__u8 opt_flags;   /* CT_DF_WSCALE | CT_DF_SACK_PERM | CT_DF_TIMESTAMPS seen in a SYN */
	__u8 fragmented;  /* a first fragment: the segment is longer than what we see */
	__u8 optpos;      /* SYN option walk: offset of the next option (see below) */
	__u8 optcut;      /* SYN option walk: the frame ends inside the option block */
	__u8 icmp_type;   /* an ICMP error (parse returned RELATED): its type and code; the key, */
	__u8 icmp_code;   /* side and seq above are then those of the packet it quotes */
	__u8 icmp_error;  /* the packet is an ICMP error (whatever its class) */
	__u8 synopts_dir; /* its SYN options became direction synopts_dir - 1's (the counters) */
#ifndef CT_NO_SYNOPTS
	struct ct_synopts synopts;   /* the SYN's options (SYN walk) */
#endif
#ifndef CT_NO_RTT
	/* passive RTT (ct_rtt_update) */
	__u8 has_ts;      /* a TCP timestamps option: tsval and tsecr are valid */
	__u8 rtt_sampled; /* a sample was taken and both halves have one: rtt_e2e_us is valid */
	__u32 tsval;
	__u32 tsecr;
	__u32 rtt_e2e_us; /* end-to-end RTT of that sample (this half's + the other's last) */
	__u64 rtt_now;    /* the fine clock (ns), read before the flow's lock */
	/* ct_rtt_update's inputs, taken before the state machine moves the sender (kept here, in
	 * map memory, and the update run where all of ct_update's paths have joined: see
	 * struct ct_result's map for why) */
	__u8 rtt_go;
	__u8 rtt_init;    /* ct_flow_init (re)started the flow: the update times its opening */
	__u8 rtt_prev_flags;
	__u32 rtt_prev_isn;
	__u32 rtt_prev_end;
#endif
	__u8 bad_flags;   /* TCP flags no TCP sends: INVALID, seen only by Zeek's history */
	__u16 l3off;      /* where the IP header starts (after VLAN tags, PPPoE, MPLS labels) */
	/* Zeek's per-packet values (see ZV) */
	__u8 zrestart;    /* the state machine restarts the flow with this packet (1 reuse, 2 SYN/ACK) */
	__u32 zseed;      /* 2: the sequence number of the SYN it restarts from */
	__u8 zdir;
	__u8 zbits;
	__u32 zseg;
	__u32 zlast;
	__u32 zrel;
	__u32 zack;
	__u32 zdl;
#ifdef CT_REPLAY
	/* for the replay's description of an ICMP error (replay builds only: the live packet
	 * path does not pay for clearing them) */
	union ct_addr icmp_outer[2];   /* the error's own source and destination */
	__u32 icmp_rest;               /* its rest-of-header word: the MTU of "fragmentation
	                                * needed" / "packet too big", a parameter problem's pointer */
#endif
};

/* Per-CPU working memory. The parsed packet lives here rather than on the stack on purpose: the
 * verifier does not track map memory, so every parsing path (IPv4, IPv6 with any extension
 * headers, VLAN depths) reaches the state machine in the same verifier state and the state
 * machine is verified once, not once per path. The new entry is built here too (too big for the
 * 512-byte stack); plain bytes, since a per-CPU map may not hold a bpf_spin_lock. */
struct ct_scratch {
	struct ct_pkt pkt;   /* first: ct_scratch_of() */
	/* RTTs for the end events, written just before they are sent (here, not in struct
	 * ct_result: the stack is full; not in ct_pkt: cleared for every packet) */
	struct ct_rtt_summary rtt_sum;       /* the flow's when the packet closed it */
	struct ct_rtt_summary prev_rtt_sum;  /* the previous flow's, when it ended (prev_closed) */
	__u8 entry[sizeof(struct ct_entry)];
	/* The Zeek record of a flow that just ended in its entry, copied out under the entry's lock
	 * for its CLOSED event and the replay (zk_prev); zeroes to clear a record with (zk_zero:
	 * never written) */
	struct ct_zeek zk_prev;
	struct ct_zeek zk_zero;
	/* The address of the packet's flow's Zeek record, for ct_after's events: kept as a number
	 * in map memory so that the new-flow path and the existing-flow path (pointers into
	 * different maps) reach one ct_after as one verifier state, not two copies of it */
	__u64 zsrc;
};

BPF_PERCPU_ARRAY(scratch, struct ct_scratch, 1);
_Static_assert(__builtin_offsetof(struct ct_scratch, pkt) == 0, "ct_sc needs pkt first");
/* The scratch a parsed packet lives in (the packet is its first member). */
#define ct_sc(p) ((struct ct_scratch *)(p))

/* The scratch area a parsed packet lives in (p is always &scratch->pkt, its first member). */
static __always_inline struct ct_scratch *ct_scratch_of(struct ct_pkt *p)
{
	return (struct ct_scratch *)p;
}

#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_ACK 0x10
#define TH_URG 0x20

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

/* The summary of one option in a SYN (struct ct_synopts): its kind by number and by ctrack's
 * name, an RFC 6994 ExID, MPTCP's subtype. i is the option's offset in buf, len its length. */
static __always_inline void ct_synopt_note(struct ct_pkt *p, __u8 *buf, __u32 i, __u8 kind, __u8 len)
{
#ifndef CT_NO_SYNOPTS
	struct ct_synopts *so = &p->synopts;
	__u16 named = 1 << CT_TCPOPT_OTHER;
	so->kinds |= kind < 63 ? (1ULL << kind) : (1ULL << 63);
	if (kind == CT_TCPOPT_KIND_MSS)
		named = 1 << CT_TCPOPT_MSS;
	else if (kind == CT_TCPOPT_KIND_WSCALE)
		named = 1 << CT_TCPOPT_WSCALE;
	else if (kind == CT_TCPOPT_KIND_SACK_PERM)
		named = 1 << CT_TCPOPT_SACK_PERM;
	else if (kind == CT_TCPOPT_KIND_TIMESTAMPS)
		named = 1 << CT_TCPOPT_TIMESTAMPS;
	else if (kind == CT_TCPOPT_KIND_MD5)
		named = 1 << CT_TCPOPT_MD5;
	else if (kind == CT_TCPOPT_KIND_UTO)
		named = 1 << CT_TCPOPT_UTO;
	else if (kind == CT_TCPOPT_KIND_AO)
		named = 1 << CT_TCPOPT_AO;
	else if (kind == CT_TCPOPT_KIND_TFO)
		named = 1 << CT_TCPOPT_TFO;
	else if (kind == CT_TCPOPT_KIND_MPTCP) {
		named = 1 << CT_TCPOPT_MPTCP;
		if (len >= 3 && !so->mptcp_subtype)
			so->mptcp_subtype = (buf[(i + 2) & 63] >> 4) + 1;
	} else if (kind == CT_TCPOPT_KIND_EXP1 || kind == CT_TCPOPT_KIND_EXP2) {
		/* RFC 6994: a 16-bit ExID follows kind and length (shorter ones: pre-6994 use) */
		named = 1 << CT_TCPOPT_EXP;
		if (len >= 4) {
			__u16 exid = ((__u16)buf[(i + 2) & 63] << 8) | buf[(i + 3) & 63];
			if (kind == CT_TCPOPT_KIND_EXP2 && exid == CT_TCPOPT_EXID_TFO)
				named = 1 << CT_TCPOPT_TFO;
			if (!so->exid_kind[0]) {
				so->exid[0] = exid;
				so->exid_kind[0] = kind;
			} else if (!so->exid_kind[1]) {
				so->exid[1] = exid;
				so->exid_kind[1] = kind;
			}
		}
	} else if (kind >= 63 && !so->high_kind) {
		so->high_kind = kind;
	}
	so->named |= named;
#endif
}

/* SYN options: MSS, window scale, SACK-permitted, timestamps. Unknown and experimental kinds
 * (RFC 6994's 253/254, TFO cookies, MPTCP, ...) are noted in the summary (ct_synopt_note) and
 * skipped by their length; a length that runs
 * past the header is malformed. Known options of a wrong length are ignored, as Linux does.
 *
 * The option block (at most 40 bytes) is copied to the stack and walked there. The walk's
 * position lives in p, i.e. in map memory, which the verifier does not track: every iteration
 * then reaches the loop head in the same verifier state and the walk is verified about once,
 * where a position kept in a register makes it follow every combination of option lengths (a
 * 40-step walk then exceeds the verifier's budget). 40 steps cover any option block, one-byte
 * NOPs included. (bpf_loop would do too, but BCC 0.26 cannot relocate its callback.) */
static __always_inline int ct_parse_syn_options(void *opt, void *data_end, __u32 optlen,
						 struct ct_pkt *p)
{
	__u8 buf[64];
	__builtin_memset(buf, 0, sizeof(buf));
	if (optlen == 0 || optlen > 40 || opt + optlen > data_end)
		return CT_REASON_L4_TRUNCATED;
	/* Clang knows optlen <= 40 here and would drop the mask; the verifier needs to see it. */
	__u32 n = optlen;
	asm volatile("" : "+r"(n));
	if (bpf_probe_read_kernel(buf, n & 63, opt))
		return CT_REASON_L4_TRUNCATED;
	p->optpos = 0;
	for (int n = 0; n < CT_MAX_TCP_OPTIONS; n++) {
		__u32 i = p->optpos;
		if (i >= optlen)
			break;
		__u8 kind = buf[i & 63];
		if (kind == 0)            /* end of option list */
			break;
		if (kind == 1) {          /* no-operation */
			p->optpos = i + 1;
			continue;
		}
		__u8 len = buf[(i + 1) & 63];
		if (p->optcut && (i + 1 >= optlen || i + len > optlen))
			break;   /* the capture cut the block here: keep what was read */
		if (i + 1 >= optlen || len < 2 || i + len > optlen)
			return CT_REASON_TCP_BAD_OPTIONS;
		ct_synopt_note(p, buf, i, kind, len);
		if (kind == 2 && len == 4) {
			p->mss = ((__u16)buf[(i + 2) & 63] << 8) | buf[(i + 3) & 63];
		} else if (kind == 3 && len == 3) {
			__u8 ws = buf[(i + 2) & 63];
			p->wscale = ws > 14 ? 14 : ws;   /* RFC 7323: a shift above 14 is used as 14 */
			p->opt_flags |= CT_DF_WSCALE;
		} else if (kind == 4 && len == 2) {
			p->opt_flags |= CT_DF_SACK_PERM;
		} else if (kind == 8 && len == 10) {
			p->opt_flags |= CT_DF_TIMESTAMPS;
#ifndef CT_NO_RTT
			p->tsval = ((__u32)buf[(i + 2) & 63] << 24) | ((__u32)buf[(i + 3) & 63] << 16) |
				   ((__u32)buf[(i + 4) & 63] << 8) | buf[(i + 5) & 63];
			p->tsecr = ((__u32)buf[(i + 6) & 63] << 24) | ((__u32)buf[(i + 7) & 63] << 16) |
				   ((__u32)buf[(i + 8) & 63] << 8) | buf[(i + 9) & 63];
			p->has_ts = 1;
#endif
		}
		p->optpos = i + len;
	}
	return CT_REASON_NONE;
}

#ifndef CT_NO_RTT
/* The timestamps option of a segment that is not a SYN, for the passive RTT. Costs little on
 * the common layout -- NOP, NOP, TS first, as Linux and the BSDs send it: one 4-byte compare --
 * and otherwise walks at most CT_MAX_TCP_OPTIONS options for kind 8 (Windows, middleboxes). A
 * malformed or cut block only means no timestamps: the SYN-only validation stays as it was.
 * Sets has_ts, tsval, tsecr in p. Reads the packet the way ct_parse does (data/data_end). */
static __always_inline void ct_parse_ts(void *opt, void *data_end, __u32 optlen, struct ct_pkt *p)
{
	/* The bounds as a number, not a packet-pointer comparison: a comparison gives the packet
	 * pointers still live in the callers a range of their own per outcome, and the verifier
	 * then walks everything after the parser once per outcome (pointer minus pointer is a
	 * plain number for a privileged loader). */
	__u32 avail = (__u32)((long)data_end - (long)opt);
	if (optlen < 10 || optlen > 40 || optlen > avail)
		return;
	__u8 buf[64];
	__builtin_memset(buf, 0, sizeof(buf));
	__u32 n = optlen;
	asm volatile("" : "+r"(n));
	if (bpf_probe_read_kernel(buf, n & 63, opt))
		return;
	p->optpos = optlen;   /* compared from map memory: no verifier state of its own */
	if (buf[0] == 1 && buf[1] == 1 && buf[2] == 8 && buf[3] == 10 &&
	    *(volatile __u8 *)&p->optpos >= 12) {
		/* the common layout: NOP, NOP, TS first (Linux, the BSDs) */
		p->tsval = ((__u32)buf[4] << 24) | ((__u32)buf[5] << 16) | ((__u32)buf[6] << 8) | buf[7];
		p->tsecr = ((__u32)buf[8] << 24) | ((__u32)buf[9] << 16) | ((__u32)buf[10] << 8) | buf[11];
		p->has_ts = 1;
		return;
	}
	p->optpos = 0;
	for (int k = 0; k < CT_MAX_TCP_OPTIONS; k++) {
		__u32 i = p->optpos;   /* in map memory: see ct_parse_syn_options */
		if (i + 1 >= optlen)
			break;
		__u8 kind = buf[i & 63];
		if (kind == 0)
			break;
		if (kind == 1) {
			p->optpos = i + 1;
			continue;
		}
		__u8 len = buf[(i + 1) & 63];
		if (len < 2 || i + len > optlen)
			break;
		if (kind == 8 && len == 10) {
			p->tsval = ((__u32)buf[(i + 2) & 63] << 24) | ((__u32)buf[(i + 3) & 63] << 16) |
				   ((__u32)buf[(i + 4) & 63] << 8) | buf[(i + 5) & 63];
			p->tsecr = ((__u32)buf[(i + 6) & 63] << 24) | ((__u32)buf[(i + 7) & 63] << 16) |
				   ((__u32)buf[(i + 8) & 63] << 8) | buf[(i + 9) & 63];
			p->has_ts = 1;
			break;
		}
		p->optpos = i + len;
	}
}
#endif

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
				__u8 *xh = data + q;
				if ((void *)(xh + 8) > data_end) {
					*reason = cut_reason;
					return cut_reason ? CT_CLASS_INVALID : CT_CLASS_UNTRACKED;
				}
				if (l4proto == IPPROTO_FRAGMENT && (((xh[2] << 8) | xh[3]) & 0xfff8))
					return CT_CLASS_UNTRACKED;
				q += ct_ip6_ext_len(l4proto, xh);
				l4proto = xh[0];
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
		__u8 *ql4 = data + q;
		if ((void *)(ql4 + 8) > data_end) {
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

/* ---- Zeek's conn_state and history (conn.log) ---------------------------------------------------
 * Every packet of a flow the tracker sees, valid or not, goes through Zeek's own rules, as its TCP
 * analyzer applies them (src/packet_analysis/protocol/tcp/TCPSessionAdapter.cc: init_endpoint,
 * update_history, update_window, update_last_seq, the UpdateStateMachine family, the reassembler's
 * AckReceived and DataSent for content gaps) and its UDP analyzer (D/d, endpoint activity). This is
 * a record of what crossed the wire; the tracker's own judgement stays in its states and verdicts.
 * Kept modulo 2^32 (Zeek counts sequence wraps); checksums are not checked (no C/c letters). */
#define CT_ZEEK_TOO_LARGE_SEQ_DELTA 1048576

/* The record of a flow that ends in its entry, kept for its CLOSED event and the replay. */
static __always_inline void ct_zeek_prev(struct ct_scratch *sc, struct ct_zeek *z)
{
	__builtin_memcpy(&sc->zk_prev, z, sizeof(*z));
}

static __always_inline void ct_zeek_letter(struct ct_zeek *z, char c)
{
	__u32 n = z->hist_len;
	if (n < CT_ZEEK_HISTORY) {
		z->history[n] = c;
		z->hist_len = n + 1;
	}
}

/* Zeek's CheckHistory: the letter once per direction; returns 1 when it was already there. */
static __always_inline int ct_zeek_once(struct ct_zeek *z, __u32 d, __u16 bit, char c)
{
	__u16 m = d ? bit << 8 : bit;
	if (z->hist_seen & m)
		return 1;
	z->hist_seen |= m;
	ct_zeek_letter(z, d ? c + ('a' - 'A') : c);
	return 0;
}

/* Zeek's ScaledHistoryEntry: the letter at the 1st, 10th, 100th, ... occurrence. c[0] counts,
 * c[1] is the next count that logs (0: not started, i.e. 1). */
static __always_inline void ct_zeek_scaled(struct ct_zeek *z, __u32 d, __u32 *c, char letter)
{
	__u32 n = c[0] + 1, t = c[1] ? c[1] : 1;
	c[0] = n;
	if (n == t) {
		ct_zeek_letter(z, d ? letter + ('a' - 'A') : letter);
		if (t * 10 <= t)
			c[0] = 0;   /* the threshold would wrap: Zeek restarts the count */
		else
			c[1] = t * 10;
	}
}

static __always_inline void ct_zeek_set(struct ct_zeek_dir *x, __u8 state)
{
	if (x->state != state) {
		x->prev_state = x->state;
		x->state = state;
	}
}

/* Zeek's "established or cleanly closing" endpoint: only then is a content gap a letter. */
static __always_inline int ct_zeek_clean(struct ct_zeek_dir *x)
{
	return x->state == CT_ZEEK_ESTABLISHED ||
	       (x->state == CT_ZEEK_CLOSED && x->prev_state == CT_ZEEK_ESTABLISHED);
}

/* (Re)starts an endpoint's sequence space, as Zeek's InitStartSeq/InitAckSeq/InitLastSeq. */
static __always_inline void ct_zeek_seqinit(struct ct_zeek_dir *x, __u32 start, __u32 last)
{
	x->start_seq = start;
	x->ack_seq = start;
	x->last_seq = last;
	x->reasm = 1;   /* the reassembler starts after the SYN */
	x->trim = 1;
	x->flags &= ~CT_ZD_OOO;
}

/* The peer of a gap check: its data up to relative sequence a was acknowledged. A gap is data
 * acknowledged that was never seen in order (data seen beyond one hole is remembered). */
static __always_inline void ct_zeek_acked(struct ct_zeek *z, __u32 pd, __u32 a)
{
	struct ct_zeek_dir *x = &z->dir[pd & 1], *o = &z->dir[(pd ^ 1) & 1];
	if ((x->flags & CT_ZD_FIN) && !seq_before(a, x->fin_seq))
		a = x->fin_seq - 1;   /* the FIN is not data */
	if (!seq_after(a, x->trim))
		return;
	x->trim = a;
	if (!seq_after(a, x->reasm))
		return;
	if (!(a <= 2 && (z->flags & CT_ZF_PARTIAL)) && ct_zeek_clean(x) && ct_zeek_clean(o))
		ct_zeek_scaled(z, pd, x->gap, 'G');
	x->reasm = a;
	if ((x->flags & CT_ZD_OOO) && !seq_before(x->reasm, x->ooo_start)) {
		if (seq_after(x->ooo_end, x->reasm))
			x->reasm = x->ooo_end;
		x->flags &= ~CT_ZD_OOO;
	}
}

/* Payload [s, s + len) (relative) sent by x: in order it extends what the reassembler has. */
static __always_inline void ct_zeek_data(struct ct_zeek_dir *x, __u32 s, __u32 len)
{
	__u32 e = s + len;
	if (!seq_after(e, x->trim))
		return;   /* all of it acknowledged already */
	if (seq_before(s, x->trim))
		s = x->trim;
	if (!seq_after(s, x->reasm)) {
		if (seq_after(e, x->reasm))
			x->reasm = e;
		if ((x->flags & CT_ZD_OOO) && !seq_before(x->reasm, x->ooo_start)) {
			if (seq_after(x->ooo_end, x->reasm))
				x->reasm = x->ooo_end;
			x->flags &= ~CT_ZD_OOO;
		}
	} else if (x->flags & CT_ZD_OOO) {
		if (seq_before(s, x->ooo_start))
			x->ooo_start = s;
		if (seq_after(e, x->ooo_end))
			x->ooo_end = e;
	} else {
		x->ooo_start = s;
		x->ooo_end = e;
		x->flags |= CT_ZD_OOO;
	}
}

/* Values the Zeek code branches on are read from the packet's scratch memory at each use (ZV), and
 * its intermediate results go there too: the verifier does not track map memory, so the
 * branches below meet again in one verifier state instead of multiplying. */
#define ZV(x) (*(volatile typeof(x) *)&(x))
#define ZF(bit) (ZV(p->tcp_flags) & (bit))
#define ZD ZV(p->zdir)

/* One TCP segment (p) from direction p->zdir, in Zeek's order. */
static __always_inline void ct_zeek_tcp(struct ct_zeek *z, struct ct_pkt *p)
{
	struct ct_zeek_dir *ep = &z->dir[ZD & 1], *peer = &z->dir[(ZD ^ 1) & 1];
	p->zseg = ZF(TH_RST) ? 0 : p->datalen;
	if (ZF(TH_SYN))
		p->zseg += 1;
	if (ZF(TH_FIN))
		p->zseg += 1;
	p->zlast = p->seq + ZV(p->zseg);

	/* SetPartialStatus, on each side's first packet */
	if (ZD == CT_DIR_ORIG) {
		if (!(z->flags & CT_ZF_SEEN_ORIG) && (!ZF(TH_SYN) || ZF(TH_ACK)))
			z->flags |= CT_ZF_PARTIAL;
		z->flags |= CT_ZF_SEEN_ORIG;
	} else {
		if (!(z->flags & CT_ZF_SEEN_REPLY) && !ZF(TH_SYN))
			z->flags |= CT_ZF_PARTIAL;
		z->flags |= CT_ZF_SEEN_REPLY;
	}

	/* init_endpoint */
	if (ep->state == CT_ZEEK_INACTIVE) {
		if (ZF(TH_SYN))
			ct_zeek_seqinit(ep, p->seq, ZV(p->zlast));
		else
			ct_zeek_seqinit(ep, p->seq - 1, p->seq);   /* as though a SYN came before */
	} else if (ZF(TH_SYN) &&
		   (((ep->state == CT_ZEEK_SYN_SENT || ep->state == CT_ZEEK_SYN_ACK_SENT) &&
		     p->seq != ep->start_seq) ||
		    ep->state == CT_ZEEK_ESTABLISHED || ep->state == CT_ZEEK_PARTIAL ||
		    (ep->state == CT_ZEEK_RESET && ep->prev_state == CT_ZEEK_INACTIVE))) {
		ct_zeek_seqinit(ep, p->seq, ZV(p->zlast));
	}
	p->zrel = p->seq - ep->start_seq;

	/* update_history: one of SYN, FIN, RST; FIN+RST; SYN with another; none */
	p->zbits = (ZF(TH_SYN) ? 1 : 0) + (ZF(TH_FIN) ? 1 : 0) + (ZF(TH_RST) ? 1 : 0);
	if (ZV(p->zbits) > 1) {
		if (ZF(TH_FIN) && ZF(TH_RST))
			ct_zeek_once(z, ZD, CT_ZH_FIN_RST, 'I');
		else
			ct_zeek_once(z, ZD, CT_ZH_MULTI, 'Q');
	} else if (ZF(TH_SYN)) {
		if (ct_zeek_once(z, ZD, CT_ZH_SYN, ZF(TH_ACK) ? 'H' : 'S') && ZV(p->zrel) != ep->hist_syn)
			ct_zeek_letter(z, (ZF(TH_ACK) ? 'H' : 'S') + (ZD ? 'a' - 'A' : 0));
		ep->hist_syn = ZV(p->zrel);
	} else if (ZF(TH_FIN)) {
		if (ct_zeek_once(z, ZD, CT_ZH_FIN, 'F') && ZV(p->zrel) + p->datalen != ep->hist_fin)
			ct_zeek_letter(z, ZD ? 'f' : 'F');
		ep->hist_fin = ZV(p->zrel) + p->datalen;
	} else if (ZF(TH_RST)) {
		if (ct_zeek_once(z, ZD, CT_ZH_RST, 'R') && ZV(p->zrel) != ep->hist_rst)
			ct_zeek_letter(z, ZD ? 'r' : 'R');
		ep->hist_rst = ZV(p->zrel);
	} else if (ZV(p->datalen)) {
		ct_zeek_once(z, ZD, CT_ZH_DATA, 'D');
	} else if (ZF(TH_ACK)) {
		ct_zeek_once(z, ZD, CT_ZH_ACK, 'A');
	}

	/* update_window: a zero window (scaling cannot make it non-zero) */
	if (ZV(p->win) == 0 && !ZF(TH_RST) && peer->state != CT_ZEEK_CLOSED &&
	    ep->state != CT_ZEEK_RESET)
		ct_zeek_scaled(z, ZD, ep->win0, 'W');

	if (ZF(TH_FIN)) {
		ep->flags |= CT_ZD_FIN;
		ep->fin_seq = ZV(p->zrel) + ZV(p->zseg);
	}

	/* the acknowledgement, in the peer's sequence space */
	p->zack = 0;
	if (ZF(TH_ACK)) {
		if (peer->state == CT_ZEEK_INACTIVE) {
			p->zack = 1;
			ct_zeek_seqinit(peer, p->ack - 1, p->ack - 1);   /* init_peer */
		} else if ((__s32)(p->ack - peer->start_seq) >= 0) {
			p->zack = p->ack - peer->start_seq;
			if (!ZF(TH_RST) && (__s32)(p->ack - peer->ack_seq) > 0 &&
			    !(p->ack == 0 &&
			      (__s32)(p->ack - peer->ack_seq) > CT_ZEEK_TOO_LARGE_SEQ_DELTA))
				peer->ack_seq = p->ack;
		}
	}

	/* update_last_seq: a retransmission is payload not beyond what was sent */
	p->zdl = ZV(p->zlast) - ep->last_seq;
	if ((ZF(TH_SYN) || ZF(TH_RST)) && ((__s32)ZV(p->zdl) > CT_ZEEK_TOO_LARGE_SEQ_DELTA ||
					    (__s32)ZV(p->zdl) < -CT_ZEEK_TOO_LARGE_SEQ_DELTA))
		;
	else if (ZF(TH_FIN) && ep->last_seq == ep->start_seq + 1)
		ep->last_seq = ZV(p->zlast);
	else if (ep->state == CT_ZEEK_RESET)
		;
	else if ((__s32)ZV(p->zdl) > 0)
		ep->last_seq = ZV(p->zlast);
	else if (ZV(p->datalen) > 0)
		ct_zeek_scaled(z, ZD, ep->rxmt, 'T');

	/* UpdateStateMachine */
	if (ep->state == CT_ZEEK_INACTIVE) {
		if (ZF(TH_SYN)) {
			if (ZD == CT_DIR_ORIG) {
				ct_zeek_set(ep, ZF(TH_ACK) ? CT_ZEEK_SYN_ACK_SENT : CT_ZEEK_SYN_SENT);
			} else {
				if (peer->state == CT_ZEEK_SYN_SENT)
					ct_zeek_set(peer, CT_ZEEK_ESTABLISHED);
				ct_zeek_set(ep, CT_ZEEK_ESTABLISHED);
			}
		}
		if (ZF(TH_FIN))
			ct_zeek_set(ep, CT_ZEEK_CLOSED);
		if (ZF(TH_RST))
			ct_zeek_set(ep, CT_ZEEK_RESET);
		if (ep->state == CT_ZEEK_INACTIVE) {
			if (ZD == CT_DIR_REPLY && ZV(p->datalen) == 0 &&
			    z->dir[CT_DIR_ORIG].state == CT_ZEEK_SYN_SENT)
				;   /* an ACK of the SYN before the SYN/ACK: not a partial connection */
			else if (ZF(TH_ACK) && peer->state == CT_ZEEK_ESTABLISHED)
				ct_zeek_set(ep, CT_ZEEK_ESTABLISHED);   /* the SYN was missed */
			else
				ct_zeek_set(ep, CT_ZEEK_PARTIAL);
		}
	} else if (ep->state == CT_ZEEK_SYN_SENT || ep->state == CT_ZEEK_SYN_ACK_SENT) {
		if (ZF(TH_FIN))
			ct_zeek_set(ep, CT_ZEEK_CLOSED);
		if (ZF(TH_RST))
			ct_zeek_set(ep, CT_ZEEK_RESET);
	} else if (ep->state == CT_ZEEK_ESTABLISHED || ep->state == CT_ZEEK_PARTIAL) {
		if (ZF(TH_SYN) && !ZF(TH_ACK) && ep->state == CT_ZEEK_PARTIAL &&
		    peer->state == CT_ZEEK_INACTIVE)
			ct_zeek_set(ep, CT_ZEEK_SYN_SENT);
		if (ZF(TH_FIN) && !ZF(TH_RST)) {
			ct_zeek_set(ep, CT_ZEEK_CLOSED);
			if (peer->state == CT_ZEEK_RESET && peer->prev_state == CT_ZEEK_CLOSED)
				ct_zeek_set(peer, CT_ZEEK_CLOSED);   /* its FIN then RST: a normal end */
		}
		if (ZF(TH_RST))
			ct_zeek_set(ep, CT_ZEEK_RESET);
	} else if (ep->state == CT_ZEEK_CLOSED) {
		if (ZF(TH_RST) && peer->state != CT_ZEEK_CLOSED)
			ct_zeek_set(ep, CT_ZEEK_RESET);
	}

	/* the peer's reassembler sees the ACK, then this side's data is delivered */
	if (ZF(TH_ACK))
		ct_zeek_acked(z, ZD ^ 1, ZV(p->zack));
	if (ZV(p->datalen) > 0 && !ZF(TH_RST) && (__s32)ZV(p->zrel) >= 0)
		ct_zeek_data(ep, ZV(p->zrel) + (ZF(TH_SYN) ? 1 : 0), ZV(p->datalen));
}

/* A packet of flow e, whatever the tracker makes of it (before the state machine: see
 * ct_update). */
static __always_inline void ct_zeek_update(struct ct_zeek *z, struct ct_pkt *p, __u32 d,
					   __u64 now)
{
	if (ZV(p->zrestart)) {
		/* the state machine restarts the flow with this packet: so does Zeek's record (a
		 * new connection, a new conn.log row; the old record goes to the flow's end) */
		ct_zeek_prev(ct_sc(p), z);
		__builtin_memset(z, 0, sizeof(*z));
		if (ZV(p->zrestart) == 2) {
			/* from the SYN remembered earlier: Zeek saw it (S) */
			struct ct_zeek_dir *o = &z->dir[CT_DIR_ORIG];
			ct_zeek_seqinit(o, p->zseed, p->zseed + 1);
			o->state = CT_ZEEK_SYN_SENT;
			z->flags = CT_ZF_SEEN_ORIG;
			z->hist_seen = CT_ZH_SYN;
			z->history[0] = 'S';
			z->hist_len = 1;
			d = CT_DIR_REPLY;   /* the SYN/ACK's sender is the new flow's responder */
		} else {
			d = CT_DIR_ORIG;   /* the SYN's sender opens the new flow */
		}
	}
	struct ct_zeek_dir *x = &z->dir[d & 1];
	z->last_ts = now;
	if (p->key.proto == IPPROTO_UDP) {
		ct_zeek_once(z, d, CT_ZH_DATA, 'D');
		x->state = CT_ZEEK_ACTIVE;
		x->payload += p->datalen;
		return;
	}
	p->zdir = d;
	ct_zeek_tcp(z, p);
}

/* A packet the tracker judged INVALID: left out of its counters, counted for conn.log. */
static __always_inline void ct_zeek_invalid(struct ct_zeek *z, struct ct_pkt *p, __u32 d)
{
	z->dir[d & 1].extra_pkts += 1;
	z->dir[d & 1].extra_bytes += p->ip_len;
}

/* Zeek's rules for the first packet of a new flow, which the tracker accepted: a SYN, a SYN/ACK
 * (flipped: from the responder), a mid-stream ACK, or a UDP datagram; every state is INACTIVE and
 * the record is empty. What ct_zeek_tcp does to such a packet, spelt out short: the new-flow
 * path would otherwise carry a second copy of it. */
static __always_inline void ct_zeek_first(struct ct_zeek *z, struct ct_pkt *p, __u32 d, __u64 now)
{
	struct ct_zeek_dir *ep = &z->dir[d & 1], *peer = &z->dir[(d ^ 1) & 1];
	z->last_ts = now;
	z->flags |= d ? CT_ZF_SEEN_REPLY : CT_ZF_SEEN_ORIG;
	if (p->key.proto == IPPROTO_UDP) {
		ct_zeek_once(z, d, CT_ZH_DATA, 'D');
		ep->state = CT_ZEEK_ACTIVE;
		ep->payload = p->datalen;
		return;
	}
	if ZF(TH_SYN) {
		/* S from the originator, or h from the responder of a flipped flow (its SYN/ACK) */
		ct_zeek_seqinit(ep, p->seq, p->seq + 1 + p->datalen);
		ct_zeek_once(z, d, CT_ZH_SYN, ZF(TH_ACK) ? 'H' : 'S');
		ep->state = d ? CT_ZEEK_ESTABLISHED : CT_ZEEK_SYN_SENT;
		if (d == CT_DIR_ORIG && ZF(TH_ACK))
			z->flags |= CT_ZF_PARTIAL;
	} else {
		/* a mid-stream ACK: as though a SYN came before */
		ct_zeek_seqinit(ep, p->seq - 1, p->seq + p->datalen);
		ct_zeek_once(z, d, ZV(p->datalen) ? CT_ZH_DATA : CT_ZH_ACK, ZV(p->datalen) ? 'D' : 'A');
		ep->state = CT_ZEEK_PARTIAL;
		z->flags |= CT_ZF_PARTIAL;
	}
	if (ZV(p->win) == 0)
		ct_zeek_scaled(z, d, ep->win0, 'W');
	if ZF(TH_ACK)
		ct_zeek_seqinit(peer, p->ack - 1, p->ack - 1);   /* init_peer */
	if (ZF(TH_SYN) && ZV(p->datalen))
		ct_zeek_scaled(z, d, ep->rxmt, 'T');   /* Zeek's SYN with data: last_seq already there */
	if (ZV(p->datalen))
		ep->reasm = 1 + p->datalen;
}

/* ---- Flow bookkeeping ------------------------------------------------------------------------ */
/* What a packet did to its flow, gathered under the lock and acted on after it (events, stats,
 * queue pushes need helper calls, which a held bpf_spin_lock forbids). */
struct ct_result {
	__u8 klass;
	__u8 reason;
	__u8 has_flow;
	__u8 created;        /* emit NEW */
	__u8 old_state;
	__u8 state;
	__u8 orig_state;
	__u8 reply_state;
	__u8 state_changed;  /* emit STATE */
	__u8 closed;         /* emit CLOSED with close_reason */
	__u8 close_reason;
	__u8 prev_closed;    /* the entry's previous flow left it (reopen or expiry): DESTROY with
	                      * this reason (NONE: a remover claimed the entry and reports it) */
	__u8 prev_count;     /* ... and had not ended before: counted (closed_timeout, reopened) */
	__u8 prev_remove;    /* ... and no new flow took the entry: this packet's path deletes it */
	__u8 prev_state;     /* the previous flow's states, for its DESTROY */
	__u8 prev_orig_state;
	__u8 prev_reply_state;
	__u8 prev_orig_side;
	__u8 push_evict;     /* put the key in the eviction queue */
	__u8 orig_side;
	__u8 ignored_syn;
	__u8 rst_challenged; /* an in-window RST off the receiver's RCV.NXT: passed, nothing closed */
	__u8 reopened;       /* an expired entry was reinitialised in place for this packet */
	__u64 first_seen;    /* the flow's, for its eviction queue item */
	__u32 len;           /* bytes for the statistics: IP length, or the frame's for non-IP */
	__u64 packets[2];
	__u64 bytes[2];
	__u64 prev_packets[2];
	__u64 prev_bytes[2];
	__u64 last_seen;     /* the flow's, for events */
	/* The flow that ended in this entry (expiry, reopen; ct_prev_end): its own times, and (in
	 * scratch) its Zeek record and RTT, for its DESTROY event and the replay's trace */
	__u64 prev_first_seen;
	__u64 prev_last_seen;
	__u8 prev_ended;     /* the entry was reinitialised: its previous flow is over */
	__u8 prev_close_reason;   /* how it ended (fin, rst, or prev_closed's reason) */
};
/* A packet's ct_result lives in per-CPU map memory, not on the stack. Why: the verifier tracks
 * every constant a stack slot holds, so each path through the TCP state machine that leaves
 * different flags in the result is a state of its own that the code after it is verified
 * again for; map memory holds unknown values, and those paths merge. On the stack, the RTT
 * update on top of the state machine took the verifier past its 1,000,000-instruction limit. */
BPF_PERCPU_ARRAY(results, struct ct_result, 1);


static __always_inline __u64 ct_timeout_ns(struct ct_entry *e)
{
	__u64 t;
	if (e->state == CT_STATE_NEW)
		return CT_TIMEOUT_UDP_NEW * NS_PER_SEC;
	if (e->dir[0].state == CT_TCP_NONE && e->dir[1].state == CT_TCP_NONE)
		return CT_TIMEOUT_UDP_ESTABLISHED * NS_PER_SEC;   /* UDP flows carry no TCP states */
	switch (e->state) {
	case CT_STATE_SYN_SENT: t = CT_TIMEOUT_SYN_SENT; break;
	case CT_STATE_SYN_RECV: t = CT_TIMEOUT_SYN_RECV; break;
	case CT_STATE_ESTABLISHED: t = CT_TIMEOUT_ESTABLISHED; break;
	case CT_STATE_FIN_WAIT: t = CT_TIMEOUT_FIN_WAIT; break;
	case CT_STATE_CLOSE_WAIT: t = CT_TIMEOUT_CLOSE_WAIT; break;
	case CT_STATE_LAST_ACK: t = CT_TIMEOUT_LAST_ACK; break;
	case CT_STATE_TIME_WAIT: t = CT_TIMEOUT_TIME_WAIT; break;
	case CT_STATE_SYN_SENT2: t = CT_TIMEOUT_SYN_SENT2; break;
	default: t = CT_TIMEOUT_CLOSE; break;
	}
	/* netfilter's "unacknowledged" timeout: data in flight that nobody acknowledges means a
	 * peer went away; do not keep such a flow for days. */
	if (((e->dir[0].flags | e->dir[1].flags) & CT_DF_UNACKED) && t > CT_TIMEOUT_UNACK)
		t = CT_TIMEOUT_UNACK;
	return t * NS_PER_SEC;
}

/* Overall state, netfilter's vocabulary, from the two endpoints' states. */
static __always_inline __u8 ct_tcp_overall(struct ct_entry *e)
{
	__u8 a = e->dir[CT_DIR_ORIG].state, b = e->dir[CT_DIR_REPLY].state;
	if (e->flags & CT_F_RESET)
		return CT_STATE_CLOSE;
	if (a == CT_TCP_SYN_SENT)
		return CT_STATE_SYN_SENT;
	if (a == CT_TCP_SYN_RECV && b == CT_TCP_SYN_RECV)
		return CT_STATE_SYN_SENT2;   /* both SYNs crossed: simultaneous open */
	if (a == CT_TCP_SYN_RECV || b == CT_TCP_SYN_RECV || b == CT_TCP_SYN_SENT)
		return CT_STATE_SYN_RECV;
	int a_done = a == CT_TCP_TIME_WAIT || a == CT_TCP_CLOSE;
	int b_done = b == CT_TCP_TIME_WAIT || b == CT_TCP_CLOSE;
	if (a_done && b_done)
		return CT_STATE_TIME_WAIT;
	__u8 fa = e->dir[CT_DIR_ORIG].flags, fb = e->dir[CT_DIR_REPLY].flags;
	if ((fa & CT_DF_FIN) && (fb & CT_DF_FIN))
		return CT_STATE_LAST_ACK;
	if ((fa | fb) & CT_DF_FIN)
		return ((fa | fb) & CT_DF_FIN_ACKED) ? CT_STATE_CLOSE_WAIT : CT_STATE_FIN_WAIT;
	return CT_STATE_ESTABLISHED;
}

/* A direction's first SYN: its initial sequence number, window and options. */
static __always_inline void ct_dir_init_syn_raw(struct ct_dir *d, __u32 seq, __u32 datalen, __u16 win,
						__u8 wscale, __u8 opts, __u16 mss)
{
	__u32 end = seq + datalen + 1;
	d->isn = seq;
	d->td_end = end;
	d->td_maxend = end;
	d->td_maxwin = win ? win : 1;   /* a SYN's window is never scaled */
	d->td_maxack = 0;
	d->fin_seq = 0;
	d->wscale = wscale;
	d->flags = CT_DF_SYN | opts;
	d->mss = mss;
}

static __always_inline void ct_dir_init_syn(struct ct_dir *d, struct ct_pkt *p)
{
	ct_dir_init_syn_raw(d, p->seq, p->datalen, p->win, p->wscale, p->opt_flags, p->mss);
}

/* The entry's flow is over and a new flow takes the entry, or the entry leaves the table
 * (why: TIMEOUT, REOPENED). Lock held. Its DESTROY is this packet's to report unless a remover
 * (collector, flush) claimed the entry first: that one reports it once its delete succeeds. Its
 * end is counted once: close_reason stays set until the entry is reinitialised. */
static __always_inline void ct_prev_end(struct ct_entry *e, struct ct_result *r, __u8 why)
{
	r->prev_closed = (e->flags & CT_F_DYING) ? CT_CLOSE_NONE : why;
	r->prev_count = e->close_reason == CT_CLOSE_NONE;
	if (e->close_reason == CT_CLOSE_NONE)
		e->close_reason = why;
	r->prev_packets[0] = e->dir[0].packets;
	r->prev_packets[1] = e->dir[1].packets;
	r->prev_bytes[0] = e->dir[0].bytes;
	r->prev_bytes[1] = e->dir[1].bytes;
	r->prev_state = e->state;
	r->prev_orig_state = e->dir[0].state;
	r->prev_reply_state = e->dir[1].state;
	r->prev_orig_side = e->orig_side;
	r->prev_first_seen = e->first_seen;
	r->prev_last_seen = e->last_seen;
	r->prev_close_reason = e->close_reason;
}

/* Resets an entry to "nothing known", keeping the lock word. */
static __always_inline void ct_flow_reset(struct ct_entry *e, __u8 orig_side, __u64 now)
{
	__builtin_memset(&e->dir, 0, sizeof(e->dir));
	__builtin_memset(&e->synopts, 0, sizeof(e->synopts));
	__builtin_memset(&e->rtt, 0, sizeof(e->rtt));
	e->orig_side = orig_side;
	e->flags = 0;
	e->close_reason = CT_CLOSE_NONE;
	e->ignored_dir = 0;
	e->ignored_seq = 0;
	e->ignored_win = 0;
	e->first_seen = now;
}

/* ---- SYN options summary and passive RTT ------------------------------------------------------- */
/* A SYN's options become direction d's (every place a SYN initialises a direction calls this;
 * the per-tracker counters follow after the lock, from p->synopts_dir, when `count`: not for an
 * opener's SYN with a new ISN, the same flow's). */
static __always_inline void ct_synopts_take(struct ct_entry *e, struct ct_pkt *p, __u32 d, int count)
{
#ifndef CT_NO_SYNOPTS
	e->synopts[d & 1] = p->synopts;
	if (count)
		p->synopts_dir = (d & 1) + 1;
#endif
}

#ifndef CT_NO_RTT
/* One sample of the half of the round trip through `half`'s endpoint, from t0 to now (ns):
 * last, minimum, and the smoothed value with RFC 6298's gain of 1/8, kept x8 as Linux keeps
 * srtt_us. A clock that went backwards or a sample above CT_RTT_MAX_US (a stale match) is
 * no sample. */
static __always_inline void ct_rtt_sample(struct ct_entry *e, struct ct_pkt *p, __u32 d, __u64 t0,
					  int handshake)
{
	struct ct_rtt *half = &e->rtt[d & 1], *other = &e->rtt[(d ^ 1) & 1];
	__u64 now = p->rtt_now;
	if (!now || now < t0 || now - t0 > (__u64)CT_RTT_MAX_US * 1000)
		return;   /* no clock read (see ct_rtt_arm), a clock gone backwards, a stale match */
	__u32 m = (now - t0) / 1000;
	if (handshake) {
		half->hs_us = m;
		half->flags |= CT_RTT_F_HANDSHAKE;
	}
	if (half->samples == 0) {
		half->srtt8_us = m << 3;
		half->min_us = m;
	} else {
		half->srtt8_us += (__s32)(m - (half->srtt8_us >> 3));
		if (m < half->min_us)
			half->min_us = m;
	}
	half->last_us = m;
	half->samples += 1;
	if (other->samples) {
		p->rtt_e2e_us = m + other->last_us;
		p->rtt_sampled = 1;
	}
}

static __always_inline void ct_rtt_arm(struct ct_rtt *me, __u8 mode, __u32 ref, __u64 now)
{
	if (!now)
		return;   /* no clock read: ct_rtt_wants_clock saw nothing to time (or lost a race) */
	me->mode = mode;
	me->ref = ref;
	me->t_ns = now;
}

/* Passive RTT, after a valid segment from direction d was applied (lock held). prev_* are the
 * sender's SYN flag, ISN and td_end before the segment (what tells a retransmission).
 *   1. Does it answer what the peer sent? Its ACK covering the peer's awaited end sequence (SYN,
 *      SYN/ACK, or a data segment of a flow without timestamps), or its TSecr echoing the peer's
 *      awaited TSval (ePPing): a sample of this side's half. A TSecr beyond the awaited TSval
 *      means its echo went by unseen: the wait ends without a sample.
 *   2. What does it send that the peer will answer? A SYN or SYN/ACK: its end (a retransmitted
 *      one cancels the wait, Karn: which copy the answer is for is unknown). With timestamps:
 *      a TSval on its first appearance only (later copies, retransmissions and duplicate ACKs
 *      carry it again). Without: new data's end sequence; a retransmission below the awaited
 *      end cancels the wait (Karn).
 * One thing awaited per direction: about a sample per round trip, which is what smoothing needs. */
static __always_inline void ct_rtt_update(struct ct_entry *e, struct ct_pkt *p, __u32 d,
					  __u8 prev_flags, __u32 prev_isn, __u32 prev_end)
{
	struct ct_rtt *me = &e->rtt[d & 1], *peer = &e->rtt[(d ^ 1) & 1];
	__u8 f = p->tcp_flags;
	__u64 now = p->rtt_now;
	if (f & TH_RST)
		return;
	int take = 0, hs = 0;
	if (peer->mode != CT_RTT_NONE && (f & TH_ACK)) {
		if (peer->mode == CT_RTT_TS) {
			if (p->has_ts && p->tsecr == peer->ref)
				take = 1;
			else if (p->has_ts && seq_after(p->tsecr, peer->ref))
				peer->mode = CT_RTT_NONE;
		} else if (!seq_before(p->ack, peer->ref)) {
			take = 1;
			hs = peer->mode == CT_RTT_HANDSHAKE;
		}
	}
	if (take) {   /* one copy of the sample code (the verifier's budget) */
		ct_rtt_sample(e, p, d, peer->t_ns, hs);
		peer->mode = CT_RTT_NONE;
	}
	int new_tsval = 0;
	if (p->has_ts && (!(me->flags & CT_RTT_F_TSVAL) || seq_after(p->tsval, me->ts_max))) {
		me->ts_max = p->tsval;
		me->flags |= CT_RTT_F_TSVAL;
		new_tsval = 1;
	}
	if (f & TH_SYN) {
		if ((prev_flags & CT_DF_SYN) && p->seq == prev_isn) {
			if (me->mode == CT_RTT_HANDSHAKE)
				me->mode = CT_RTT_NONE;
		} else {
			ct_rtt_arm(me, CT_RTT_HANDSHAKE, p->seq + 1, now);
		}
	} else if (p->has_ts) {
		if (new_tsval && me->mode == CT_RTT_NONE)
			ct_rtt_arm(me, CT_RTT_TS, p->tsval, now);
	} else {
		__u32 len = p->datalen + ((f & TH_FIN) ? 1 : 0);
		if (len) {
			__u32 end = p->seq + len;
			if (seq_after(end, prev_end)) {
				if (me->mode == CT_RTT_NONE)
					ct_rtt_arm(me, CT_RTT_SEQ, end, now);
			} else if (me->mode == CT_RTT_SEQ && seq_before(p->seq, me->ref)) {
				me->mode = CT_RTT_NONE;
			}
		}
	}
}

/* Would ct_rtt_update time anything in this segment (arm or sample)? Read without the lock, to
 * spare most segments the fine clock: a bulk transfer's segments repeat their TSval for a
 * millisecond and echo nothing awaited. Racing another CPU only loses a sample (no clock: the
 * update does nothing). */
static __always_inline int ct_rtt_wants_clock(struct ct_entry *e, struct ct_pkt *p)
{
	__u32 d = (p->side == e->orig_side) ? CT_DIR_ORIG : CT_DIR_REPLY;
	struct ct_rtt *me = &e->rtt[d & 1], *peer = &e->rtt[(d ^ 1) & 1];
	__u8 f = p->tcp_flags;
	if (f & (TH_SYN | TH_RST))
		return f & TH_SYN;
	if (peer->mode != CT_RTT_NONE && (f & TH_ACK)) {
		if (peer->mode == CT_RTT_TS ? (p->has_ts && p->tsecr == peer->ref)
					    : !seq_before(p->ack, peer->ref))
			return 1;
	}
	if (me->mode != CT_RTT_NONE)
		return 0;
	if (p->has_ts)
		return !(me->flags & CT_RTT_F_TSVAL) || p->tsval != me->ts_max;
	/* without timestamps: new data only (a retransmission is not timed) */
	__u32 len = p->datalen + ((f & TH_FIN) ? 1 : 0);
	return len && seq_after(p->seq + len, e->dir[d & 1].td_end);
}
#endif

/* (Re)starts the entry as a new flow opened by packet p: a SYN (TCP), a first datagram (UDP), or
 * a mid-stream ACK when pickup is on. Keeps the lock word, resets everything else. */
static __always_inline void ct_flow_init(struct ct_entry *e, struct ct_pkt *p, __u64 now)
{
	ct_flow_reset(e, p->side, now);
	if (p->key.proto == IPPROTO_UDP) {
		e->state = CT_STATE_NEW;
		return;
	}
	struct ct_dir *o = &e->dir[CT_DIR_ORIG];
	if ((ZV(p->tcp_flags) & (TH_SYN | TH_ACK)) == TH_SYN) {
		ct_dir_init_syn(o, p);
		ct_synopts_take(e, p, CT_DIR_ORIG, 1);
		o->state = CT_TCP_SYN_SENT;
		e->dir[CT_DIR_REPLY].state = CT_TCP_SYN_RECV;   /* assumes the SYN is delivered */
		e->state = CT_STATE_SYN_SENT;
	} else if (ZV(p->tcp_flags) & TH_SYN) {
		/* Pickup of a SYN/ACK whose SYN the tracker did not see: its receiver opened the
		 * connection (the flow is the other way round from this packet, Zeek's flip, its
		 * history's "^"). The opener's windows are learnt from its first segment. */
		e->orig_side = p->side ^ 1;
		struct ct_dir *r = &e->dir[CT_DIR_REPLY];
		ct_dir_init_syn(r, p);
		r->state = CT_TCP_SYN_RECV;
		o->state = CT_TCP_ESTABLISHED;
		o->td_end = p->ack;
		o->td_maxend = p->ack;
		e->flags = CT_F_PICKED_UP | CT_F_SEEN_REPLY;
		e->state = CT_STATE_SYN_RECV;
		e->zeek.flags |= CT_ZF_FLIPPED;
		e->zeek.history[0] = '^';
		e->zeek.hist_len = 1;
	} else {
		/* Mid-stream pickup: nothing is known of the windows or scaling, so the flow is
		 * checked liberally (no window checks), as netfilter's be_liberal does. */
		__u32 end = p->seq + p->datalen + ((p->tcp_flags & TH_FIN) ? 1 : 0);
		o->td_end = end;
		o->td_maxwin = p->win ? p->win : 1;
		o->td_maxend = end + o->td_maxwin;
		o->state = CT_TCP_ESTABLISHED;
		e->dir[CT_DIR_REPLY].state = CT_TCP_ESTABLISHED;
		e->dir[CT_DIR_REPLY].td_end = p->ack;
		e->dir[CT_DIR_REPLY].td_maxend = p->ack;
		e->flags = CT_F_PICKED_UP;   /* assured once the other side answers (netfilter) */
		e->state = CT_STATE_ESTABLISHED;
	}
#ifndef CT_NO_RTT
	/* what the opening segment awaits: its SYN's answer, or (picked up) its data's or TSval's;
	 * the update runs where ct_update's paths join (ct_entry_build: right after), with these
	 * inputs in the packet's scratch: one copy of it for the verifier, not one per caller */
	p->rtt_go = 1;
	p->rtt_init = 1;
	p->rtt_prev_flags = 0;
	p->rtt_prev_isn = 0;
	p->rtt_prev_end = p->seq;
#endif
}

/* A new entry for the flow packet p opens: its state, the packet's counters and times. */
static __always_inline void ct_entry_build(struct ct_entry *ne, struct ct_pkt *p, __u64 now)
{
	bpf_probe_read_kernel(&ne->zeek, sizeof(ne->zeek), &ct_sc(p)->zk_zero);   /* zeroes it */
	ct_flow_init(ne, p, now);
#ifndef CT_NO_RTT
	if (ZV(p->rtt_init))
		ct_rtt_update(ne, p, CT_DIR_ORIG, 0, 0, p->seq);
	p->rtt_init = 0;   /* done: a lost insert race goes on as an existing flow */
	p->rtt_go = 0;
#endif
	__u32 d = (p->side == ne->orig_side) ? CT_DIR_ORIG : CT_DIR_REPLY;
	ne->dir[d & 1].packets = 1;
	ne->dir[d & 1].bytes = p->ip_len;
	ne->last_seen = now;
	ne->expires = now + ct_timeout_ns(ne);
	ct_zeek_first(&ne->zeek, p, d, now);
}

/* Can this packet open a flow? */
static __always_inline int ct_can_open(struct ct_pkt *p)
{
	if (p->bad_flags)
		return 0;
	if (p->key.proto == IPPROTO_UDP)
		return 1;
	__u8 f = p->tcp_flags & (TH_SYN | TH_ACK | TH_RST | TH_FIN);
	if (f == TH_SYN)
		return 1;
#ifdef CT_PICKUP
	if (f == TH_ACK || f == (TH_SYN | TH_ACK))
		return 1;
#endif
	return 0;
}

/* What a RST from direction d does (RFC 5961 section 3, RFC 9293 3.10.7):
 *   CT_RST_CLOSE      it resets the connection;
 *   CT_RST_CHALLENGE  it is inside the receiver's window but not exactly at its RCV.NXT: an
 *                     established receiver answers it with a challenge ACK and carries on (Linux
 *                     tcp_validate_incoming); the real sender then resets with the exact number;
 *   CT_RST_OUTSIDE    outside the window (or, in SYN-SENT, not acknowledging the SYN): ignored.
 * The receiver's RCV.NXT is not on the wire; assuming what passed was delivered, it is what the
 * sender has sent (td_end) or, after a loss downstream, what the receiver last acknowledged
 * (td_maxack): either counts as exact. */
#define CT_RST_OUTSIDE 0
#define CT_RST_CLOSE 1
#define CT_RST_CHALLENGE 2
static __always_inline int ct_rst_check(struct ct_entry *e, struct ct_pkt *p, __u32 d)
{
	struct ct_dir *snd = &e->dir[d & 1], *rcv = &e->dir[(d ^ 1) & 1];
	__u32 seq = p->seq;
	if (e->flags & CT_F_PICKED_UP)
		return CT_RST_CLOSE;   /* windows unknown: nothing to check against */
	if (e->state == CT_STATE_SYN_SENT && d == CT_DIR_REPLY) {
		/* The answer to our SYN: sequence number ignored, ACK must cover the SYN. */
		return ((p->tcp_flags & TH_ACK) && !seq_before(p->ack, rcv->isn + 1) &&
			!seq_after(p->ack, rcv->td_end)) ? CT_RST_CLOSE : CT_RST_OUTSIDE;
	}
	/* A RST answering a segment that had not yet acknowledged the sender's FIN carries the
	 * FIN's own sequence number, one below what the receiver expects; Linux accepts it from a
	 * receiver in CLOSE_WAIT, LAST_ACK or CLOSING (tcp_reset_check). */
	if ((snd->flags & CT_DF_FIN) && seq == snd->fin_seq &&
	    (rcv->state == CT_TCP_CLOSE_WAIT || rcv->state == CT_TCP_LAST_ACK ||
	     rcv->state == CT_TCP_CLOSING))
		return CT_RST_CLOSE;
	int exact = seq == snd->td_end ||
		    ((rcv->flags & CT_DF_MAXACK_SET) && seq == rcv->td_maxack);
	/* The window: from what the receiver has acknowledged (or, if it never has, what the
	 * sender has sent) up to, not including, the right edge its window reached. */
	__u32 left = (rcv->flags & CT_DF_MAXACK_SET) ? rcv->td_maxack : snd->td_end;
	__u32 right = seq_after(snd->td_maxend, snd->td_end) ? snd->td_maxend : snd->td_end;
	if (seq_after(left, snd->td_end))
		left = snd->td_end;
	int inside = exact || (!seq_before(seq, left) && seq_before(seq, right));
	if (!inside)
		return CT_RST_OUTSIDE;
	/* A receiver still in the handshake (a request socket in SYN_RECV) or already gone
	 * (CLOSE) resets on any in-window RST; the others want the exact number. */
	if (exact || rcv->state == CT_TCP_SYN_RECV || rcv->state == CT_TCP_SYN_SENT ||
	    rcv->state == CT_TCP_CLOSE)
		return CT_RST_CLOSE;
	return CT_RST_CHALLENGE;
}

/* netfilter's window rules for a segment from direction d. Returns a reason when the segment
 * falls outside the windows, else updates them and returns CT_REASON_NONE. */
static __always_inline __u8 ct_tcp_window(struct ct_entry *e, struct ct_pkt *p, __u32 d)
{
	struct ct_dir *snd = &e->dir[d & 1], *rcv = &e->dir[(d ^ 1) & 1];
	__u8 f = p->tcp_flags;
	__u32 seq = p->seq;
	__u32 end = seq + p->datalen + ((f & TH_SYN) ? 1 : 0) + ((f & TH_FIN) ? 1 : 0);
	__u32 ack = p->ack;
	__u32 win = p->win;

	/* No ACK flag, or an RST with ACK number 0 (some stacks): treat as acknowledging all. */
	if (!(f & TH_ACK) || ((f & TH_RST) && ack == 0))
		ack = rcv->td_end;

	if (snd->td_maxwin == 0) {
		/* First segment from this side that was not a SYN (picked-up flow's other side). */
		snd->td_end = end;
		snd->td_maxwin = win ? win << snd->wscale : 1;
		snd->td_maxend = end + snd->td_maxwin;
		if (rcv->td_maxwin == 0) {
			rcv->td_end = ack;
			rcv->td_maxend = ack;
		}
	}

	if (!(e->flags & CT_F_PICKED_UP)) {
		__u32 maxackwin = snd->td_maxwin > CT_MAX_ACK_WINDOW_FLOOR ? snd->td_maxwin
									   : CT_MAX_ACK_WINDOW_FLOOR;
		/* I: does not start beyond what the receiver allowed. */
		if (seq_after(seq, snd->td_maxend))
			return CT_REASON_TCP_SEQ_WINDOW;
		/* II: does not end more than the receiver's window behind what was already sent. */
		if (!seq_after(end, snd->td_end - rcv->td_maxwin - 1))
			return CT_REASON_TCP_SEQ_WINDOW;
		/* III: acknowledges nothing the receiver has not sent. A receiver that sent a
		 * fragmented segment sent more than we saw: its peer's ACK, within the window,
		 * says how much. */
		if (seq_after(ack, rcv->td_end)) {
			if (!(rcv->flags2 & CT_DF2_FRAGMENTED) || seq_after(ack, rcv->td_maxend))
				return CT_REASON_TCP_ACK_WINDOW;
			rcv->td_end = ack;
			rcv->flags2 &= ~CT_DF2_FRAGMENTED;
		}
		/* IV: is not an acknowledgement from far in the past. */
		if (seq_before(ack, rcv->td_end - maxackwin))   /* a whole window back is fine: */
			return CT_REASON_TCP_ACK_WINDOW;           /* dup ACKs of a full window */
	}

	if (!(f & TH_SYN))
		win <<= snd->wscale;
	if (snd->td_maxwin < win)
		snd->td_maxwin = win;
	if (seq_after(end, snd->td_end)) {
		snd->td_end = end;
		snd->flags |= CT_DF_UNACKED;
	}
	if (p->fragmented)
		snd->flags2 |= CT_DF2_FRAGMENTED;
	if (f & TH_ACK) {
		if (!(snd->flags & CT_DF_MAXACK_SET) || seq_after(ack, snd->td_maxack))
			snd->td_maxack = ack;
		snd->flags |= CT_DF_MAXACK_SET;
	}
	/* Sent beyond the allowed edge (window probe, accepted liberally): widen the receiver. */
	if (rcv->td_maxwin != 0 && seq_after(end, snd->td_maxend))
		rcv->td_maxwin += end - snd->td_maxend;
	if (seq_after(ack + win, rcv->td_maxend - 1)) {
		rcv->td_maxend = ack + win;
		if (win == 0)
			rcv->td_maxend++;
	}
	if (ack == rcv->td_end)
		rcv->flags &= ~CT_DF_UNACKED;
	return CT_REASON_NONE;
}

/* Endpoint states after a valid, non-RST segment from direction d, assuming it is delivered.
 * The sender's state follows from what it sent; the receiver's from what it receives, its ACK
 * processed before its FIN, as a TCP does (RFC 9293 3.10.7.4). */
static __always_inline void ct_tcp_endpoints(struct ct_entry *e, struct ct_pkt *p, __u32 d)
{
	struct ct_dir *snd = &e->dir[d & 1], *rcv = &e->dir[(d ^ 1) & 1];
	__u8 f = p->tcp_flags;
	__u32 ack = p->ack;
	int new_fin = 0;

	if ((f & TH_FIN) && !(snd->flags & CT_DF_FIN)) {
		new_fin = 1;
		snd->flags |= CT_DF_FIN;
		snd->fin_seq = p->seq + p->datalen;
		if (snd->state == CT_TCP_ESTABLISHED || snd->state == CT_TCP_SYN_RECV) {
			snd->state = CT_TCP_FIN_WAIT1;
		} else if (snd->state == CT_TCP_CLOSE_WAIT) {
			/* It was taken to be in CLOSE_WAIT after the peer's FIN. If this FIN does not
			 * acknowledge that FIN, the two FINs crossed: it sent its own from FIN_WAIT1,
			 * then received the peer's, so it is CLOSING. */
			if ((f & TH_ACK) && (rcv->flags & CT_DF_FIN) && !seq_before(ack, rcv->fin_seq + 1))
				snd->state = CT_TCP_LAST_ACK;
			else
				snd->state = CT_TCP_CLOSING;
		}
	}

	if (f & TH_ACK) {
		/* The receiver's SYN acknowledged. */
		if (rcv->state == CT_TCP_SYN_RECV && (rcv->flags & CT_DF_SYN) &&
		    !seq_before(ack, rcv->isn + 1))
			rcv->state = CT_TCP_ESTABLISHED;
		else if (rcv->state == CT_TCP_SYN_SENT && (f & TH_SYN))
			rcv->state = CT_TCP_ESTABLISHED;
		/* The receiver's FIN acknowledged. */
		if ((rcv->flags & CT_DF_FIN) && !(rcv->flags & CT_DF_FIN_ACKED) &&
		    !seq_before(ack, rcv->fin_seq + 1)) {
			rcv->flags |= CT_DF_FIN_ACKED;
			if (rcv->state == CT_TCP_FIN_WAIT1)
				rcv->state = CT_TCP_FIN_WAIT2;
			else if (rcv->state == CT_TCP_CLOSING)
				rcv->state = CT_TCP_TIME_WAIT;
			else if (rcv->state == CT_TCP_LAST_ACK)
				rcv->state = CT_TCP_CLOSE;
		}
	} else if ((f & TH_SYN) && rcv->state == CT_TCP_SYN_SENT) {
		rcv->state = CT_TCP_SYN_RECV;   /* simultaneous open: a bare SYN meets our SYN */
	}

	if (new_fin) {
		if (rcv->state == CT_TCP_ESTABLISHED || rcv->state == CT_TCP_SYN_RECV)
			rcv->state = CT_TCP_CLOSE_WAIT;
#ifndef CT_TEST_SKIP_CLOSING   /* test-only: a broken build for ctrack-report's own test */
		else if (rcv->state == CT_TCP_FIN_WAIT1)
			rcv->state = CT_TCP_CLOSING;
#endif
		else if (rcv->state == CT_TCP_FIN_WAIT2)
			rcv->state = CT_TCP_TIME_WAIT;
	}
}

/* Restarts the flow from a SYN that was set aside earlier (CT_F_IGNORED_SYN) and that the peer
 * has now answered with a matching SYN/ACK (direction d): the old connection is gone. */
static __always_inline void ct_restart_from_ignored(struct ct_entry *e, __u32 d, __u64 now)
{
	__u8 opener_side = (d == CT_DIR_REPLY) ? e->orig_side : e->orig_side ^ 1;
	__u32 seq = e->ignored_seq;
	__u16 win = e->ignored_win, mss = e->ignored_mss;
	__u8 ws = e->ignored_wscale, opts = e->ignored_opts;
	ct_flow_reset(e, opener_side, now);
	ct_dir_init_syn_raw(&e->dir[CT_DIR_ORIG], seq, 0, win, ws, opts, mss);
	e->dir[CT_DIR_ORIG].state = CT_TCP_SYN_SENT;
	e->dir[CT_DIR_REPLY].state = CT_TCP_SYN_RECV;
	e->state = CT_STATE_SYN_SENT;
}

/* A TCP segment for an existing entry, lock held. d is the packet's direction. */
static __always_inline void ct_tcp_existing(struct ct_entry *e, struct ct_pkt *p, __u32 d, __u64 now,
					    struct ct_result *r)
{
	__u8 f = p->tcp_flags & (TH_SYN | TH_ACK | TH_RST | TH_FIN);
	struct ct_dir *snd = &e->dir[d & 1], *rcv = &e->dir[(d ^ 1) & 1];
	__u8 st = e->state;
	int late_rst = 0;   /* a RST to a finished connection, judged by the window rules below */

	r->klass = CT_CLASS_ESTABLISHED;

	/* A SYN on a finished connection (TIME_WAIT, or reset) reuses the ports: a new flow,
	 * opened by whichever side sent it (RFC 9293 3.10.7.4, RFC 6191). */
	if (f == TH_SYN && (st == CT_STATE_TIME_WAIT || st == CT_STATE_CLOSE)) {
		ct_prev_end(e, r, CT_CLOSE_REOPENED);
		r->prev_ended = 1;   /* the entry restarts: the replay's record of the old flow */
		ct_flow_init(e, p, now);
		r->klass = CT_CLASS_NEW;
		r->created = 1;
		return;
	}
	if (e->flags & CT_F_RESET) {
		/* Reset: the connection is over for the tracker and only a new SYN (above) opens
		 * the 5-tuple again. Segments still in flight, the answers they draw and the RSTs
		 * those draw in turn pass when they fit the windows, and change nothing (netfilter's
		 * CLOSE takes ACK, FIN and RST the same way). Dropping them would be worse than
		 * useless: when the RST the tracker believed did not reset the receiver (lost after
		 * the tracker, or off its exact RCV.NXT), these are what finally close it. RSTs
		 * too take the window rules, not RFC 5961's exact match: the aborted side answers
		 * every late ACK with a RST at that ACK's number, and the receiver sorts them out. */
		if (f & TH_SYN) {
			r->klass = CT_CLASS_INVALID;
			r->reason = CT_REASON_TCP_UNEXPECTED;
			return;
		}
		/* A side that never sent a packet the tracker took (the responder refused a SYN
		 * with a RST: its RST sets no window) has no window for anything to fit. */
		if (snd->td_maxwin == 0 && !(e->flags & CT_F_PICKED_UP)) {
			r->klass = CT_CLASS_INVALID;
			r->reason = CT_REASON_TCP_SEQ_WINDOW;
			return;
		}
		/* the window rules below, and no endpoint moves */
	} else if ((f & TH_RST) && st == CT_STATE_SYN_SENT && d == CT_DIR_ORIG &&
		   (e->flags & CT_F_IGNORED_ACK) && p->seq == e->ignored_seq) {
		/* The opener's RST answering that challenge ACK: it resets the responder's old
		 * connection; the opener stays in SYN_SENT and retransmits its SYN. */
		e->flags &= ~CT_F_IGNORED_ACK;
		return;
	} else if (f & TH_RST) {
		int rst = ct_rst_check(e, p, d);
		if (rst == CT_RST_OUTSIDE && st == CT_STATE_TIME_WAIT) {
			/* The connection is over: a RST behind the TIME_WAIT side's RCV.NXT is the
			 * closed side answering a late, reordered ACK with that ACK's number, which
			 * TIME_WAIT ignores (tcp_timewait_state_process). Judged by the window rules
			 * like netfilter, passed, and nothing changes. */
			late_rst = 1;
		} else if (rst == CT_RST_OUTSIDE) {
			r->klass = CT_CLASS_INVALID;
			r->reason = CT_REASON_TCP_RST_WINDOW;
			return;
		} else if (rst == CT_RST_CHALLENGE) {
			/* Passed (the receiver's challenge ACK is what exposes a blind RST, and what a
			 * genuine sender answers); the connection stands, as netfilter keeps it. */
			r->rst_challenged = 1;
			return;
		} else {
			snd->state = CT_TCP_CLOSE;
			rcv->state = CT_TCP_CLOSE;
			e->flags |= CT_F_RESET;
			return;
		}
	}

	if (f == TH_SYN) {
		if (st == CT_STATE_SYN_SENT && d == CT_DIR_ORIG) {
			/* Retransmitted SYN; a different ISN means the opener started over. */
			if (p->seq != snd->isn) {
				ct_dir_init_syn(snd, p);
				ct_synopts_take(e, p, d, 0);
				snd->state = CT_TCP_SYN_SENT;
			}
			return;
		}
		if (st == CT_STATE_SYN_SENT && d == CT_DIR_REPLY) {
			/* Simultaneous open: the responder's own SYN. */
			ct_dir_init_syn(snd, p);
			ct_synopts_take(e, p, d, 1);
			if (!((snd->flags & rcv->flags) & CT_DF_WSCALE))
				snd->wscale = rcv->wscale = 0;
			ct_tcp_endpoints(e, p, d);
			return;
		}
		if ((snd->flags & CT_DF_SYN) && p->seq == snd->isn &&
		    (st == CT_STATE_SYN_RECV || st == CT_STATE_SYN_SENT2))
			return;   /* retransmission during the handshake */
		/* A SYN inside a live connection: the peer may have restarted without us seeing the
		 * end of the old one. netfilter's answer: let it through, remember it, and restart
		 * the flow if the other side answers it with a SYN/ACK. */
		e->flags |= CT_F_IGNORED_SYN;
		e->ignored_dir = d;
		e->ignored_seq = p->seq;
		e->ignored_win = p->win;
		e->ignored_wscale = p->wscale;
		e->ignored_opts = p->opt_flags;
		e->ignored_mss = p->mss;
		r->ignored_syn = 1;
		return;
	}

	if (f == (TH_SYN | TH_ACK)) {
		if ((e->flags & CT_F_IGNORED_SYN) && d != e->ignored_dir && p->ack == e->ignored_seq + 1) {
			ct_prev_end(e, r, CT_CLOSE_REOPENED);
			r->prev_ended = 1;
			ct_restart_from_ignored(e, d, now);
			r->created = 1;
			r->klass = CT_CLASS_NEW;
			/* fall through to handle the SYN/ACK on the new flow */
			st = e->state;
			d = (e->orig_side == p->side) ? CT_DIR_ORIG : CT_DIR_REPLY;
			snd = &e->dir[d & 1];
			rcv = &e->dir[(d ^ 1) & 1];
		}
		if (st == CT_STATE_SYN_SENT && d == CT_DIR_REPLY) {
			if (seq_before(p->ack, rcv->isn + 1) || seq_after(p->ack, rcv->td_end)) {
				r->klass = CT_CLASS_INVALID;
				r->reason = CT_REASON_TCP_BAD_SYNACK;
				return;
			}
			ct_dir_init_syn(snd, p);
			ct_synopts_take(e, p, d, 1);
			if (!((snd->flags & rcv->flags) & CT_DF_WSCALE))
				snd->wscale = rcv->wscale = 0;
		} else if (st == CT_STATE_SYN_SENT2) {
			/* Simultaneous open: each side's SYN/ACK must acknowledge the other's SYN. */
			if (!(rcv->flags & CT_DF_SYN) || seq_before(p->ack, rcv->isn + 1) ||
			    seq_after(p->ack, rcv->td_end) || p->seq != snd->isn) {
				r->klass = CT_CLASS_INVALID;
				r->reason = CT_REASON_TCP_BAD_SYNACK;
				return;
			}
		} else if (st == CT_STATE_SYN_RECV && rcv->state == CT_TCP_SYN_RECV &&
			   (snd->flags & CT_DF_SYN) && p->seq == snd->isn) {
			/* simultaneous open, the second SYN/ACK (its receiver still waits for one):
			 * checked by the window rules below */
		} else if ((snd->flags & CT_DF_SYN) && p->seq == snd->isn && d == CT_DIR_REPLY &&
			   (rcv->flags & CT_DF_SYN) && p->ack == rcv->isn + 1) {
			return;   /* retransmitted SYN/ACK: the final ACK was lost */
		} else {
			r->klass = CT_CLASS_INVALID;
			r->reason = CT_REASON_TCP_UNEXPECTED;
			return;
		}
	} else if (st == CT_STATE_SYN_SENT) {
		/* Before any answer to the SYN only the opener's retransmissions and the responder's
		 * SYN, SYN/ACK or RST make sense -- and one ACK: a responder still holding an older
		 * connection of these ports (its RST lost, or a TIME_WAIT the new ISN does not
		 * clear) answers the SYN with a challenge ACK (RFC 5961 section 4), the opener answers
		 * that with a RST at its ACK number (RFC 9293 3.10.7.3), and that RST is what frees
		 * the ports. It passes, changes nothing, and is remembered for that RST. */
		if (d == CT_DIR_REPLY && f == TH_ACK && p->datalen == 0) {
			e->flags |= CT_F_IGNORED_ACK;
			e->ignored_seq = p->ack;
			return;
		}
		r->klass = CT_CLASS_INVALID;
		r->reason = CT_REASON_TCP_UNEXPECTED;
		return;
	}

	__u8 why = ct_tcp_window(e, p, d);
	if (why) {
		r->klass = CT_CLASS_INVALID;
		r->reason = late_rst ? CT_REASON_TCP_RST_WINDOW : why;
		return;
	}
	if (!(e->flags & CT_F_RESET) && !late_rst)
		ct_tcp_endpoints(e, p, d);
}

/* ---- Events ----------------------------------------------------------------------------------- */
/* Fills an event (or the replay's record of an ended flow) from a packet's result: the flow now,
 * or (prev) the flow that ended in the entry. */
static __always_inline void ct_fill_event(struct ct_event *ev, __u8 type, struct ct_key *key,
					  struct ct_result *r, struct ct_scratch *sc,
					  struct ct_zeek *zsrc, __u64 now, __u8 close_reason, int prev)
{
	ev->ts = now;
	ev->key = *key;
	ev->type = type;
	ev->old_state = r->old_state;
	ev->close_reason = close_reason;
	ev->pad = 0;
	if (prev) {
		ev->old_state = 0;
		ev->state = r->prev_state;
		ev->orig_state = r->prev_orig_state;
		ev->reply_state = r->prev_reply_state;
		ev->orig_side = r->prev_orig_side;
		ev->packets[0] = r->prev_packets[0];
		ev->packets[1] = r->prev_packets[1];
		ev->bytes[0] = r->prev_bytes[0];
		ev->bytes[1] = r->prev_bytes[1];
		ev->first_seen = r->prev_first_seen;
		ev->last_seen = r->prev_last_seen;
		bpf_probe_read_kernel(&ev->zeek, sizeof(ev->zeek), &sc->zk_prev);
	} else {
		ev->state = r->state;
		ev->orig_state = r->orig_state;
		ev->reply_state = r->reply_state;
		ev->orig_side = r->orig_side;
		ev->packets[0] = r->packets[0];
		ev->packets[1] = r->packets[1];
		ev->bytes[0] = r->bytes[0];
		ev->bytes[1] = r->bytes[1];
		ev->first_seen = r->first_seen;
		ev->last_seen = r->last_seen;
		/* the flow's record as it is (read without its lock: an event may, rarely, show
		 * a packet of another CPU half applied); a helper call, not 30 copies, for the
		 * verifier's sake */
		if (zsrc)
			bpf_probe_read_kernel(&ev->zeek, sizeof(ev->zeek), zsrc);
		else
			bpf_probe_read_kernel(&ev->zeek, sizeof(ev->zeek), &sc->zk_zero);
	}
	/* the flow's RTT in its end events (set in scratch just before: see ct_rtt_summarise's
	 * callers), none in the others */
	if (type == CT_EVENT_CLOSED || type == CT_EVENT_DESTROY)
		ev->rtt = prev ? sc->prev_rtt_sum : sc->rtt_sum;
	else
		__builtin_memset(&ev->rtt, 0, sizeof(ev->rtt));
}

static __always_inline void ct_emit(__u8 type, struct ct_key *key, struct ct_result *r,
				    struct ct_scratch *sc, struct ct_zeek *zsrc, __u64 now,
				    __u8 close_reason, int prev)
{
#ifndef CT_NO_EVENTS
	struct ct_event *ev = events.ringbuf_reserve(sizeof(struct ct_event));
	if (!ev) {
		stat_inc(CT_STAT_EVENTS_LOST);
		return;
	}
	ct_fill_event(ev, type, key, r, sc, zsrc, now, close_reason, prev);
#ifndef CT_REPLAY
	/* Events are rare (state changes only), so they can afford the precise clock, read here
	 * and nowhere else: the per-packet path keeps ct_now()'s coarse one, whose jiffy would
	 * give a whole handshake's events one time. Both count CLOCK_MONOTONIC. */
	ev->ts = bpf_ktime_get_ns();
#endif
	events.ringbuf_submit(ev, 0);
#endif
}

/* After a flow's packet was handled under the lock: the part that needs helper calls. */
static __always_inline void ct_after(struct ct_key *key, struct ct_result *r,
				     struct ct_scratch *sc, __u64 now)
{
	struct ct_zeek *zsrc = (struct ct_zeek *)(long)sc->zsrc;   /* read with a helper only */
	/* The previous flow of the entry: DESTROY once, by whoever removed or reused the entry. */
	int gone = 0;
	if (r->prev_count)
		stat_inc(r->prev_closed == CT_CLOSE_REOPENED ? CT_STAT_REOPENED : CT_STAT_CLOSED_TIMEOUT);
	if (r->prev_closed && (!r->prev_remove || flows.delete(key) == 0)) {
		gone = 1;
		ct_emit(CT_EVENT_DESTROY, key, r, sc, zsrc, now, r->prev_closed, 1);
	}
#ifdef CT_REPLAY
	if (r->prev_ended || gone) {
		/* the replay writes one record per connection (ctrack replay -o zeek): this one's */
		__u32 z = 0;
		struct ct_trace *t = trace.lookup(&z);
		if (t) {
			t->has_ended = 1;
			ct_fill_event(&t->ended, CT_EVENT_DESTROY, key, r, sc, zsrc, now,
				      r->prev_close_reason, 1);
		}
	}
#endif
	struct ct_evict_item item = {.key = *key, .first_seen = r->first_seen};
	if (r->created) {
		stat_inc(CT_STAT_FLOWS_CREATED);
		evict_queue.push(&item, BPF_EXIST);
		ct_emit(CT_EVENT_NEW, key, r, sc, zsrc, now, 0, 0);
	} else if (r->state_changed) {
		ct_emit(CT_EVENT_STATE, key, r, sc, zsrc, now, 0, 0);
	}
	if (r->closed) {
		stat_inc(r->close_reason == CT_CLOSE_RST ? CT_STAT_CLOSED_RST : CT_STAT_CLOSED_FIN);
		ct_emit(CT_EVENT_CLOSED, key, r, sc, zsrc, now, r->close_reason, 0);
	}
	if (r->push_evict)
		evict_queue.push(&item, BPF_EXIST);
	if (r->ignored_syn)
		stat_inc(CT_STAT_IGNORED_SYN);
	if (r->rst_challenged)
		stat_inc(CT_STAT_RST_CHALLENGED);
}

/* log2 bucket of v as BCC's bpf_log2l numbers them: 0 for 0, else floor(log2(v)) + 1; the last
 * slot takes everything above. */
static __always_inline __u32 ct_log2_bucket(__u32 v)
{
	if (!v)
		return 0;
	__u32 b = 1;
	if (v >> 16) { v >>= 16; b += 16; }
	if (v >> 8) { v >>= 8; b += 8; }
	if (v >> 4) { v >>= 4; b += 4; }
	if (v >> 2) { v >>= 2; b += 2; }
	if (v >> 1) b += 1;
	return b < CT_RTT_HIST_SLOTS ? b : CT_RTT_HIST_SLOTS - 1;
}

/* After ct_after: the per-tracker counters of SYN options and the RTT histogram. */
static __always_inline void ct_after_extras(struct ct_pkt *p)
{
#if !defined(CT_NO_RTT) || !defined(CT_NO_SYNOPTS)
	struct ct_stats *st;
#endif
#ifndef CT_NO_SYNOPTS
	if (p->synopts_dir) {
		st = stats_get();
		if (st) {
			__u32 base = p->synopts_dir == 1 ? CT_STAT_OPT_ORIG : CT_STAT_OPT_REPLY;
#pragma unroll
			for (int i = 0; i < CT_TCPOPT_MAX; i++)
				if (p->synopts.named & (1 << i))
					st->v[base + i] += 1;
		}
	}
#endif
#ifndef CT_NO_RTT
	if (p->rtt_sampled) {
		st = stats_get();
		if (st) {
			st->v[CT_STAT_RTT_HIST + ct_log2_bucket(p->rtt_e2e_us)] += 1;
			st->v[CT_STAT_RTT_SUM_US] += p->rtt_e2e_us;
		}
	}
#endif
}

static __always_inline int ct_closing_state(__u8 s)
{
	return s == CT_STATE_FIN_WAIT || s == CT_STATE_CLOSE_WAIT || s == CT_STATE_LAST_ACK ||
	       s == CT_STATE_TIME_WAIT || s == CT_STATE_CLOSE;
}

/* Does this segment restart the flow in a live entry (lock held, d its direction)? The state
 * machine decides it below (ct_tcp_existing); Zeek's record must restart first: 1 for a SYN on a
 * finished connection (TIME_WAIT, or reset), 2 for the SYN/ACK answering a SYN remembered inside
 * a live connection (restarted from that SYN). */
static __always_inline __u8 ct_zeek_restarts(struct ct_entry *e, struct ct_pkt *p, __u32 d)
{
	__u8 f = p->tcp_flags & (TH_SYN | TH_ACK | TH_RST | TH_FIN);
	if (p->key.proto != IPPROTO_TCP || p->bad_flags)
		return 0;
	if (f == TH_SYN && (e->state == CT_STATE_TIME_WAIT || e->state == CT_STATE_CLOSE))
		return 1;
	if (f == (TH_SYN | TH_ACK) && !(e->flags & CT_F_RESET) && (e->flags & CT_F_IGNORED_SYN) &&
	    d != e->ignored_dir && p->ack == e->ignored_seq + 1) {
		p->zseed = e->ignored_seq;
		return 2;
	}
	return 0;
}

/* Handles a tracked packet for entry e (lock taken here). */
static __always_inline void ct_update(struct ct_entry *e, struct ct_pkt *p, __u64 now,
				      struct ct_result *r)
{
	bpf_spin_lock(&e->lock);
	if (now >= e->expires) {
		/* Expired: the entry counts as absent. Its flow ends here (once), and the packet
		 * opens a new one if it can. */
		ct_prev_end(e, r, CT_CLOSE_TIMEOUT);
		r->state = e->state;
		r->orig_state = e->dir[0].state;
		r->reply_state = e->dir[1].state;
		r->orig_side = e->orig_side;
		ct_rtt_summarise(e, &ct_scratch_of(p)->prev_rtt_sum);
		ct_zeek_prev(ct_sc(p), &e->zeek);   /* for its DESTROY, and the replay's record */
		if (!ct_can_open(p)) {
			/* Nothing takes the entry: it leaves the table now (ct_after deletes it),
			 * unless a remover claimed it already. */
			r->prev_remove = !(e->flags & CT_F_DYING);
			e->flags |= CT_F_DYING;
			bpf_spin_unlock(&e->lock);
			r->klass = CT_CLASS_INVALID;
			r->reason = p->bad_flags ? CT_REASON_TCP_BAD_FLAGS : CT_REASON_TCP_NO_FLOW;
			return;
		}
		r->prev_ended = 1;   /* the entry is reused: the replay's record of the old flow */
		__builtin_memset(&e->zeek, 0, sizeof(e->zeek));
		ct_flow_init(e, p, now);
		r->klass = CT_CLASS_NEW;
		r->created = 1;
		r->reopened = 1;
	} else {
		r->old_state = e->state;
		p->zrestart = ct_zeek_restarts(e, p, (p->side == e->orig_side) ? CT_DIR_ORIG : CT_DIR_REPLY);
	}
	/* Zeek sees every packet of the flow, valid or not, and before the state machine: its many
	 * paths need not each be followed through Zeek's rules (the verifier's budget). A flow the
	 * state machine is about to restart gets a new record here (p->zrestart). */
	ct_zeek_update(&e->zeek, p, (p->side == e->orig_side) ? CT_DIR_ORIG : CT_DIR_REPLY, now);
	if (!r->reopened) {
		__u32 d = (p->side == e->orig_side) ? CT_DIR_ORIG : CT_DIR_REPLY;
		if (p->bad_flags) {
			r->klass = CT_CLASS_INVALID;
			r->reason = CT_REASON_TCP_BAD_FLAGS;
		} else if (p->key.proto == IPPROTO_UDP) {
			r->klass = CT_CLASS_ESTABLISHED;
			if (d == CT_DIR_REPLY && !(e->flags & CT_F_SEEN_REPLY)) {
				e->flags |= CT_F_ASSURED;
				e->state = CT_STATE_ESTABLISHED;
			}
		} else {
#ifndef CT_NO_RTT
			/* what tells ct_rtt_update a retransmission, before the segment moves it */
			p->rtt_prev_flags = e->dir[d & 1].flags;
			p->rtt_prev_isn = e->dir[d & 1].isn;
			p->rtt_prev_end = e->dir[d & 1].td_end;
			p->rtt_go = 1;
#endif
			if (p->tcp_flags & TH_SYN)   /* it may end the flow and open another */
				ct_rtt_summarise(e, &ct_scratch_of(p)->prev_rtt_sum);
			ct_tcp_existing(e, p, d, now, r);
		}
	}

	r->has_flow = 1;
#ifndef CT_NO_RTT
	/* a flow (re)started by this packet (p->rtt_init, ct_flow_init), or a valid segment */
	if (ZV(p->rtt_go) && (ZV(p->rtt_init) || (r->klass != CT_CLASS_INVALID && !r->created)))
		ct_rtt_update(e, p, ZV(p->rtt_init) ? CT_DIR_ORIG :
			      (p->side == e->orig_side) ? CT_DIR_ORIG : CT_DIR_REPLY,
			      ZV(p->rtt_prev_flags), ZV(p->rtt_prev_isn), ZV(p->rtt_prev_end));
#endif
	if (r->klass != CT_CLASS_INVALID) {
		/* A remembered SYN restarts the flow only if its SYN/ACK is the connection's very
		 * next packet (netfilter's rule): once anything else passed -- the peer's challenge
		 * ACK above all -- the old connection stands, and a SYN/ACK later is no answer to it
		 * (a blind attacker's, which would otherwise take the flow over). */
		if (!r->ignored_syn && !r->created)
			e->flags &= ~CT_F_IGNORED_SYN;
		__u32 d = (p->side == e->orig_side) ? CT_DIR_ORIG : CT_DIR_REPLY;
		if (d == CT_DIR_REPLY)
			e->flags |= CT_F_SEEN_REPLY;
		if (p->key.proto == IPPROTO_TCP) {
			e->state = ct_tcp_overall(e);
			/* a picked-up flow is ESTABLISHED from its first ACK, but assured (safe from
			 * eviction) only once the other side has answered */
			if (e->state == CT_STATE_ESTABLISHED && (e->flags & CT_F_SEEN_REPLY))
				e->flags |= CT_F_ASSURED;
		}
		e->dir[d & 1].packets += 1;
		e->dir[d & 1].bytes += p->ip_len;
		e->last_seen = now;
		e->expires = now + ct_timeout_ns(e);
		if (!r->created && e->state != r->old_state)
			r->state_changed = 1;
		if (e->close_reason == CT_CLOSE_NONE) {
			if (e->flags & CT_F_RESET) {
				e->close_reason = CT_CLOSE_RST;
				r->closed = 1;
			} else if (e->state == CT_STATE_TIME_WAIT) {
				e->close_reason = CT_CLOSE_FIN;
				r->closed = 1;
			}
			if (r->closed)
				ct_rtt_summarise(e, &ct_scratch_of(p)->rtt_sum);
			r->close_reason = e->close_reason;
		}
		if (ct_closing_state(e->state) && !(e->flags & CT_F_EVICT_QUEUED)) {
			e->flags |= CT_F_EVICT_QUEUED;
			r->push_evict = 1;
		}
	}
	if (r->klass == CT_CLASS_INVALID)
		ct_zeek_invalid(&e->zeek, p, (p->side == e->orig_side) ? CT_DIR_ORIG : CT_DIR_REPLY);
	r->state = e->state;
	r->orig_state = e->dir[0].state;
	r->reply_state = e->dir[1].state;
	r->orig_side = e->orig_side;
	r->first_seen = e->first_seen;
	r->last_seen = e->last_seen;
	r->packets[0] = e->dir[0].packets;
	r->packets[1] = e->dir[1].packets;
	r->bytes[0] = e->dir[0].bytes;
	r->bytes[1] = e->dir[1].bytes;
	bpf_spin_unlock(&e->lock);
}

/* An evicted flow leaves the table: its final record copied out under its lock, then the
 * delete; whoever's delete succeeds reports it (DESTROY, reason evicted), once. In replay builds
 * its record goes to the trace too (ctrack replay -o zeek: one row per connection). */
static __always_inline int ct_evicted(struct ct_key *key, struct ct_entry *c, __u64 now)
{
	struct ct_result r = {};
	__u32 z = 0;
	struct ct_scratch *sc = scratch.lookup(&z);
	if (!sc)
		return 0;
	bpf_spin_lock(&c->lock);
	r.prev_packets[0] = c->dir[0].packets;
	r.prev_packets[1] = c->dir[1].packets;
	r.prev_bytes[0] = c->dir[0].bytes;
	r.prev_bytes[1] = c->dir[1].bytes;
	r.prev_state = c->state;
	r.prev_orig_state = c->dir[0].state;
	r.prev_reply_state = c->dir[1].state;
	r.prev_orig_side = c->orig_side;
	r.prev_first_seen = c->first_seen;
	r.prev_last_seen = c->last_seen;
	r.prev_close_reason = c->close_reason ? c->close_reason : CT_CLOSE_EVICTED;
	ct_zeek_prev(sc, &c->zeek);
	ct_rtt_summarise(c, &sc->prev_rtt_sum);
	bpf_spin_unlock(&c->lock);
	if (flows.delete(key) != 0)
		return 0;   /* another CPU (or the collector) removed it first: theirs to report */
	stat_inc(CT_STAT_EVICTED);
#ifdef CT_REPLAY
	struct ct_trace *t = trace.lookup(&z);
	if (t) {
		t->has_ended = 1;
		ct_fill_event(&t->ended, CT_EVENT_DESTROY, key, &r, sc, NULL, now, r.prev_close_reason, 1);
	}
#endif
	ct_emit(CT_EVENT_DESTROY, key, &r, sc, NULL, now, CT_CLOSE_EVICTED, 1);
	return 1;
}

/* Table full: try a few eviction candidates. A candidate goes if its flow expired, never
 * completed its handshake / got a reply, or is closing -- netfilter's early-drop choice. A live,
 * assured flow is never evicted. The check reads the entry without its lock: a packet racing
 * it can at worst see a closing or unassured flow evicted, which was evictable anyway. */
static __always_inline int ct_evict_one(__u64 now)
{
	struct ct_evict_item it;
	struct ct_entry *c = NULL;
	for (int i = 0; i < CT_EVICT_TRIES; i++) {
		if (evict_queue.pop(&it))
			return 0;
		c = flows.lookup(&it.key);
		if (!c || c->first_seen != it.first_seen) {
			c = NULL;
			continue;   /* removed, or reopened since: a later item stands for it */
		}
		if (now >= c->expires || !(c->flags & CT_F_ASSURED) || ct_closing_state(c->state))
			break;
		/* Live and assured: not now, but it may expire or close later; back of the queue
		 * (dropping it would leave the flow out of reach of eviction for good). */
		evict_queue.push(&it, BPF_EXIST);
		c = NULL;
	}
	if (!c)
		return 0;
	/* its end (event, replay record) out of the loop: one copy of that code, not eight */
	return ct_evicted(&it.key, c, now);
}

/* ---- The packet path -------------------------------------------------------------------------- */
/* An ICMP error about a flow: RELATED when the table has the flow (and, for TCP, the quoted
 * sequence number is one its sender could have sent unacknowledged: RFC 5927's check, which is
 * what keeps a blind attacker's forged "fragmentation needed" from reaching the endpoint). The
 * flow is only read: an error changes no state, counter or timeout, as in netfilter. */
static __always_inline __u8 ct_related(struct ct_pkt *p, struct ct_result *r, __u64 now)
{
	struct ct_entry *e = flows.lookup(&p->key);
	r->klass = CT_CLASS_INVALID;
	r->reason = CT_REASON_ICMP_NO_FLOW;
	if (!e)
		return r->klass;
	bpf_spin_lock(&e->lock);
	if (now < e->expires) {
		r->has_flow = 1;
		r->state = e->state;
		r->orig_state = e->dir[0].state;
		r->reply_state = e->dir[1].state;
		r->klass = CT_CLASS_RELATED;
		r->reason = CT_REASON_NONE;
		if (p->key.proto == IPPROTO_TCP && !(e->flags & CT_F_PICKED_UP)) {
			__u32 d = (p->side == e->orig_side) ? CT_DIR_ORIG : CT_DIR_REPLY;
			struct ct_dir *snd = &e->dir[d], *rcv = &e->dir[d ^ 1];
			/* SND.UNA as the tracker knows it: the receiver's highest ACK, which may run
			 * ahead of what the sender has heard; so allow a window's worth before it. */
			__u32 una = (rcv->flags & CT_DF_MAXACK_SET) ? rcv->td_maxack : snd->isn;
			__u32 slack = rcv->td_maxwin > CT_MAX_ACK_WINDOW_FLOOR ? rcv->td_maxwin :
				      CT_MAX_ACK_WINDOW_FLOOR;
			if (!(snd->flags & CT_DF_SYN) || seq_after(p->seq, snd->td_end) ||
			    seq_before(p->seq, una - slack)) {
				r->klass = CT_CLASS_INVALID;
				r->reason = CT_REASON_ICMP_SEQ_WINDOW;
			}
		}
	}
	bpf_spin_unlock(&e->lock);
	return r->klass;
}

/* Replay builds: what an ICMP error was, for the replay's line (parsed 2: its quote led to a
 * flow key; 3: it did not). A no-op in live builds. */
static __always_inline void ct_trace_icmp(struct ct_pkt *p, __u8 parsed)
{
#ifdef CT_REPLAY
	__u32 z = 0;
	struct ct_trace *t = trace.lookup(&z);
	if (!t)
		return;
	t->parsed = parsed;
	t->side = p->side;
	t->seq = p->seq;
	t->icmp_type = p->icmp_type;
	t->icmp_code = p->icmp_code;
	t->icmp_outer[0] = p->icmp_outer[0];
	t->icmp_outer[1] = p->icmp_outer[1];
	t->icmp_rest = p->icmp_rest;
#endif
}

static __always_inline __u8 ct_process(void *data, void *data_end, __u32 pkt_len,
				       struct ct_result *r, struct ct_key *key_out)
{
	__u32 z = 0;
	struct ct_scratch *sc = scratch.lookup(&z);
	if (!sc)
		return r->klass;   /* cannot happen: a one-slot array always has its slot */
	struct ct_pkt *p = &sc->pkt;
	__builtin_memset(p, 0, sizeof(*p));
	__u8 reason = CT_REASON_NONE;
	int cls = ct_parse(data, data_end, pkt_len, p, &reason);
	r->len = p->ip_len ? p->ip_len : pkt_len;
	if (cls == CT_CLASS_RELATED) {
		*key_out = p->key;
		ct_trace_icmp(p, 2);
		return ct_related(p, r, ct_now());
	}
	if (cls == CT_CLASS_INVALID && reason == CT_REASON_TCP_BAD_FLAGS) {
		/* INVALID whatever happens; its flow, if any, still records it in Zeek's history
		 * (I for FIN+RST, Q for SYN with FIN or RST), and nothing else changes */
		p->bad_flags = 1;
		cls = CT_CLASS_NEW;
	}
	if (cls != CT_CLASS_NEW) {
		if (p->icmp_error) {   /* an error whose quote was not usable: say what it was */
			*key_out = p->key;   /* only its family is set */
			ct_trace_icmp(p, 3);
		}
		r->klass = cls;
		r->reason = reason;
		return cls;
	}
	*key_out = p->key;
	__u64 now = ct_now();   /* only tracked packets need the clock */

#ifdef CT_REPLAY
	struct ct_trace *t = trace.lookup(&z);
	if (t) {
		t->parsed = 1;
		t->side = p->side;
		t->tcp_flags = p->tcp_flags;
		t->seq = p->seq;
		t->ack = p->ack;
		t->datalen = p->datalen;
		t->win = p->win;
	}
#endif

	/* The established fast path: one lookup, then the flow's own lock. */
	struct ct_entry *e = flows.lookup(&p->key);
	if (!e) {
		if (!ct_can_open(p)) {
			r->klass = CT_CLASS_INVALID;
			r->reason = p->bad_flags ? CT_REASON_TCP_BAD_FLAGS : CT_REASON_TCP_NO_FLOW;
			return r->klass;
		}
		struct ct_entry *ne = (struct ct_entry *)sc->entry;
#ifndef CT_NO_RTT
		if (p->key.proto == IPPROTO_TCP)
			p->rtt_now = ct_now_fine();   /* the opening segment is timed */
#endif
		ct_entry_build(ne, p, now);

		/* Insert only if absent: another CPU may have created the flow since our lookup. */
		int err = flows.insert(&p->key, ne);
		if (err && err != -EEXIST && ct_evict_one(now))
			err = flows.insert(&p->key, ne);
		if (err == -EEXIST) {
			e = flows.lookup(&p->key);   /* lost the race: handle it as an existing flow */
			p->synopts_dir = 0;          /* the entry built for nothing took the options */
		} else if (err) {
			stat_inc(CT_STAT_TABLE_FULL);
			r->klass = CT_CLASS_INVALID;
			r->reason = CT_REASON_TABLE_FULL;
			return r->klass;
		} else {
			r->klass = CT_CLASS_NEW;
			r->created = 1;
			r->has_flow = 1;
			r->state = ne->state;
			r->orig_state = ne->dir[0].state;
			r->reply_state = ne->dir[1].state;
			r->orig_side = ne->orig_side;
			r->first_seen = ne->first_seen;
			r->last_seen = ne->last_seen;
			r->packets[0] = ne->dir[0].packets;
			r->packets[1] = ne->dir[1].packets;
			r->bytes[0] = ne->dir[0].bytes;
			r->bytes[1] = ne->dir[1].bytes;
			sc->zsrc = (__u64)(long)&ne->zeek;
			goto after;
		}
		if (!e) {
			r->klass = CT_CLASS_INVALID;
			r->reason = CT_REASON_TABLE_FULL;
			return r->klass;
		}
	}
#ifndef CT_NO_RTT
	/* the fine clock, before the lock (no helper calls under it), when there is anything to time */
	if (p->key.proto == IPPROTO_TCP && (p->rtt_now || ct_rtt_wants_clock(e, p)))
		p->rtt_now = ct_now_fine();
#endif
	ct_update(e, p, now, r);
	if (p->bad_flags)
		r->has_flow = 0;   /* INVALID before any flow (it only added to Zeek's history) */
	if (r->reopened && flows.lookup(&p->key) != e) {
		/* The collector removed the expired entry between our lookup and our lock, or just
		 * after: the flow this packet opened lives in memory no longer in the table. Insert
		 * it afresh: a copy of what this packet made of it (the map leaves its lock word). */
		struct ct_entry *ne = (struct ct_entry *)sc->entry;
		bpf_probe_read_kernel(ne, sizeof(*ne), e);
		flows.insert(&p->key, ne);
	}
	sc->zsrc = (__u64)(long)&e->zeek;
after:
	/* one copy of what follows for both paths (see struct ct_scratch's zsrc) */
	ct_after(&p->key, r, sc, now);
	ct_after_extras(p);
	return r->klass;
}

/* Verdict and bookkeeping common to both hooks. Returns the action. */
static __always_inline __u8 ct_decide(struct ct_result *r, struct ct_key *key, __u32 ifindex,
				      __u32 *redirect_to)
{
	__u8 action = CT_ACTION_PASS;
#ifdef CT_ENFORCE
	if (r->klass == CT_CLASS_INVALID)
		action = CT_ACTION_DROP;
#endif
#if defined(CT_REDIRECT_A) && defined(CT_REDIRECT_B)
	if (action == CT_ACTION_PASS) {
		if (ifindex == CT_REDIRECT_A) {
			*redirect_to = CT_REDIRECT_B;
			action = CT_ACTION_REDIRECT;
		} else if (ifindex == CT_REDIRECT_B) {
			*redirect_to = CT_REDIRECT_A;
			action = CT_ACTION_REDIRECT;
		}
	}
#endif
	struct ct_stats *st = stats_get();
	if (st) {
		st->v[CT_STAT_PACKETS] += 1;
		__u32 k = r->klass < CT_CLASS_MAX ? r->klass : CT_CLASS_UNTRACKED;
		st->v[CT_STAT_CLASS + k] += 1;
		st->v[CT_STAT_BYTES_CLASS + k] += r->len;
		st->v[CT_STAT_ACTION + (action < CT_ACTION_MAX ? action : 0)] += 1;
		if (r->klass == CT_CLASS_INVALID && r->reason < CT_REASON_MAX)
			st->v[CT_STAT_REASON + r->reason] += 1;
	}
#ifdef CT_REPLAY
	__u32 z = 0;
	struct ct_trace *t = trace.lookup(&z);
	if (t) {
		t->klass = r->klass;
		t->reason = r->reason;
		t->action = action;
		t->has_flow = r->has_flow;
		t->state = r->state;
		t->orig_state = r->orig_state;
		t->reply_state = r->reply_state;
		t->key = *key;
	}
#endif
	return action;
}

int ct_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ct_key key = {};
	__u32 redirect_to = 0, z0 = 0;
	struct ct_result *r = results.lookup(&z0);
	if (!r)
		return XDP_PASS;   /* cannot happen: a one-element per-CPU array */
	__builtin_memset(r, 0, sizeof(*r));
#ifdef CT_XDP_FRAGS
	__u32 len = bpf_xdp_get_buff_len(ctx);
#else
	__u32 len = data_end - data;
#endif
#ifdef CT_REPLAY
	__u32 z = 0;
	struct ct_trace *t = trace.lookup(&z);
	if (t && t->wire_len > len)
		len = t->wire_len;
#endif
	/* Through map memory, so that the verifier takes the length as any u32: derived from
	 * data_end - data, its every range check in the parser split the paths further (the
	 * default XDP build then went past the verifier's 1,000,000-instruction limit). */
	r->len = len;
	ct_process(data, data_end, *(volatile __u32 *)&r->len, r, &key);
	__u8 action = ct_decide(r, &key, ctx->ingress_ifindex, &redirect_to);
	if (action == CT_ACTION_DROP)
		return XDP_DROP;
	if (action == CT_ACTION_REDIRECT)
		return bpf_redirect(redirect_to, 0);
	return XDP_PASS;
}

/* How many bytes the parser will read, as far as the linear part tells: the plain cases
 * (Ethernet, IPv4 or IPv6, TCP or UDP) exactly; anything else (VLAN tags, IPv6 extension
 * headers, headers cut by the linear part's end) as a generous 256. Non-IP: nothing. */
static __always_inline __u32 ct_tc_headers_len(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return 256;
	__u32 off = sizeof(*eth), l4;
	__u8 proto;
	if (eth->h_proto == htons(ETH_P_IP)) {
		struct iphdr *iph = data + off;
		if ((void *)(iph + 1) > data_end)
			return 256;
		l4 = off + iph->ihl * 4;
		proto = iph->protocol;
	} else if (eth->h_proto == htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;
		if ((void *)(ip6 + 1) > data_end)
			return 256;
		l4 = off + sizeof(*ip6);
		proto = ip6->nexthdr;
	} else if (eth->h_proto == htons(ETH_P_8021Q) || eth->h_proto == htons(ETH_P_8021AD_) ||
		   eth->h_proto == htons(ETH_P_PPPOE_SES_) || eth->h_proto == htons(ETH_P_MPLS_UC_) ||
		   eth->h_proto == htons(ETH_P_MPLS_MC_)) {
		return 256;   /* tags, PPPoE, labels: the parser's general case */
	} else {
		return 0;
	}
	if (proto == IPPROTO_UDP)
		return l4 + 8;
	if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6)
		return l4 + 8 + 60 + 8 + 8;   /* an error's quoted IP header (+ fragment header), ports, seq */
	if (proto != IPPROTO_TCP)
		return ct_ip6_ext(proto) ? 256 : l4;
	if (l4 > 128)
		return 256;
	__u8 *th = data + l4;
	if ((void *)(th + 13) > data_end)
		return l4 + 60;           /* the data offset is not even visible: the longest header */
	return l4 + ((th[12] >> 4) * 4);
}

int ct_tc(struct __sk_buff *skb)
{
#ifdef CT_TC_EGRESS
	/* The host's copy of its own multicast or broadcast (IP_MULTICAST_LOOP), handed back to
	 * the sending interface's ingress: the egress hook already took the original. On lo every
	 * packet comes back, but as PACKET_HOST, so there user space hooks ingress only. */
	if (skb->pkt_type == PACKET_LOOPBACK)
		return TC_ACT_OK;
#endif
	struct ct_key key = {};
	__u32 redirect_to = 0, z0 = 0;
	struct ct_result *r = results.lookup(&z0);
	if (!r)
		return TC_ACT_OK;   /* cannot happen: a one-element per-CPU array */
	__builtin_memset(r, 0, sizeof(*r));
	/* Headers beyond the linear part (some drivers) must be pulled in before parsing; but a
	 * pull into a GSO super-packet whose headers are all there copies payload for nothing
	 * (measured: 150 ns of a 418 ns run). So pull only what the headers need. */
	__u32 linear = skb->data_end - skb->data;
	__u32 want = ct_tc_headers_len((void *)(long)skb->data, (void *)(long)skb->data_end);
	if (want > skb->len)
		want = skb->len;
	if (want > linear)
		bpf_skb_pull_data(skb, want);
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	ct_process(data, data_end, skb->len, r, &key);
	__u8 action = ct_decide(r, &key, skb->ingress_ifindex, &redirect_to);
	if (action == CT_ACTION_DROP)
		return TC_ACT_SHOT;
	if (action == CT_ACTION_REDIRECT)
		return bpf_redirect(redirect_to, 0);
	return TC_ACT_OK;
}

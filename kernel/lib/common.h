/* lib/common.h: what every part of the tracker uses: the parsed packet (struct ct_pkt), the
 * per-CPU scratch it lives in, the TCP flag bits and the rarer counters (stat_inc).
 *
 * No header under lib/ names a map: BCC rewrites map calls (flows.lookup(), ...) in the file it
 * compiles only, never in an included header (such a call compiles to an indirect call the
 * verifier refuses). So the maps are declared in tracker.c, with one small accessor per map
 * operation declared below and defined there, and the headers call those. */
#ifndef CT_LIB_COMMON_H
#define CT_LIB_COMMON_H

#include "ctrack.h"

#define NS_PER_SEC 1000000000ULL

/* The map accesses, defined in tracker.c (see above): the per-CPU counters and scratch, the
 * replay's trace, the flow table, the eviction queue, the ring buffer. */
static __always_inline struct ct_stats *stats_get(void);
static __always_inline struct ct_scratch *ct_scratch_get(void);
#ifdef CT_REPLAY
static __always_inline struct ct_trace *ct_trace_get(void);
#endif
static __always_inline struct ct_entry *ct_flow_lookup(struct ct_key *key);
static __always_inline int ct_flow_delete(struct ct_key *key);
static __always_inline void ct_evict_push(struct ct_evict_item *it);
static __always_inline int ct_evict_pop(struct ct_evict_item *it);
#ifndef CT_NO_EVENTS
static __always_inline struct ct_event *ct_event_reserve(void);
static __always_inline void ct_event_submit(struct ct_event *ev);
#endif

/* For the rarer counters; the per-packet ones share one lookup in ct_decide. */
static __always_inline void stat_inc(__u32 idx)
{
	struct ct_stats *st = stats_get();
	if (st && idx < CT_STAT_MAX)
		st->v[idx] += 1;   /* per-CPU: no atomics needed */
}

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
	__u8 zero;        /* always 0, read back to give a packet pointer an identity of its own
	                   * (ct_parse_ts) */
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
	__u16 walkoff;    /* an IPv6 extension header walk's offset (ct_parse: in map memory for the
	                   * verifier's sake) */
#ifndef CT_NO_ZEEK
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
#endif
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

#endif /* CT_LIB_COMMON_H */

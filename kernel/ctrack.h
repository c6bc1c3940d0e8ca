/* ctrack.h: everything the tracker's C and ctrack's Python share, defined once.
 *
 * Python reads this file (ctrack/defs.py): enum names and values, CT_TIMEOUT_* defaults and the
 * CT_* numeric macros come from here; struct layouts come from the loaded program's maps (BCC
 * builds ctypes types from the same C). Nothing here may be retyped in Python.
 *
 * Parsing rules for ctrack/defs.py: enums are written `enum name { A = 0, B, ... };` with plain
 * integer values, one enumerator per line; defaults are `#define CT_TIMEOUT_X <seconds>`.
 */
#ifndef CTRACK_H
#define CTRACK_H

/* ---- Directions ----------------------------------------------------------------------------- */
/* A flow's two directions: the one that opened it (orig) and the other (reply). */
enum ct_dir_index {
	CT_DIR_ORIG = 0,
	CT_DIR_REPLY = 1,
};

/* ---- Overall connection state (netfilter's names; drives the timeout) ------------------------- */
enum ct_state {
	CT_STATE_NONE = 0,
	CT_STATE_SYN_SENT = 1,
	CT_STATE_SYN_RECV = 2,
	CT_STATE_ESTABLISHED = 3,
	CT_STATE_FIN_WAIT = 4,
	CT_STATE_CLOSE_WAIT = 5,
	CT_STATE_LAST_ACK = 6,
	CT_STATE_TIME_WAIT = 7,
	CT_STATE_CLOSE = 8,
	CT_STATE_SYN_SENT2 = 9,
	CT_STATE_NEW = 10,
	CT_STATE_MAX = 11,
};

/* ---- One endpoint's TCP state, inferred from the wire -----------------------------------------
 * Values are Linux's own TCP_* numbers (include/net/tcp_states.h), so they compare directly with
 * what sock:inet_sock_set_state reports for the endpoints' sockets. NONE = not known yet. */
#include "tcp_states.h"   /* enum ct_tcp_endpoint, shared with the observers */

/* ---- Zeek's view of a connection (conn.log's conn_state and history) ---------------------------
 * Zeek's TCP endpoint states (analyzer/protocol/tcp/TCP_Endpoint.h), moved by SYN, FIN and RST as
 * Zeek's TCP analyzer moves them; conn_state is derived from the two final states (user space,
 * ctrack/zeek.py). UDP endpoints use INACTIVE and ACTIVE (Zeek's UDP_INACTIVE/UDP_ACTIVE). */
enum ct_zeek_state {
	CT_ZEEK_INACTIVE = 0,
	CT_ZEEK_SYN_SENT = 1,
	CT_ZEEK_SYN_ACK_SENT = 2,
	CT_ZEEK_PARTIAL = 3,
	CT_ZEEK_ESTABLISHED = 4,
	CT_ZEEK_CLOSED = 5,
	CT_ZEEK_RESET = 6,
	CT_ZEEK_ACTIVE = 7,
};

/* ---- What the tracker concluded about a packet ------------------------------------------------ */
enum ct_class {
	CT_CLASS_UNTRACKED = 0,   /* not IP, or an IP protocol/fragment ctrack does not track */
	CT_CLASS_NEW = 1,         /* created a flow */
	CT_CLASS_ESTABLISHED = 2, /* valid packet of a known flow */
	CT_CLASS_INVALID = 3,     /* see the reason */
	CT_CLASS_RELATED = 4,     /* an ICMP/ICMPv6 error about a known flow (netfilter's RELATED) */
	CT_CLASS_MAX = 5,
};

/* What happened to the packet. */
enum ct_action {
	CT_ACTION_PASS = 0,
	CT_ACTION_DROP = 1,
	CT_ACTION_REDIRECT = 2,
	CT_ACTION_MAX = 3,
};

/* Why a packet is INVALID. NONE for every other class. */
enum ct_reason {
	CT_REASON_NONE = 0,
	CT_REASON_L2_TRUNCATED = 1,       /* Ethernet, VLAN, PPPoE or MPLS header cut short */
	CT_REASON_L2_TOO_MANY_TAGS = 2,   /* IP under more VLAN tags than CT_MAX_VLAN_TAGS, or an
	                                   * MPLS stack deeper than CT_MAX_MPLS_LABELS */
	CT_REASON_IP_TRUNCATED = 3,       /* IP header, or total length, beyond the frame */
	CT_REASON_IP_BAD_VERSION = 4,     /* version field disagrees with the EtherType */
	CT_REASON_IP_BAD_IHL = 5,         /* IPv4 header length < 20 */
	CT_REASON_IP_BAD_LENGTH = 6,      /* IPv4 total length < header length */
	CT_REASON_IP6_EXT_TRUNCATED = 7,  /* an IPv6 extension header runs past the packet */
	CT_REASON_IP6_EXT_LIMIT = 8,      /* more than CT_MAX_IP6_EXT extension headers */
	CT_REASON_L4_TRUNCATED = 9,       /* TCP/UDP/ICMP header cut short (tiny first fragment too) */
	CT_REASON_TCP_BAD_DOFF = 10,      /* data offset < 5 or beyond the segment */
	CT_REASON_TCP_BAD_OPTIONS = 11,   /* an option's length runs past the header */
	CT_REASON_TCP_BAD_FLAGS = 12,     /* a flag combination no TCP sends (SYN+FIN, none, ...) */
	CT_REASON_UDP_BAD_LENGTH = 13,    /* UDP length < 8 or beyond the IP payload */
	CT_REASON_TCP_NO_FLOW = 14,       /* not a SYN, no flow, mid-stream pickup off */
	CT_REASON_TCP_SEQ_WINDOW = 15,    /* sequence outside the receiver's window */
	CT_REASON_TCP_ACK_WINDOW = 16,    /* acknowledges data never sent, or far too old */
	CT_REASON_TCP_RST_WINDOW = 17,    /* RST whose sequence is outside the window (RFC 5961) */
	CT_REASON_TCP_BAD_SYNACK = 18,    /* SYN/ACK that does not acknowledge the SYN */
	CT_REASON_TCP_UNEXPECTED = 19,    /* a flag the connection's state cannot take */
	CT_REASON_TABLE_FULL = 20,        /* a new flow, and no room even after eviction */
	CT_REASON_ICMP_BAD_INNER = 21,    /* ICMP error whose quoted IP header + 8 bytes is cut short
	                                   * or malformed (RFC 792/4443 require them), or whose
	                                   * quoted IPv6 extension headers hide its ports */
	CT_REASON_ICMP_NO_FLOW = 22,      /* ICMP error about a TCP/UDP flow the table does not have */
	CT_REASON_ICMP_SEQ_WINDOW = 23,   /* ICMP error quoting a TCP sequence number the sender has
	                                   * not sent or that is long acknowledged (RFC 5927) */
	CT_REASON_ICMP_MISDIRECTED = 24,  /* ICMP error not addressed to the sender of the packet it
	                                   * quotes (errors go back to the source) */
	CT_REASON_MAX = 25,
};

/* Why a flow ended (CT_EVENT_CLOSED: FIN, RST), or why its entry left the table
 * (CT_EVENT_DESTROY: the others); statistics. */
enum ct_close_reason {
	CT_CLOSE_NONE = 0,
	CT_CLOSE_FIN = 1,      /* orderly close reached TIME_WAIT/CLOSE */
	CT_CLOSE_RST = 2,      /* an in-window RST */
	CT_CLOSE_TIMEOUT = 3,  /* idle past its state's timeout */
	CT_CLOSE_EVICTED = 4,  /* removed to make room for a new flow */
	CT_CLOSE_REOPENED = 5, /* a new SYN reused the 5-tuple */
	CT_CLOSE_FLUSHED = 6,  /* removed by an operator */
};

/* Event types sent through the ring buffer, in conntrack's vocabulary: NEW; UPDATE (STATE, and
 * CLOSED: the connection ended by FIN or RST, its entry stays until its TIME_WAIT/CLOSE timeout);
 * DESTROY: the entry left the table (timeout, evicted, reopened, flushed), once per entry. */
enum ct_event_type {
	CT_EVENT_NEW = 1,
	CT_EVENT_STATE = 2,
	CT_EVENT_CLOSED = 3,
	CT_EVENT_DESTROY = 4,
};

/* ---- TCP options a side offered in its SYN (struct ct_synopts; per-tracker flow counts) ------ */
/* What ctrack names; any kind is also kept by number in ct_synopts.kinds. */
enum ct_tcpopt {
	CT_TCPOPT_MSS = 0,          /* kind 2 */
	CT_TCPOPT_WSCALE = 1,       /* kind 3 */
	CT_TCPOPT_SACK_PERM = 2,    /* kind 4 */
	CT_TCPOPT_TIMESTAMPS = 3,   /* kind 8 */
	CT_TCPOPT_MD5 = 4,          /* kind 19, RFC 2385 */
	CT_TCPOPT_UTO = 5,          /* kind 28, RFC 5482 user timeout */
	CT_TCPOPT_AO = 6,           /* kind 29, RFC 5925 TCP-AO */
	CT_TCPOPT_MPTCP = 7,        /* kind 30, RFC 8684 (ct_synopts.mptcp_subtype) */
	CT_TCPOPT_TFO = 8,          /* kind 34, RFC 7413; or kind 254 with ExID 0xF989 */
	CT_TCPOPT_EXP = 9,          /* kinds 253/254, RFC 6994 (ct_synopts.exid), TFO's excepted */
	CT_TCPOPT_OTHER = 10,       /* any kind not named above */
	CT_TCPOPT_MAX = 11,
};
/* TCP option kinds the parser looks for (IANA's numbers). */
#define CT_TCPOPT_KIND_MSS 2
#define CT_TCPOPT_KIND_WSCALE 3
#define CT_TCPOPT_KIND_SACK_PERM 4
#define CT_TCPOPT_KIND_TIMESTAMPS 8
#define CT_TCPOPT_KIND_MD5 19
#define CT_TCPOPT_KIND_UTO 28
#define CT_TCPOPT_KIND_AO 29
#define CT_TCPOPT_KIND_MPTCP 30
#define CT_TCPOPT_KIND_TFO 34
#define CT_TCPOPT_KIND_EXP1 253
#define CT_TCPOPT_KIND_EXP2 254
#define CT_TCPOPT_EXID_TFO 0xF989   /* RFC 7413's ExID: a TFO cookie in kind 254 */
#define CT_SYNOPT_EXIDS 2           /* RFC 6994 ExIDs kept per SYN */

/* ---- Passive RTT (struct ct_rtt) ------------------------------------------------------------- */
#define CT_RTT_HIST_SLOTS 32        /* log2 buckets of us: the last holds everything >= 2^30 us */
/* What ct_rtt.ref awaits (ct_rtt.mode); NONE: nothing. */
#define CT_RTT_NONE 0
#define CT_RTT_SEQ 1                /* a segment's end sequence, to be covered by the peer's ACK */
#define CT_RTT_TS 2                 /* a TSval, to be echoed in the peer's TSecr (ePPing) */
#define CT_RTT_HANDSHAKE 3          /* a SYN's or SYN/ACK's end sequence (handshake halves) */
/* ct_rtt.flags */
#define CT_RTT_F_TSVAL 0x01         /* ts_max holds a TSval this side sent */
#define CT_RTT_F_HANDSHAKE 0x02     /* hs_us holds this half's handshake sample */
/* A sample above this is no round trip but a stale match (a peer silent for minutes). */
#define CT_RTT_MAX_US 60000000

/* ---- Global statistics: one per-CPU struct ct_stats, its counters indexed by these ------------ */
enum ct_stat {
	CT_STAT_PACKETS = 0,                   /* every packet the program saw */
	CT_STAT_CLASS = 1,                     /* + enum ct_class: packets by class (room for 8) */
	CT_STAT_ACTION = 9,                    /* + enum ct_action: packets by action (room for 4) */
	CT_STAT_REASON = 13,                   /* + enum ct_reason: INVALID packets by reason (room
	                                        * for 40) */
	CT_STAT_FLOWS_CREATED = 53,
	CT_STAT_CLOSED_FIN = 54,
	CT_STAT_CLOSED_RST = 55,
	CT_STAT_CLOSED_TIMEOUT = 56,
	CT_STAT_EVICTED = 57,
	CT_STAT_REOPENED = 58,
	CT_STAT_TABLE_FULL = 59,               /* new flows refused: table full, nothing evictable */
	CT_STAT_EVENTS_LOST = 60,              /* ring buffer full: events not delivered */
	CT_STAT_FRAGMENTS = 61,                /* non-first IP fragments (untracked) */
	CT_STAT_IGNORED_SYN = 62,              /* SYNs in a live connection, remembered not applied */
	CT_STAT_BYTES_CLASS = 63,              /* + enum ct_class: bytes by class (IP length, frame
	                                        * length for non-IP; room for 8) */
	CT_STAT_CLOSED_FLUSHED = 71,           /* removed by `ctrack flush` / `ctrack delete` */
	CT_STAT_RST_CHALLENGED = 72,           /* in-window RSTs off the receiver's RCV.NXT: passed,
	                                        * the connection kept (RFC 5961 challenge ACK) */
	CT_STAT_RTT_HIST = 73,                 /* + log2 bucket: end-to-end RTT samples in us, bucket
	                                        * b > 0 holding [2^(b-1), 2^b) (BCC's log2 buckets;
	                                        * room for CT_RTT_HIST_SLOTS) */
	CT_STAT_RTT_SUM_US = 105,              /* sum of those samples, us (the histogram's _sum) */
	CT_STAT_OPT_ORIG = 106,                /* + enum ct_tcpopt: flows whose opener's SYN carried
	                                        * the option (room for 16) */
	CT_STAT_OPT_REPLY = 122,               /* + enum ct_tcpopt: flows whose responder's SYN/ACK
	                                        * carried it (room for 16) */
	CT_STAT_FASTPATH = 138,                /* packets the established fast path took whole
	                                        * (lib/fastpath.h); the rest took the general path */
	CT_STAT_MAX = 139,
};
/* The ranges above must not overlap (user space reads them by these numbers). */
_Static_assert(CT_STAT_CLASS + CT_CLASS_MAX <= CT_STAT_ACTION, "class counters overlap");
_Static_assert(CT_STAT_ACTION + CT_ACTION_MAX <= CT_STAT_REASON, "action counters overlap");
_Static_assert(CT_STAT_REASON + CT_REASON_MAX <= CT_STAT_FLOWS_CREATED, "reason counters overlap");
_Static_assert(CT_STAT_BYTES_CLASS + CT_CLASS_MAX <= CT_STAT_CLOSED_FLUSHED, "byte counters overlap");
_Static_assert(CT_STAT_RTT_HIST + CT_RTT_HIST_SLOTS <= CT_STAT_RTT_SUM_US, "RTT histogram overlaps");
_Static_assert(CT_STAT_OPT_ORIG + CT_TCPOPT_MAX <= CT_STAT_OPT_REPLY, "option counters overlap");
_Static_assert(CT_STAT_OPT_REPLY + CT_TCPOPT_MAX <= CT_STAT_MAX, "option counters overlap");

struct ct_stats {
	__u64 v[CT_STAT_MAX];
};

/* ---- Flags ------------------------------------------------------------------------------------ */
/* Per direction (struct ct_dir.flags). */
#define CT_DF_SYN          0x01  /* this side sent a SYN; isn is valid */
#define CT_DF_FIN          0x02  /* this side sent a FIN; fin_seq is valid */
#define CT_DF_FIN_ACKED    0x04  /* the peer acknowledged this side's FIN */
#define CT_DF_WSCALE       0x08  /* this side offered window scaling in its SYN */
#define CT_DF_SACK_PERM    0x10  /* this side offered SACK in its SYN */
#define CT_DF_MAXACK_SET   0x20  /* td_maxack holds an ACK this side sent */
#define CT_DF_UNACKED      0x40  /* this side has sent data the peer has not acknowledged */
#define CT_DF_TIMESTAMPS   0x80  /* this side sent TCP timestamps in its SYN */
/* Per direction, second byte (struct ct_dir.flags2). */
#define CT_DF2_FRAGMENTED  0x01  /* it sent a fragmented segment whose end is unknown: the peer's
                                  * ACK, up to the window edge, tells where it ended */

/* Per flow (struct ct_entry.flags). */
#define CT_F_SEEN_REPLY    0x01  /* a packet went the reply way */
#define CT_F_ASSURED       0x02  /* handshake completed / UDP replied: never early-evicted */
#define CT_F_PICKED_UP     0x04  /* created mid-stream; windows unknown, checked liberally */
#define CT_F_RESET         0x08  /* closed by an RST: nothing but a new SYN changes its state */
#define CT_F_IGNORED_SYN   0x10  /* a SYN arrived in a live connection; see ignored_* */
#define CT_F_EVICT_QUEUED  0x20  /* the key is in the eviction queue */
#define CT_F_IGNORED_ACK   0x40  /* in SYN_SENT, an ACK came back (the peer still holds an older
                                  * connection: its challenge ACK); ignored_seq holds its ACK
                                  * number, where the opener's answering RST must be */
#define CT_F_DYING         0x80  /* claimed for removal (the collector, a flush, or a packet that
                                  * found it expired and opened nothing): whoever's delete
                                  * succeeds reports its DESTROY, and nobody else does */

/* Zeek's history "seen once" bits (struct ct_zeek.hist_seen): the originator's in the low byte,
 * the responder's in the next (Zeek shifts the mask by 16; a byte is enough here). */
#define CT_ZH_SYN          0x01  /* S or H */
#define CT_ZH_FIN          0x02  /* F */
#define CT_ZH_RST          0x04  /* R */
#define CT_ZH_FIN_RST      0x08  /* I */
#define CT_ZH_DATA         0x10  /* D */
#define CT_ZH_ACK          0x20  /* A */
#define CT_ZH_MULTI        0x40  /* Q */
/* struct ct_zeek.flags */
#define CT_ZF_FLIPPED      0x01  /* the first packet was a SYN/ACK: its receiver is the originator */
#define CT_ZF_PARTIAL      0x02  /* Zeek's is_partial: the connection did not start with a SYN */
#define CT_ZF_SEEN_ORIG    0x04  /* a packet from the originator was seen */
#define CT_ZF_SEEN_REPLY   0x08  /* ... from the responder */
/* struct ct_zeek_dir.flags */
#define CT_ZD_FIN          0x01  /* it sent a FIN (Zeek's FIN_cnt > 0) */
#define CT_ZD_OOO          0x02  /* data seen beyond a hole: ooo_start/ooo_end are valid */
/* Room for history letters; further letters are dropped (Zeek's string has no bound). */
#define CT_ZEEK_HISTORY 30

/* ---- Limits and defaults (each may be overridden with -D at load time) ------------------------ */
#ifndef CT_TABLE_SIZE
#define CT_TABLE_SIZE 65536
#endif
/* The eviction queue: an item per flow created and per flow that starts closing, twice the
 * table's size (items of flows since removed wait there until popped), bounded memory. */
#define CT_EVICT_QUEUE_SIZE (CT_TABLE_SIZE < 262144 ? 2 * CT_TABLE_SIZE : 524288)
#ifndef CT_RINGBUF_PAGES
#define CT_RINGBUF_PAGES 64
#endif
#define CT_MAX_VLAN_TAGS 2
#define CT_MAX_VLAN_PEEK 6      /* further tags looked through to find a non-IP payload */
#define CT_MAX_MPLS_LABELS 8    /* MPLS labels followed to the bottom of the stack */
#define CT_MAX_IP6_EXT 6
#define CT_MAX_TCP_OPTIONS 40   /* option walk steps: 40 one-byte items fill a header */
#define CT_EVICT_TRIES 8
/* netfilter's MAXACKWINDOW floor: how far back an ACK may lag behind the data it acknowledges. */
#define CT_MAX_ACK_WINDOW_FLOOR 66000

/* Per-state timeouts in seconds, netfilter's defaults. */
#ifndef CT_TIMEOUT_SYN_SENT
#define CT_TIMEOUT_SYN_SENT 120
#endif
#ifndef CT_TIMEOUT_SYN_RECV
#define CT_TIMEOUT_SYN_RECV 60
#endif
#ifndef CT_TIMEOUT_ESTABLISHED
#define CT_TIMEOUT_ESTABLISHED 432000
#endif
#ifndef CT_TIMEOUT_FIN_WAIT
#define CT_TIMEOUT_FIN_WAIT 120
#endif
#ifndef CT_TIMEOUT_CLOSE_WAIT
#define CT_TIMEOUT_CLOSE_WAIT 60
#endif
#ifndef CT_TIMEOUT_LAST_ACK
#define CT_TIMEOUT_LAST_ACK 30
#endif
#ifndef CT_TIMEOUT_TIME_WAIT
#define CT_TIMEOUT_TIME_WAIT 120
#endif
#ifndef CT_TIMEOUT_CLOSE
#define CT_TIMEOUT_CLOSE 10
#endif
#ifndef CT_TIMEOUT_SYN_SENT2
#define CT_TIMEOUT_SYN_SENT2 120
#endif
/* A TCP flow with data in flight unacknowledged: at most this, whatever its state. */
#ifndef CT_TIMEOUT_UNACK
#define CT_TIMEOUT_UNACK 300
#endif
#ifndef CT_TIMEOUT_UDP_NEW
#define CT_TIMEOUT_UDP_NEW 30
#endif
#ifndef CT_TIMEOUT_UDP_ESTABLISHED
#define CT_TIMEOUT_UDP_ESTABLISHED 120
#endif

/* ---- Layouts ---------------------------------------------------------------------------------- */
/* An address: IPv4 in the first 4 bytes, the rest zero. */
union ct_addr {
	__u32 v4;
	__u8 v6[16];
	__u32 v6w[4];
};

/* The flow key, direction-normalised: side 0 is the endpoint with the lower (address, port), so
 * both directions of a connection find the same entry with one lookup. Ports in network order. */
struct ct_key {
	union ct_addr addr[2];
	__be16 port[2];
	__u8 proto;
	__u8 family;   /* 4 or 6 */
	__u16 pad;
};

/* One direction of a flow: what its sender has shown (TCP window tracking and counters). */
struct ct_dir {
	__u32 isn;        /* the sequence number of its SYN */
	__u32 td_end;     /* highest sequence number it has sent, + length */
	__u32 td_maxend;  /* highest right edge (ack + window) its peer has opened to it */
	__u32 td_maxwin;  /* largest window it has advertised (scaled), at least 1 once seen */
	__u32 td_maxack;  /* highest acknowledgement number it has sent */
	__u32 fin_seq;    /* sequence number of its FIN */
	__u8 wscale;      /* its window scale shift, 0 unless both SYNs offered scaling */
	__u8 flags;       /* CT_DF_* */
	__u8 state;       /* this endpoint's TCP state, enum ct_tcp_endpoint */
	__u8 flags2;      /* CT_DF2_* */
	__u16 mss;        /* MSS it announced (0 unknown) */
	__u16 pad2;
	__u64 packets;
	__u64 bytes;      /* at the IP layer, as conntrack's accounting counts */
};

/* The TCP options one side put in its SYN (or SYN/ACK). */
struct ct_synopts {
	__u64 kinds;         /* bit k: option kind k (k < 63) appeared; bit 63: a kind >= 63 did */
	__u16 exid[CT_SYNOPT_EXIDS];       /* first RFC 6994 ExIDs (kinds 253/254), in order */
	__u8 exid_kind[CT_SYNOPT_EXIDS];   /* their kinds (0: slot unused) */
	__u8 high_kind;      /* the first kind >= 63 that is not 253/254 (0: none) */
	__u8 mptcp_subtype;  /* MPTCP (kind 30): its subtype + 1 (0: no MPTCP option) */
	__u16 named;         /* bit (enum ct_tcpopt): what ctrack names, for the counters */
	__u16 pad;
};

/* Passive RTT of one side: the half of the round trip from the tracker to this endpoint and
 * back (its samples), and what this side sent that still awaits the peer's answer (ref). A
 * flow's end-to-end RTT is the sum of its two sides' halves. Times in us unless said. */
struct ct_rtt {
	__u64 t_ns;          /* when ref was first seen (fine clock; capture clock in replays) */
	__u32 ref;           /* what awaits the peer: see mode */
	__u32 ts_max;        /* the newest TSval this side sent (CT_RTT_F_TSVAL): each counts once */
	__u32 srtt8_us;      /* smoothed RTT of this half, x8 (RFC 6298's 1/8 gain, as Linux) */
	__u32 min_us;
	__u32 last_us;
	__u32 samples;
	__u32 hs_us;         /* this half in the handshake (CT_RTT_F_HANDSHAKE; none when its SYN or
	                      * SYN/ACK was retransmitted: ambiguous, Karn) */
	__u8 mode;           /* CT_RTT_NONE / SEQ / TS / HANDSHAKE: what ref holds */
	__u8 flags;          /* CT_RTT_F_* */
	__u16 pad;
};

/* One endpoint as Zeek's TCP analyzer sees it. Sequence numbers: start_seq, last_seq, ack_seq
 * absolute; the others relative to start_seq (Zeek's relative sequence space, kept modulo 2^32). */
struct ct_zeek_dir {
	__u32 start_seq;  /* Zeek's StartSeq: its SYN's sequence number (first seq - 1 without one) */
	__u32 last_seq;   /* LastSeq: highest sequence number sent + segment length */
	__u32 ack_seq;    /* AckSeq: highest acknowledgement its peer sent of its data */
	__u32 fin_seq;    /* relative sequence number after its FIN */
	__u32 hist_syn;   /* relative sequence numbers of its last SYN, FIN, RST (repeat letters) */
	__u32 hist_fin;
	__u32 hist_rst;
	__u32 reasm;      /* relative end of its data seen in order (the reassembler's delivery) */
	__u32 trim;       /* highest relative ACK its peer sent (the reassembler's trim point) */
	__u32 ooo_start;  /* CT_ZD_OOO: the data seen beyond a hole, from, to */
	__u32 ooo_end;
	__u32 rxmt[2];    /* T: count, next count that logs a letter (1, 10, 100, ...) */
	__u32 win0[2];    /* W */
	__u32 gap[2];     /* G */
	__u32 extra_pkts; /* packets the tracker judged INVALID (its own counters leave them out; */
	__u32 extra_bytes;/* conn.log counts every packet) */
	__u8 state;       /* enum ct_zeek_state */
	__u8 prev_state;
	__u8 flags;       /* CT_ZD_* */
	__u8 pad;
	__u64 payload;    /* UDP: payload bytes sent (conn.log's orig_bytes / resp_bytes) */
};

/* Zeek's conn.log view of a flow: endpoints indexed by enum ct_dir_index. */
struct ct_zeek {
	struct ct_zeek_dir dir[2];
	__u64 last_ts;    /* ns: the last packet of the flow, valid or not */
	__u16 hist_seen;  /* CT_ZH_* bits, the responder's shifted by 8 */
	__u8 flags;       /* CT_ZF_* */
	__u8 hist_len;
	char history[CT_ZEEK_HISTORY];
	__u16 pad;
};

/* A flow table entry. The lock serialises CPUs handling the same flow (see tracker.c). */
struct ct_entry {
	struct bpf_spin_lock lock;
	__u8 state;          /* overall, enum ct_state */
	__u8 orig_side;      /* key side (0/1) of the endpoint that opened the flow */
	__u8 flags;          /* CT_F_* */
	__u8 close_reason;   /* enum ct_close_reason, once closed */
	/* CT_F_IGNORED_SYN: a SYN seen inside a live connection, kept in case the peer answers it
	 * next; CT_F_IGNORED_ACK: ignored_seq is that ACK's number */
	__u8 ignored_dir;
	__u8 ignored_wscale;
	__u8 ignored_opts;   /* its CT_DF_WSCALE/SACK_PERM/TIMESTAMPS */
	__u8 pad;
	__u32 ignored_seq;
	__u16 ignored_win;
	__u16 ignored_mss;
	__u32 pad2;
	/* Times: ns on the tracker clock, CLOCK_MONOTONIC_COARSE (capture time in replays). */
	__u64 first_seen;
	__u64 last_seen;     /* ns */
	__u64 expires;       /* ns: the entry counts as absent from this time on */
	struct ct_dir dir[2];  /* indexed by enum ct_dir_index */
	/* Kept in every build (one layout for every tool); filled unless compiled out with
	 * CT_NO_SYNOPTS / CT_NO_RTT. Indexed by enum ct_dir_index. */
	struct ct_synopts synopts[2];
	struct ct_rtt rtt[2];
	struct ct_zeek zeek;   /* conn_state and history as Zeek gives them (every packet counts) */
};

/* An eviction queue item: a key and the first_seen of the flow it was queued for, so that an
 * item left by a flow since removed or reopened (same key, another first_seen) is dropped. */
struct ct_evict_item {
	struct ct_key key;
	__u64 first_seen;
};

/* A flow's RTT as its end event reports it: sums of the two halves (see struct ct_rtt). */
struct ct_rtt_summary {
	__u32 handshake_us;  /* valid with CT_RTT_SUM_HANDSHAKE */
	__u32 srtt_us;       /* valid with CT_RTT_SUM_BOTH: each half has samples */
	__u32 min_us;        /* valid with CT_RTT_SUM_BOTH */
	__u32 samples;       /* of both halves */
	__u8 flags;          /* CT_RTT_SUM_* */
	__u8 pad[7];
};
#define CT_RTT_SUM_HANDSHAKE 0x01
#define CT_RTT_SUM_BOTH 0x02

/* A flow event. */
struct ct_event {
	__u64 ts;            /* CLOCK_MONOTONIC ns when emitted (the capture's clock in replay) */
	struct ct_key key;
	__u8 type;           /* enum ct_event_type */
	__u8 state;          /* overall state after the event */
	__u8 old_state;      /* overall state before (CT_EVENT_STATE) */
	__u8 orig_state;     /* endpoint states after the event */
	__u8 reply_state;
	__u8 orig_side;
	__u8 close_reason;   /* CT_EVENT_CLOSED */
	__u8 pad;
	__u64 packets[2];
	__u64 bytes[2];
	struct ct_rtt_summary rtt;   /* CT_EVENT_CLOSED: the flow's RTT (zero otherwise) */
	/* The flow's times and Zeek record when the event was sent (CT_EVENT_CLOSED / DESTROY: its last) */
	__u64 first_seen;
	__u64 last_seen;
	struct ct_zeek zeek;
};

/* What the last packet did, for replay and tests (only in programs built with CT_REPLAY):
 * user space writes `now` (the capture's clock) and `wire_len` before each run and reads the rest
 * after. */
struct ct_trace {
	__u64 now;
	__u32 wire_len;      /* the packet's length on the wire, when the frame run is cut short
	                      * (capture snaplen, or frames too big for a test run); 0: the frame's */
	__u32 pad0;
	__u8 klass;          /* enum ct_class */
	__u8 reason;         /* enum ct_reason */
	__u8 action;         /* enum ct_action */
	__u8 has_flow;
	__u8 state;
	__u8 orig_state;
	__u8 reply_state;
	__u8 parsed;         /* 1: the packet was TCP/UDP and its key and fields below are valid;
	                      * 2: an ICMP error, key and side (and seq for TCP) from the packet it
	                      * quotes; 3: an ICMP error whose quote was not used (only the key's
	                      * family and the type and code are valid) */
	struct ct_key key;
	__u8 side;           /* key side of the sender (parsed 2: of the quoted packet's sender) */
	__u8 tcp_flags;
	__u8 icmp_type;      /* parsed 2: the ICMP error's type and code */
	__u8 icmp_code;
	__u32 seq;
	__u32 ack;
	__u32 datalen;
	__u16 win;
	__u16 pad2;
	union ct_addr icmp_outer[2];   /* parsed 2 and 3: the error's own source and destination */
	__u32 icmp_rest;     /* parsed 2 and 3: its rest-of-header word (MTU, pointer, gateway) */
	__u32 has_ended;     /* 1: the packet ended a flow (its entry reopened, or evicted): `ended` */
	struct ct_event ended;  /* that flow's final record, as a CT_EVENT_CLOSED carries it */
};

#endif /* CTRACK_H */

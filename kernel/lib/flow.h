/* lib/flow.h: flow bookkeeping: struct ct_result (what a packet did to its flow, acted on after
 * the lock), timeouts, a flow's (re)start and a new entry's build, and which packets may open a
 * flow. */
#ifndef CT_LIB_FLOW_H
#define CT_LIB_FLOW_H

#include "common.h"
#include "seq.h"
#include "zeek.h"
#include "rtt.h"
#include "summary.h"

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
	__u8 fast;           /* the fast path took it (lib/fastpath.h): counted as such */
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

/* The one copy of an entry's flow into a packet's result (lock held): its states, sides, times
 * and counters, for the events, the replay's trace and the eviction queue item. Every path
 * that reports a flow fills its result here, whether it reads all of it or not (a RELATED
 * error reads only the states): one copy of the code, and of the fields' list. */
static __always_inline void ct_result_fill(struct ct_result *r, struct ct_entry *e)
{
	CT_SUMMARY_FILL(r, e);
}

/* The same for the flow that just ended in the entry (prev_*), for its DESTROY; the caller
 * sets prev_close_reason. */
static __always_inline void ct_result_fill_prev(struct ct_result *r, struct ct_entry *e)
{
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
}


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
	ct_result_fill_prev(r, e);
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
#ifndef CT_NO_ZEEK
		e->zeek.flags |= CT_ZF_FLIPPED;
		e->zeek.history[0] = '^';
		e->zeek.hist_len = 1;
#endif
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
#ifndef CT_NO_ZEEK
	bpf_probe_read_kernel(&ne->zeek, sizeof(ne->zeek), &ct_sc(p)->zk_zero);   /* zeroes it */
#endif   /* (else nothing ever writes a record: the scratch entry's stays zero) */
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

static __always_inline int ct_closing_state(__u8 s)
{
	return s == CT_STATE_FIN_WAIT || s == CT_STATE_CLOSE_WAIT || s == CT_STATE_LAST_ACK ||
	       s == CT_STATE_TIME_WAIT || s == CT_STATE_CLOSE;
}

#endif /* CT_LIB_FLOW_H */

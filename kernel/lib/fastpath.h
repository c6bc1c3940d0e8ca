/* lib/fastpath.h: the established fast path. Most packets of a connection are ACKs and data in
 * the middle of it, for which the general path (ct_update: expiry, restarts, Zeek's full rules,
 * the state machine's dispatch, the overall state, closing, events) comes down to a few moves:
 * the windows, the counters and times, Zeek's sequence marks, the passive RTT. This does those
 * moves alone, with the same functions (ct_tcp_window, ct_zeek_steady, ct_rtt_update,
 * ct_timeout_ns), for a segment it proves to be of that kind first; a segment outside the
 * windows it records as INVALID as the general path would; anything else it leaves untouched
 * to the general path. Compiled out with CT_NO_FASTPATH: tests/tracker/test_fastpath.py runs
 * hypothesis's conversations through both builds and requires the same verdicts and the same
 * tables after every packet. */
#ifndef CT_LIB_FASTPATH_H
#define CT_LIB_FASTPATH_H

#include "common.h"
#include "flow.h"
#include "window.h"
#include "zeek.h"
#include "rtt.h"

#ifndef CT_NO_FASTPATH
/* An ACK or data segment (p, TCP) of the live entry e. Returns 1 when it handled the packet (r:
 * its class, and in replays the flow's states; nothing to report), 0 when it changed nothing and
 * ct_update must. */
static __always_inline int ct_fast_tcp(struct ct_entry *e, struct ct_pkt *p, __u64 now,
				       struct ct_result *r)
{
	/* what the segment alone decides, before the lock: ACK without SYN, FIN, RST; flags a TCP
	 * sends; not a first fragment (its end is unknown); a non-zero window (Zeek's W, and the
	 * window's edge rule) */
	if ((p->tcp_flags & (TH_SYN | TH_FIN | TH_RST | TH_ACK)) != TH_ACK || p->bad_flags ||
	    p->fragmented || p->win == 0)
		return 0;
	bpf_spin_lock(&e->lock);
	__u32 d = (p->side == e->orig_side) ? CT_DIR_ORIG : CT_DIR_REPLY;
	struct ct_dir *snd = &e->dir[d & 1], *rcv = &e->dir[(d ^ 1) & 1];
	/* An established connection, live, answered, neither side closing, both windows known
	 * (ct_tcp_window's first-segment case) and no fragmented segment awaiting its end (its
	 * ACK rule moves the receiver before judging): for such a flow ct_tcp_existing goes
	 * straight to the window rules and ct_tcp_endpoints moves nothing on an ACK. */
	if (now >= e->expires || e->state != CT_STATE_ESTABLISHED ||
	    snd->state != CT_TCP_ESTABLISHED || rcv->state != CT_TCP_ESTABLISHED ||
	    (e->flags & (CT_F_RESET | CT_F_SEEN_REPLY | CT_F_ASSURED)) != (CT_F_SEEN_REPLY | CT_F_ASSURED) ||
	    e->close_reason != CT_CLOSE_NONE || ((snd->flags | rcv->flags) & CT_DF_FIN) ||
	    snd->td_maxwin == 0 || rcv->td_maxwin == 0 || (rcv->flags2 & CT_DF2_FRAGMENTED))
		goto general;
	/* Zeek's rules first, as the general path applies them (to every packet, valid or not);
	 * a segment they must see whole (a first letter, a retransmission) goes to it untouched */
	if (!ct_zeek_steady(&e->zeek, p, d, now))
		goto general;
#ifndef CT_NO_RTT
	__u8 prev_flags = snd->flags;
	__u32 prev_isn = snd->isn, prev_end = snd->td_end;
#endif
	__u8 why = ct_tcp_window(e, p, d);   /* on such a flow, a refusal moves nothing */
	r->has_flow = 1;
	r->fast = 1;
	if (why) {
		/* INVALID, as ct_tcp_existing and ct_update leave it: counted in Zeek's record only */
		r->klass = CT_CLASS_INVALID;
		r->reason = why;
		ct_zeek_invalid(&e->zeek, p, d);
		goto done;
	}
	r->klass = CT_CLASS_ESTABLISHED;
	e->flags &= ~CT_F_IGNORED_SYN;   /* a valid segment passed: no SYN/ACK may answer that SYN */
	snd->packets += 1;
	snd->bytes += p->ip_len;
	e->last_seen = now;
	e->expires = now + ct_timeout_ns(e);
#ifndef CT_NO_RTT
	ct_rtt_update(e, p, d, prev_flags, prev_isn, prev_end);
#endif
done:
#ifdef CT_REPLAY
	/* the replay's trace reports the flow's states; live, nothing reads the result's copy of
	 * the flow when no event is due (ct_decide reads the class and the reason only) */
	ct_result_fill(r, e);
#endif
	bpf_spin_unlock(&e->lock);
	return 1;
general:
	bpf_spin_unlock(&e->lock);
	return 0;
}
#endif /* CT_NO_FASTPATH */

#endif /* CT_LIB_FASTPATH_H */

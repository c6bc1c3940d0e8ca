/* lib/rtt.h: the passive RTT: per half of the round trip, TCP timestamps (TSval echoed in
 * TSecr) or, without them, a sequence number acknowledged; samples kept as Linux keeps srtt
 * (docs/rtt.md). Compiled out with CT_NO_RTT except ct_rtt_summarise (zeroes then). */
#ifndef CT_LIB_RTT_H
#define CT_LIB_RTT_H

#include "common.h"
#include "seq.h"
#include "summary.h"   /* ct_rtt_summarise, CT_SUMMARY_FILL: also the collector's */

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
 * One thing awaited per direction: about a sample per round trip, which is what smoothing needs.
 *
 * Only what the endpoints' kernels time is timed (their srtt is what this is compared with):
 * Linux samples an RTT only from an ACK that acknowledges new data (tcp_clean_rtx_queue's
 * FLAG_ACKED; tcp_ack_update_rtt takes TSecr only then: RFC 7323's RTTM rule), so
 *   - a pure ACK that acknowledges all the peer sent is not timed, and a TSval's first
 *     appearance is counted among the timed segments (ePPing skips pure ACKs): the peer echoes
 *     such an ACK's TSval only in whatever it sends next, after its application's time (a
 *     request/response's think time, a paced sender), which the peer's kernel does not time
 *     (the segment echoing it acknowledges nothing new). A pure ACK that leaves some of the
 *     peer's data in flight is timed: the peer is sending, ACK-clocked, and answers it with its
 *     next segment at once -- without it the half of a bulk sender would have no samples past
 *     the handshake;
 *   - a FIN is not timed, and a FIN ends the peer's wait without a sample: the receiver of a FIN
 *     acknowledges it late (Linux enters delayed-ACK "pingpong" mode on a FIN), and a FIN is sent
 *     when its application closes, so both time the programs' close, not the path; on a short
 *     connection a few such samples move the 1/8-gain average by tens of milliseconds. Linux
 *     does time a FIN's ACK, but its srtt as the connection ran (tcp_probe fires only while it
 *     is established) never includes it. */
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
	if (take || (f & TH_FIN)) {
		/* one copy of the sample code (the verifier's budget); a FIN times its program's
		 * close: it ends the wait without a sample (see above) */
		if (!(f & TH_FIN))
			ct_rtt_sample(e, p, d, peer->t_ns, hs);
		peer->mode = CT_RTT_NONE;
	}
	/* what the peer answers at once (a SYN is timed below, whatever it holds): see above */
	/* computed without branches: a branch here doubles the verifier's walk of what follows */
	__u32 inflight = (p->ack - e->dir[(d ^ 1) & 1].td_end) >> 31;   /* seq_before(ack, end) */
	__u32 hasdata = (__u32)((0ULL - (__u64)p->datalen) >> 63);        /* datalen != 0 */
	__u32 timed = (hasdata | inflight) & ~((__u32)f & TH_FIN) & 1;
	int new_tsval = 0;
	if (p->has_ts && timed && (!(me->flags & CT_RTT_F_TSVAL) || seq_after(p->tsval, me->ts_max))) {
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
				if (me->mode == CT_RTT_NONE && timed)
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
	if (f & TH_FIN)
		return 0;   /* neither timed nor a sample (see ct_rtt_update) */
	if (peer->mode != CT_RTT_NONE && (f & TH_ACK)) {
		if (peer->mode == CT_RTT_TS ? (p->has_ts && p->tsecr == peer->ref)
					    : !seq_before(p->ack, peer->ref))
			return 1;
	}
	if (me->mode != CT_RTT_NONE)
		return 0;
	/* (a pure ACK's new TSval reads the clock: whether it is timed, ct_rtt_update decides, as
	 * a test here costs the verifier more than the clock costs a packet) */
	if (p->has_ts)
		return !(me->flags & CT_RTT_F_TSVAL) || p->tsval != me->ts_max;
	/* without timestamps: new data only (a retransmission is not timed) */
	return p->datalen && seq_after(p->seq + p->datalen, e->dir[d & 1].td_end);
}
#endif

#endif /* CT_LIB_RTT_H */

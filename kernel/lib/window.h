/* lib/window.h: netfilter's TCP window tracking (nf_conntrack_proto_tcp.c tcp_in_window):
 * per direction td_end, td_maxend, td_maxwin; a segment outside them is INVALID. */
#ifndef CT_LIB_WINDOW_H
#define CT_LIB_WINDOW_H

#include "common.h"
#include "seq.h"


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

#endif /* CT_LIB_WINDOW_H */

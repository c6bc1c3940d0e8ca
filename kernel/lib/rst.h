/* lib/rst.h: which RSTs count (RFC 5961 section 3): the exact one resets, one inside the window
 * draws a challenge ACK, the rest are ignored. */
#ifndef CT_LIB_RST_H
#define CT_LIB_RST_H

#include "common.h"
#include "seq.h"


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

#endif /* CT_LIB_RST_H */

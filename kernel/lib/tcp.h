/* lib/tcp.h: the TCP state machine for a segment of an existing flow (lock held).
 *
 * Each flow keeps both endpoints' states as Linux names them, inferred from the wire assuming
 * every packet the tracker passes is delivered, and an overall state in netfilter's vocabulary
 * (it drives the timeout). The README's table (its TCP section):
 *
 *   on the wire                                   opener       responder    overall
 *   SYN                                           SYN_SENT     SYN_RECV     SYN_SENT
 *   SYN/ACK                                       ESTABLISHED  SYN_RECV     SYN_RECV
 *   ACK                                           ESTABLISHED  ESTABLISHED  ESTABLISHED
 *   simultaneous open: the other's bare SYN       SYN_RECV     SYN_RECV     SYN_SENT2
 *   then each SYN/ACK                             ESTABLISHED  ESTABLISHED  SYN_RECV, ESTABLISHED
 *   opener's FIN                                  FIN_WAIT1    CLOSE_WAIT   FIN_WAIT
 *   its ACK                                       FIN_WAIT2    CLOSE_WAIT   CLOSE_WAIT
 *   responder's FIN (or FIN+ACK piggybacked)      TIME_WAIT    LAST_ACK     LAST_ACK
 *   last ACK                                      TIME_WAIT    CLOSE        TIME_WAIT
 *   FINs crossed (neither acknowledges the other) CLOSING      CLOSING      LAST_ACK
 *   each ACK of a crossed FIN                     TIME_WAIT    TIME_WAIT    TIME_WAIT
 *   RST at the receiver's RCV.NXT (any in-window  CLOSE        CLOSE        CLOSE
 *   RST during the handshake), either side, any state
 *
 * ct_tcp_existing takes a segment in this order, against RFC 9293 section 3.10.7 ("SEGMENT
 * ARRIVES"): a SYN on a finished connection opens a new one (3.10.7.4 fourth, RFC 6191); a reset
 * connection takes nothing but what fits its windows; the RST check (3.10.7.3 second, 3.10.7.4
 * second; rst.h); the SYN and SYN/ACK of the handshake and a SYN-SENT flow's other segments
 * (3.10.7.3's ACK and SYN checks); the sequence and acknowledgement windows (3.10.7.4 first and
 * fifth; window.h); last each endpoint's state from the ACK, then the FIN (3.10.7.4 fifth and
 * eighth; ct_tcp_endpoints). Where this differs from the RFC's order: the RFC checks the
 * window before the RST, here the RST has its own exact check (RFC 5961) first; and the
 * handshake's cases come before the window rules, which assume a synchronised connection. The
 * code was not reordered (each move shifts the verifier's count, and the first two steps
 * decide whether the rest applies at all). Functions are defined callee first; ct_tcp_existing,
 * last, is the entry. */
#ifndef CT_LIB_TCP_H
#define CT_LIB_TCP_H

#include "common.h"
#include "seq.h"
#include "flow.h"
#include "rst.h"
#include "window.h"


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

#endif /* CT_LIB_TCP_H */

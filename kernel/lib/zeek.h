/* lib/zeek.h: Zeek's conn_state and history letters for conn.log, kept per flow beside the
 * tracker's own judgement (which they never change). */
#ifndef CT_LIB_ZEEK_H
#define CT_LIB_ZEEK_H

#include "common.h"
#include "seq.h"


/* ---- Zeek's conn_state and history (conn.log) ---------------------------------------------------
 * Every packet of a flow the tracker sees, valid or not, goes through Zeek's own rules, as its TCP
 * analyzer applies them (src/packet_analysis/protocol/tcp/TCPSessionAdapter.cc: init_endpoint,
 * update_history, update_window, update_last_seq, the UpdateStateMachine family, the reassembler's
 * AckReceived and DataSent for content gaps) and its UDP analyzer (D/d, endpoint activity). This is
 * a record of what crossed the wire; the tracker's own judgement stays in its states and verdicts.
 * Kept modulo 2^32 (Zeek counts sequence wraps); checksums are not checked (no C/c letters). */
#define CT_ZEEK_TOO_LARGE_SEQ_DELTA 1048576

/* Values the Zeek code branches on are read from the packet's scratch memory at each use (ZV), and
 * its intermediate results go there too: the verifier does not track map memory, so the
 * branches below meet again in one verifier state instead of multiplying. (ZV is used outside
 * Zeek's code too: it stays in a CT_NO_ZEEK build.) */
#define ZV(x) (*(volatile typeof(x) *)&(x))

#ifdef CT_NO_ZEEK
/* Built without Zeek's record (ctrack --no-zeek): nothing of it runs. struct ct_zeek keeps its
 * place in the entry and the events (one layout for every build), all zeroes: nothing writes it,
 * and the readers take an all-zero record for "none" (ctrack/engine/zeek.py: conn_state and
 * history null). */
static __always_inline void ct_zeek_prev(struct ct_scratch *sc, struct ct_zeek *z) {}
static __always_inline void ct_zeek_update(struct ct_zeek *z, struct ct_pkt *p, __u32 d,
					   __u64 now) {}
static __always_inline void ct_zeek_invalid(struct ct_zeek *z, struct ct_pkt *p, __u32 d) {}
static __always_inline void ct_zeek_first(struct ct_zeek *z, struct ct_pkt *p, __u32 d,
					  __u64 now) {}
/* every segment is steady to a record that is not kept (lib/fastpath.h) */
static __always_inline int ct_zeek_steady(struct ct_zeek *z, struct ct_pkt *p, __u32 d, __u64 now)
{
	return 1;
}
#else

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

/* Zeek's AckSeq: the peer's highest acknowledgement of x's data moves forward only (an ACK of 0
 * far ahead is a broken stack's, not an acknowledgement). */
static __always_inline void ct_zeek_ack_seq(struct ct_zeek_dir *x, __u32 ack)
{
	if ((__s32)(ack - x->ack_seq) > 0 &&
	    !(ack == 0 && (__s32)(ack - x->ack_seq) > CT_ZEEK_TOO_LARGE_SEQ_DELTA))
		x->ack_seq = ack;
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

/* Flags and direction of the packet, read as ZV says (above). */
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
			if (!ZF(TH_RST))
				ct_zeek_ack_seq(peer, p->ack);
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

/* The steady state of ct_zeek_tcp, for the tracker's fast path (fastpath.h): a segment with ACK
 * and without SYN, FIN or RST, a non-zero window (the caller checked those: ct_fast_tcp's
 * first test), from direction d of a connection whose two
 * endpoints are ESTABLISHED or PARTIAL, and whose letter for it (D with payload, A without) this
 * direction has logged. For such a segment Zeek's rules only move the sequence marks -- the ACK
 * in the peer's space, this side's last sequence (or count a retransmission, T), then the
 * reassemblers (which may log a G: the same ct_zeek_acked) -- in ct_zeek_tcp's order.
 * Returns 0, having changed nothing, when the segment is not of that kind (ct_zeek_tcp takes
 * it). The fast path's test (tests/tracker/test_fastpath.py) runs conversations both ways and
 * compares the records. */
static __always_inline int ct_zeek_steady(struct ct_zeek *z, struct ct_pkt *p, __u32 d, __u64 now)
{
	struct ct_zeek_dir *ep = &z->dir[d & 1], *peer = &z->dir[(d ^ 1) & 1];
	__u32 seq = p->seq, ack = p->ack, len = p->datalen;
	__u16 bit = len ? CT_ZH_DATA : CT_ZH_ACK;
	if ((ep->state != CT_ZEEK_ESTABLISHED && ep->state != CT_ZEEK_PARTIAL) ||
	    (peer->state != CT_ZEEK_ESTABLISHED && peer->state != CT_ZEEK_PARTIAL) ||
	    !(z->flags & (d ? CT_ZF_SEEN_REPLY : CT_ZF_SEEN_ORIG)) ||
	    !(z->hist_seen & (d ? bit << 8 : bit)))
		return 0;
	__s32 grow = (__s32)(seq + len - ep->last_seq);
	z->last_ts = now;
	__u32 zack = 0;
	if ((__s32)(ack - peer->start_seq) >= 0) {
		zack = ack - peer->start_seq;
		ct_zeek_ack_seq(peer, ack);
	}
	if (grow > 0)
		ep->last_seq = seq + len;
	else if (len)
		ct_zeek_scaled(z, d, ep->rxmt, 'T');   /* payload not beyond what was sent */
	ct_zeek_acked(z, d ^ 1, zack);
	__u32 rel = seq - ep->start_seq;
	if (len && (__s32)rel >= 0)
		ct_zeek_data(ep, rel, len);
	return 1;
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
#endif /* CT_NO_ZEEK */

#endif /* CT_LIB_ZEEK_H */

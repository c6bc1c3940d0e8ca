/* lib/events.h: what a packet reports after its flow's lock: the event record (NEW, UPDATE,
 * DESTROY, ...) filled from its ct_result, and the per-tracker histograms of SYN options and
 * RTTs, and sending them (ct_emit, ct_after: what a packet's ct_result asks for once its
 * flow's lock is released). */
#ifndef CT_LIB_EVENTS_H
#define CT_LIB_EVENTS_H

#include "common.h"
#include "flow.h"

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

static __always_inline void ct_emit(__u8 type, struct ct_key *key, struct ct_result *r,
				    struct ct_scratch *sc, struct ct_zeek *zsrc, __u64 now,
				    __u8 close_reason, int prev)
{
#ifndef CT_NO_EVENTS
	struct ct_event *ev = ct_event_reserve();
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
	ct_event_submit(ev);
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
	if (r->prev_closed && (!r->prev_remove || ct_flow_delete(key) == 0)) {
		gone = 1;
		ct_emit(CT_EVENT_DESTROY, key, r, sc, zsrc, now, r->prev_closed, 1);
	}
#ifdef CT_REPLAY
	if (r->prev_ended || gone) {
		/* the replay writes one record per connection (ctrack replay -o zeek): this one's */
		struct ct_trace *t = ct_trace_get();
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
		ct_evict_push(&item);
		ct_emit(CT_EVENT_NEW, key, r, sc, zsrc, now, 0, 0);
	} else if (r->state_changed) {
		ct_emit(CT_EVENT_STATE, key, r, sc, zsrc, now, 0, 0);
	}
	if (r->closed) {
		stat_inc(r->close_reason == CT_CLOSE_RST ? CT_STAT_CLOSED_RST : CT_STAT_CLOSED_FIN);
		ct_emit(CT_EVENT_CLOSED, key, r, sc, zsrc, now, r->close_reason, 0);
	}
	if (r->push_evict)
		ct_evict_push(&item);
	if (r->ignored_syn)
		stat_inc(CT_STAT_IGNORED_SYN);
	if (r->rst_challenged)
		stat_inc(CT_STAT_RST_CHALLENGED);
}

#endif /* CT_LIB_EVENTS_H */

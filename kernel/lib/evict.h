/* lib/evict.h: eviction when the flow table is full: candidates from the eviction queue (unassured,
 * closing or expired flows, netfilter's early-drop choice), never a live assured flow; an evicted
 * flow's final record and DESTROY event. */
#ifndef CT_LIB_EVICT_H
#define CT_LIB_EVICT_H

#include "common.h"
#include "flow.h"
#include "events.h"

/* An evicted flow leaves the table: its final record copied out under its lock, then the
 * delete; whoever's delete succeeds reports it (DESTROY, reason evicted), once. In replay builds
 * its record goes to the trace too (ctrack replay -o zeek: one row per connection). */
static __always_inline int ct_evicted(struct ct_key *key, struct ct_entry *c, __u64 now)
{
	struct ct_result r = {};
	struct ct_scratch *sc = ct_scratch_get();
	if (!sc)
		return 0;
	bpf_spin_lock(&c->lock);
	ct_result_fill_prev(&r, c);
	r.prev_close_reason = c->close_reason ? c->close_reason : CT_CLOSE_EVICTED;
	ct_zeek_prev(sc, &c->zeek);
	ct_rtt_summarise(c, &sc->prev_rtt_sum);
	bpf_spin_unlock(&c->lock);
	if (ct_flow_delete(key) != 0)
		return 0;   /* another CPU (or the collector) removed it first: theirs to report */
	stat_inc(CT_STAT_EVICTED);
#ifdef CT_REPLAY
	struct ct_trace *t = ct_trace_get();
	if (t) {
		t->has_ended = 1;
		ct_fill_event(&t->ended, CT_EVENT_DESTROY, key, &r, sc, NULL, now, r.prev_close_reason, 1);
	}
#endif
	ct_emit(CT_EVENT_DESTROY, key, &r, sc, NULL, now, CT_CLOSE_EVICTED, 1);
	return 1;
}

/* Table full: try a few eviction candidates. A candidate goes if its flow expired, never
 * completed its handshake / got a reply, or is closing -- netfilter's early-drop choice. A live,
 * assured flow is never evicted. The check reads the entry without its lock: a packet racing
 * it can at worst see a closing or unassured flow evicted, which was evictable anyway. */
static __always_inline int ct_evict_one(__u64 now)
{
	struct ct_evict_item it;
	struct ct_entry *c = NULL;
	for (int i = 0; i < CT_EVICT_TRIES; i++) {
		if (ct_evict_pop(&it))
			return 0;
		c = ct_flow_lookup(&it.key);
		if (!c || c->first_seen != it.first_seen) {
			c = NULL;
			continue;   /* removed, or reopened since: a later item stands for it */
		}
		if (now >= c->expires || !(c->flags & CT_F_ASSURED) || ct_closing_state(c->state))
			break;
		/* Live and assured: not now, but it may expire or close later; back of the queue
		 * (dropping it would leave the flow out of reach of eviction for good). */
		ct_evict_push(&it);
		c = NULL;
	}
	if (!c)
		return 0;
	/* its end (event, replay record) out of the loop: one copy of that code, not eight */
	return ct_evicted(&it.key, c, now);
}

#endif /* CT_LIB_EVICT_H */

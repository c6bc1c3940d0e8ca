/* summary.h: what an event reports of a flow, read from its entry: states, counters, times
 * (CT_SUMMARY_FILL) and the RTT of its end events (ct_rtt_summarise). Shared by the tracker
 * (lib/flow.h fills struct ct_result under the entry's lock; lib/events.h and lib/evict.h report
 * CLOSED and DESTROY from it) and the collector (collector.c fills its DESTROY straight from the
 * entry), so that every end of a flow carries the same summary whoever reports it.
 *
 * Needs only kernel/ctrack.h (struct ct_entry, struct ct_rtt_summary). Built with CT_NO_RTT the
 * summary is all zero, as the entry's rtt (never filled then) would give anyway.
 */
#ifndef CTRACK_SUMMARY_H
#define CTRACK_SUMMARY_H

#include "ctrack.h"

/* The flow's states, counters and times, from entry e into dst: a struct ct_result or a struct
 * ct_event, which name these fields alike. A macro, not a function, because the two types
 * differ; the stores are the same either way. Caller holds e's lock. */
#define CT_SUMMARY_FILL(dst, e) do {                      \
		(dst)->state = (e)->state;                     \
		(dst)->orig_state = (e)->dir[0].state;         \
		(dst)->reply_state = (e)->dir[1].state;        \
		(dst)->orig_side = (e)->orig_side;             \
		(dst)->first_seen = (e)->first_seen;           \
		(dst)->last_seen = (e)->last_seen;             \
		(dst)->packets[0] = (e)->dir[0].packets;       \
		(dst)->packets[1] = (e)->dir[1].packets;       \
		(dst)->bytes[0] = (e)->dir[0].bytes;           \
		(dst)->bytes[1] = (e)->dir[1].bytes;           \
	} while (0)

/* The flow's RTT for its end event: the two halves' sums. */
static __always_inline void ct_rtt_summarise(struct ct_entry *e, struct ct_rtt_summary *s)
{
	__builtin_memset(s, 0, sizeof(*s));
#ifndef CT_NO_RTT
	struct ct_rtt *a = &e->rtt[0], *b = &e->rtt[1];
	s->samples = a->samples + b->samples;
	s->flags = 0;
	if ((a->flags & b->flags) & CT_RTT_F_HANDSHAKE) {
		s->handshake_us = a->hs_us + b->hs_us;
		s->flags |= CT_RTT_SUM_HANDSHAKE;
	}
	if (a->samples && b->samples) {
		s->srtt_us = (a->srtt8_us >> 3) + (b->srtt8_us >> 3);
		s->min_us = a->min_us + b->min_us;
		s->flags |= CT_RTT_SUM_BOTH;
	}
#endif
}

#endif /* CTRACK_SUMMARY_H */

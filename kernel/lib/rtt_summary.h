/* rtt_summary.h: a flow's RTT as its end events report it, shared by the tracker (lib/events.h: CLOSED,
 * DESTROY by a packet or an eviction) and the collector (collector.c: DESTROY by timeout or
 * flush), so that every end of a flow carries the same summary whoever reports it.
 *
 * Needs only kernel/ctrack.h (struct ct_entry, struct ct_rtt_summary). Built with CT_NO_RTT the
 * summary is all zero, as the entry's rtt (never filled then) would give anyway.
 */
#ifndef CTRACK_RTT_SUMMARY_H
#define CTRACK_RTT_SUMMARY_H

#include "ctrack.h"

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

#endif /* CTRACK_RTT_SUMMARY_H */

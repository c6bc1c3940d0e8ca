/* tcp_states.h: Linux's TCP states, defined once for the tracker and the observers.
 *
 * The numbers are Linux's own TCP_* (include/net/tcp_states.h). The tracker (ctrack.h, struct
 * ct_endpoint.state) keeps each endpoint's state inferred from the wire in them, so that it
 * compares directly with what sock:inet_sock_set_state reports as oldstate/newstate to the
 * observers (observers.h, tcpstates.c); that tracepoint's format file prints them with these
 * names, so they are part of its ABI. NONE (0) is the tracker's "not known yet", not a Linux state.
 * Prefixed so as not to clash with the kernel's own enum if a header brings it in.
 *
 * Python reads this file through the header that includes it (ctrack/engine/defs.py follows
 * `#include "..."`): one enumerator per line, `CT_TCP_<NAME> = <number>,`; the name Linux prints
 * is what follows CT_TCP_. Nothing here may be retyped in Python.
 */
#ifndef CTRACK_TCP_STATES_H
#define CTRACK_TCP_STATES_H

enum ct_tcp_endpoint {
	CT_TCP_NONE = 0,
	CT_TCP_ESTABLISHED = 1,
	CT_TCP_SYN_SENT = 2,
	CT_TCP_SYN_RECV = 3,
	CT_TCP_FIN_WAIT1 = 4,
	CT_TCP_FIN_WAIT2 = 5,
	CT_TCP_TIME_WAIT = 6,
	CT_TCP_CLOSE = 7,
	CT_TCP_CLOSE_WAIT = 8,
	CT_TCP_LAST_ACK = 9,
	CT_TCP_LISTEN = 10,
	CT_TCP_CLOSING = 11,
	CT_TCP_NEW_SYN_RECV = 12,
};

#endif /* CTRACK_TCP_STATES_H */

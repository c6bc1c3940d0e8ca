/* observers.h: definitions shared by the observers' C programs (tcpstates.c, tcprtt.c) and read
 * by their Python (ctrack/observers/defs.py, through ctrack/engine/defs.py), defined once here.
 *
 * Python parses it with ctrack/engine/defs.py (the same parser as ctrack.h): the TCP states come
 * from tcp_states.h, included below; OBS_* numeric macros are read by name. Nothing here may be
 * retyped in Python.
 *
 * Only tracepoint arguments and uapi numbers are used: no kernel-internal struct is read, so the
 * header tree BCC compiles against need not match the running kernel.
 */
#ifndef CTRACK_OBSERVERS_H
#define CTRACK_OBSERVERS_H

/* ---- TCP states ------------------------------------------------------------------------------ */
/* sock:inet_sock_set_state reports oldstate/newstate as Linux's TCP_* numbers: enum ct_tcp_endpoint
 * (CT_TCP_*), defined once for the tracker and the observers. */
#include "tcp_states.h"

/* ---- Numbers from the uapi ------------------------------------------------------------------- */
#define OBS_AF_INET 2
#define OBS_AF_INET6 10
#define OBS_IPPROTO_TCP 6

/* ---- Filters ---------------------------------------------------------------------------------
 * The Python side prepends a block of #defines to a program's text, one per filter the user
 * asked for; a filter not asked for is not defined and costs nothing. Each one defaults to
 * "accept" here so the programs can test them unconditionally.
 *   OBS_FAMILY         only this address family
 *   OBS_LPORT_OK(p)    local port p (host order) is wanted
 *   OBS_RPORT_OK(p)    remote port p is wanted
 *   OBS_LADDR_OK(f, a) local address a (u8[16], IPv4 in the first 4 bytes) of family f is wanted
 *   OBS_RADDR_OK(f, a) same for the remote address
 */
#if defined(OBS_LADDR_OK) || defined(OBS_RADDR_OK)
#define OBS_ADDR_FILTER 1
#endif
#ifndef OBS_LPORT_OK
#define OBS_LPORT_OK(p) 1
#endif
#ifndef OBS_RPORT_OK
#define OBS_RPORT_OK(p) 1
#endif
#ifndef OBS_LADDR_OK
#define OBS_LADDR_OK(f, a) 1
#endif
#ifndef OBS_RADDR_OK
#define OBS_RADDR_OK(f, a) 1
#endif
#ifdef OBS_FAMILY
#define OBS_FAMILY_OK(f) ((f) == OBS_FAMILY)
#else
#define OBS_FAMILY_OK(f) 1
#endif
/* The first test of both programs: family and ports, all compiled away when not asked for. */
#define OBS_WANTED(family, lport, rport) \
	(OBS_FAMILY_OK(family) && OBS_LPORT_OK(lport) && OBS_RPORT_OK(rport))

/* Copying addresses out of a tracepoint record: through bpf_probe_read_kernel, not plain loads.
 * With plain loads clang may merge the IPv4 and IPv6 branches into one load at a computed
 * offset from the context pointer, which the verifier refuses ("dereference of modified ctx
 * ptr"); the helper keeps each copy at a fixed offset whatever the optimiser does. */
#define OBS_COPY(dst, src, n) bpf_probe_read_kernel((dst), (n), (const void *)(src))

/* Ring buffer size in pages (a power of two); small values are used by the tests to force loss. */
#ifndef OBS_RINGBUF_PAGES
#define OBS_RINGBUF_PAGES 64
#endif

#endif /* CTRACK_OBSERVERS_H */

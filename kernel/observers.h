/* observers.h: definitions shared by the observers' C programs (tcpstates.c, tcprtt.c) and read
 * by their Python (ctrack/observers/defs.py), defined once here.
 *
 * Parsing rules for ctrack/observers/defs.py: `enum obs_tcp_state` is written one enumerator per
 * line as `OBS_TCP_<NAME> = <number>,`; Python strips the OBS_TCP_ prefix to get the name Linux
 * prints (ESTABLISHED, SYN_SENT, ...). Nothing here may be retyped in Python.
 *
 * Only tracepoint arguments and uapi numbers are used: no kernel-internal struct is read, so the
 * header tree BCC compiles against need not match the running kernel.
 */
#ifndef CTRACK_OBSERVERS_H
#define CTRACK_OBSERVERS_H

/* ---- TCP states ------------------------------------------------------------------------------ */
/* Linux's TCP_* numbers (include/net/tcp_states.h), which sock:inet_sock_set_state reports as
 * oldstate/newstate. They are part of the tracepoint's ABI (its format file prints them with these
 * names). Prefixed so as not to clash with the kernel's own enum if a header brings it in. */
enum obs_tcp_state {
	OBS_TCP_ESTABLISHED = 1,
	OBS_TCP_SYN_SENT = 2,
	OBS_TCP_SYN_RECV = 3,
	OBS_TCP_FIN_WAIT1 = 4,
	OBS_TCP_FIN_WAIT2 = 5,
	OBS_TCP_TIME_WAIT = 6,
	OBS_TCP_CLOSE = 7,
	OBS_TCP_CLOSE_WAIT = 8,
	OBS_TCP_LAST_ACK = 9,
	OBS_TCP_LISTEN = 10,
	OBS_TCP_CLOSING = 11,
	OBS_TCP_NEW_SYN_RECV = 12,
};

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

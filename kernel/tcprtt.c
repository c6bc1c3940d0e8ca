/* tcprtt.c: the kernel's smoothed RTT of TCP connections, from tcp:tcp_probe.
 *
 * tcp_probe fires for segments received on established sockets (tcp_rcv_established); its
 * srtt argument is tp->srtt_us >> 3, i.e. the smoothed RTT in microseconds. Only tracepoint
 * arguments are read: addresses come from its saddr/daddr blobs (a struct sockaddr_in or
 * sockaddr_in6, 28 bytes), ports and family from its own fields.
 *
 * Modes and filters arrive as #defines (see observers.h); what is not asked for is not compiled:
 *   OBS_MS            histogram in milliseconds instead of microseconds
 *   OBS_HIST_LADDR    one histogram per local address (OBS_HIST_RADDR: per remote address)
 *   OBS_EXTENDED      also sum and count per histogram (for the average)
 *   OBS_NO_HIST       no histogram at all (--flows alone)
 *   OBS_FLOWS         per-connection min/avg/max/last, keyed by the 4-tuple
 *   OBS_NETNS         only sockets user space has said are in the wanted network namespace
 */
#include "observers.h"

/* Offsets inside the sockaddr blobs (uapi struct sockaddr_in / sockaddr_in6). */
#define SIN_ADDR 4
#define SIN6_ADDR 8

#if defined(OBS_HIST_LADDR) || defined(OBS_HIST_RADDR)
#define OBS_PER_ADDR 1
#endif
/* Addresses are copied out only when something uses them (the plain histogram does not). */
#if defined(OBS_PER_ADDR) || defined(OBS_FLOWS) || defined(OBS_ADDR_FILTER)
#define OBS_NEED_ADDRS 1
#endif

/* Histogram key: the section's address first, then the slot (the layout BCC's print_log2_hist
 * reads). IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d) so one key type serves both. */
struct hist_key {
	u8 addr[16];
	u64 slot;
};

struct section {
	u8 addr[16];
};

struct totals {
	u64 sum;
	u64 count;
};

struct flow_key {
	u8 laddr[16];  /* IPv4 in the first 4 bytes */
	u8 raddr[16];
	u16 family;
	u16 lport;
	u16 rport;
	u16 pad;
};

struct flow_val {
	u64 first_ns;
	u64 last_ns;
	u64 sum_us;
	u64 count;
	u64 cookie;    /* socket cookie of the latest sample */
	u32 min_us;
	u32 max_us;
	u32 last_us;
	u32 pad;
};

#ifndef OBS_NO_HIST
BPF_HISTOGRAM(hist, struct hist_key, 64);
#endif
#ifdef OBS_EXTENDED
BPF_HASH(sums, struct section, struct totals, 1024);
#endif
#ifdef OBS_FLOWS
BPF_TABLE("lru_hash", struct flow_key, struct flow_val, flows, 16384);
#endif

#ifdef OBS_NETNS
/* Namespace verdicts by socket cookie: 0 = asked, 1 = in the namespace, 2 = not. A socket not
 * yet judged is reported once through netns_queries; user space answers by looking for its
 * cookie in a sock_diag dump made inside the namespace. Its samples until then are dropped. */
BPF_TABLE("lru_hash", u64, u8, netns_verdict, 65536);
struct netns_query {
	u64 cookie;
};
BPF_RINGBUF_OUTPUT(netns_queries, 8);
#endif
/* Queries that found the ring buffer full (each is asked again on a later segment). */
BPF_PERCPU_ARRAY(lost, u64, 1);

static __always_inline void to_mapped(u8 *dst, const u8 *addr, u16 family)
{
	if (family == OBS_AF_INET6) {
		__builtin_memcpy(dst, addr, 16);
	} else {
		__builtin_memset(dst, 0, 10);
		dst[10] = 0xff;
		dst[11] = 0xff;
		__builtin_memcpy(dst + 12, addr, 4);
	}
}

TRACEPOINT_PROBE(tcp, tcp_probe)
{
	u16 family = args->family;
	u16 lport = args->sport, rport = args->dport;
	if (!OBS_WANTED(family, lport, rport))
		return 0;

	u8 laddr[16] __attribute__((aligned(8))) = {};
	u8 raddr[16] __attribute__((aligned(8))) = {};
#ifdef OBS_NEED_ADDRS
	if (family == OBS_AF_INET6) {
		OBS_COPY(laddr, args->saddr + SIN6_ADDR, 16);
		OBS_COPY(raddr, args->daddr + SIN6_ADDR, 16);
	} else {
		OBS_COPY(laddr, args->saddr + SIN_ADDR, 4);
		OBS_COPY(raddr, args->daddr + SIN_ADDR, 4);
	}
	if (!OBS_LADDR_OK(family, laddr) || !OBS_RADDR_OK(family, raddr))
		return 0;
#endif

#ifdef OBS_NETNS
	u64 cookie = args->sock_cookie;
	u8 *verdict = netns_verdict.lookup(&cookie);
	if (!verdict) {
		u8 asked = 0;
		if (netns_verdict.insert(&cookie, &asked) == 0) {
			struct netns_query q = {.cookie = cookie};
			if (netns_queries.ringbuf_output(&q, sizeof(q), 0) != 0) {
				netns_verdict.delete(&cookie);  /* ask again on the next segment */
				int zero = 0;
				lost.increment(zero);
			}
		}
		return 0;
	}
	if (*verdict != 1)
		return 0;
#endif

	u32 srtt_us = args->srtt;

#ifdef OBS_FLOWS
	{
		struct flow_key fk = {.family = family, .lport = lport, .rport = rport};
		__builtin_memcpy(fk.laddr, laddr, 16);
		__builtin_memcpy(fk.raddr, raddr, 16);
		u64 now = bpf_ktime_get_ns();
		struct flow_val *fv = flows.lookup(&fk);
		if (!fv) {
			struct flow_val init = {.first_ns = now, .min_us = srtt_us, .max_us = srtt_us};
			flows.insert(&fk, &init);
			fv = flows.lookup(&fk);
		}
		if (fv) {
			/* Samples of one connection arrive under its socket lock, so plain updates are
			 * enough; the atomics guard the counters against one 4-tuple living in two
			 * network namespaces at once. */
			__sync_fetch_and_add(&fv->sum_us, srtt_us);
			__sync_fetch_and_add(&fv->count, 1);
			if (srtt_us < fv->min_us)
				fv->min_us = srtt_us;
			if (srtt_us > fv->max_us)
				fv->max_us = srtt_us;
			fv->last_us = srtt_us;
			fv->last_ns = now;
			fv->cookie = args->sock_cookie;
		}
	}
#endif

#ifndef OBS_NO_HIST
	u64 value = srtt_us;
#ifdef OBS_MS
	value /= 1000;
#endif
	struct hist_key hk = {};
#if defined(OBS_HIST_LADDR)
	to_mapped(hk.addr, laddr, family);
#elif defined(OBS_HIST_RADDR)
	to_mapped(hk.addr, raddr, family);
#endif
	hk.slot = bpf_log2l(value);
	hist.increment(hk);
#ifdef OBS_EXTENDED
	struct section sec = {};
	__builtin_memcpy(sec.addr, hk.addr, 16);
	struct totals zero_totals = {};
	struct totals *t = sums.lookup_or_try_init(&sec, &zero_totals);
	if (t) {
		/* microseconds even under OBS_MS: an average of ms-truncated samples is biased
		 * low by up to 1 ms; user space divides */
		__sync_fetch_and_add(&t->sum, srtt_us);
		__sync_fetch_and_add(&t->count, 1);
	}
#endif
#endif
	return 0;
}

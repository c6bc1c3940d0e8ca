/* tcpstates.c: every TCP state change of every socket, from sock:inet_sock_set_state.
 *
 * One record per transition goes to user space through a ring buffer, with the time the socket
 * spent in its old state. Reads only the tracepoint's arguments (BCC builds `args` from the
 * running kernel's format file), so no kernel struct layout is assumed.
 *
 * pid/comm: a transition runs either in the process that made it (connect, listen, close,
 * shutdown) or in softirq/timer context, where "current" is whatever task the CPU was running.
 * So the program records the socket's owner at the transitions only a process can make, and
 * reports that owner for the others; a socket never seen in process context has owner 0/"".
 * Server sockets born from a listener inherit the listener's owner (looked up by local port).
 *
 * Filters arrive as #defines (see observers.h) and cost nothing when absent.
 */
#include "observers.h"

struct state_event {
	u64 ts_ns;      /* bpf_ktime_get_ns() at the transition */
	u64 skaddr;     /* the struct sock's address: identifies the socket while it lives */
	u64 delta_ns;   /* time spent in oldstate; valid only if have_delta */
	u32 pid;        /* owner process (tgid), 0 = unknown */
	u16 family;
	u16 lport;
	u16 rport;
	u8 oldstate;
	u8 newstate;
	u8 have_delta;
	u8 pad[7];
	u8 laddr[16];   /* IPv4 in the first 4 bytes */
	u8 raddr[16];
	char comm[16];  /* owner's command, "" = unknown */
};

/* What we remember per socket: when it entered its current state, and who owns it. */
struct sock_info {
	u64 ts_ns;
	u32 pid;
	u32 pad;
	char comm[16];
};

struct owner {
	u32 pid;
	u32 pad;
	char comm[16];
};

BPF_RINGBUF_OUTPUT(events, OBS_RINGBUF_PAGES);
/* A failed ringbuf_output (buffer full) is counted here, per CPU, and reported at exit. */
BPF_PERCPU_ARRAY(lost, u64, 1);
/* LRU: a socket that never reaches CLOSE while we watch (it predates us, or the event was
 * lost) must not pin an entry for ever. */
BPF_TABLE("lru_hash", u64, struct sock_info, socks, 65536);
BPF_TABLE("lru_hash", u16, struct owner, listeners, 4096);

/* Transitions only a system call makes, so "current" is the socket's owner. */
static __always_inline int process_context(int o, int n)
{
	return (o == CT_TCP_CLOSE && (n == CT_TCP_SYN_SENT || n == CT_TCP_LISTEN)) ||
	       (o == CT_TCP_ESTABLISHED && n == CT_TCP_FIN_WAIT1) ||
	       (o == CT_TCP_CLOSE_WAIT && n == CT_TCP_LAST_ACK) ||
	       (o == CT_TCP_LISTEN && n == CT_TCP_CLOSE);
}

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
	if (args->protocol != OBS_IPPROTO_TCP)
		return 0;
	u16 family = args->family;
	u16 lport = args->sport, rport = args->dport;
	if (!OBS_WANTED(family, lport, rport))
		return 0;

	struct state_event ev = {};
	if (family == OBS_AF_INET6) {
		OBS_COPY(ev.laddr, args->saddr_v6, 16);
		OBS_COPY(ev.raddr, args->daddr_v6, 16);
	} else {
		OBS_COPY(ev.laddr, args->saddr, 4);
		OBS_COPY(ev.raddr, args->daddr, 4);
	}
	if (!OBS_LADDR_OK(family, ev.laddr) || !OBS_RADDR_OK(family, ev.raddr))
		return 0;

	u64 sk = (u64)args->skaddr;
	int o = args->oldstate, n = args->newstate;
	u64 now = bpf_ktime_get_ns();
	ev.ts_ns = now;
	ev.skaddr = sk;
	ev.family = family;
	ev.lport = lport;
	ev.rport = rport;
	ev.oldstate = o;
	ev.newstate = n;

	struct sock_info info = {};
	struct sock_info *prev = socks.lookup(&sk);
	/* LISTEN -> SYN_RECV is a child's birth: an entry under its address is a dead socket's. */
	if (o == CT_TCP_LISTEN && n == CT_TCP_SYN_RECV)
		prev = 0;
	if (prev) {
		ev.delta_ns = now - prev->ts_ns;
		ev.have_delta = 1;
		info.pid = prev->pid;
		__builtin_memcpy(info.comm, prev->comm, sizeof(info.comm));
	}
	if (process_context(o, n)) {
		info.pid = bpf_get_current_pid_tgid() >> 32;
		bpf_get_current_comm(info.comm, sizeof(info.comm));
		if (n == CT_TCP_LISTEN) {
			struct owner ow = {.pid = info.pid};
			__builtin_memcpy(ow.comm, info.comm, sizeof(ow.comm));
			listeners.update(&lport, &ow);
		}
	} else if (o == CT_TCP_LISTEN && n == CT_TCP_SYN_RECV) {
		/* A child socket is a clone of its listener, hence the old state LISTEN: its owner
		 * is the listener's (found by local port, which it shares). */
		struct owner *ow = listeners.lookup(&lport);
		if (ow) {
			info.pid = ow->pid;
			__builtin_memcpy(info.comm, ow->comm, sizeof(info.comm));
		}
	}
	ev.pid = info.pid;
	__builtin_memcpy(ev.comm, info.comm, sizeof(ev.comm));

	if (n == CT_TCP_CLOSE) {
		socks.delete(&sk);
		if (o == CT_TCP_LISTEN)
			listeners.delete(&lport);
	} else {
		info.ts_ns = now;
		socks.update(&sk, &info);
	}

	if (events.ringbuf_output(&ev, sizeof(ev), 0) != 0) {
		int zero = 0;
		lost.increment(zero);
	}
	return 0;
}

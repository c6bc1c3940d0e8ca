/* tracker.c: ctrack's connection tracker, one source for XDP (ct_xdp) and TC (ct_tc).
 *
 * Parses Ethernet/VLAN/IPv4/IPv6/TCP/UDP/ICMP with strict bounds, keeps a flow table of TCP and
 * UDP connections with a TCP state machine per endpoint, validates sequence and acknowledgement
 * numbers per direction (netfilter's td_end/td_maxend/td_maxwin rules), honours only in-window
 * RSTs (RFC 5961), expires flows per state, and counts and reports what it sees.
 *
 * Compiled by BCC at run time; ctrack/tracker.py chooses the build with -D options:
 *   CT_ENFORCE      drop INVALID packets (default: observe, pass everything)
 *   CT_PICKUP       create flows from mid-stream ACKs (default: such packets are INVALID NO_FLOW)
 *   CT_REDIRECT_A/B bump in the wire: a packet arriving on ifindex A leaves on B and vice versa
 *   CT_REPLAY       the clock comes from the `trace` map (capture timestamps) and the verdict of
 *                   the last packet is written there, for replay and tests
 *   CT_NO_EVENTS    no ring buffer events at all
 *   CT_TC_EGRESS    ct_tc also runs at egress of the interface it observes (ctrack run -i)
 *   CT_NO_RTT       no passive RTT (no per-segment timestamp read, no fine clock; ct_entry.rtt
 *                   stays zero)
 *   CT_NO_FASTPATH  every packet takes the general path (lib/fastpath.h; for its test)
 *   CT_NO_SYNOPTS   no summary of the SYNs' options (ct_entry.synopts stays zero)
 *   CT_BENCH_STOP   bench/fastpath_parts.py's builds that stop early (see ct_process)
 *   CT_NO_ZEEK      no Zeek conn_state/history record (lib/zeek.h; ct_entry.zeek and the events'
 *                   stay zero)
 *   CT_TIMEOUT_*, CT_TABLE_SIZE   see ctrack.h
 *
 * Reads only packet bytes and uapi headers, never a kernel-internal struct: it loads on any kernel
 * whatever headers BCC compiles against.
 *
 * The parts live in lib/, one header per concern, included below in dependency order (listed in
 * docs/architecture.md). This file keeps the maps with every map call (BCC rewrites map calls
 * such as flows.lookup() in the file it compiles only, not in included headers): one small
 * accessor per map operation for the headers, the clock, ct_related and ct_trace_icmp; then the
 * packet path (ct_update, ct_process, ct_decide) and the two hooks.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/if_packet.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/udp.h>

#include "ctrack.h"

#include "lib/common.h"
#include "lib/seq.h"
#include "lib/tcpopts.h"
#include "lib/parse.h"
#include "lib/zeek.h"
#include "lib/rtt.h"
#include "lib/flow.h"
#include "lib/rst.h"
#include "lib/window.h"
#include "lib/tcp.h"
#include "lib/fastpath.h"
#include "lib/events.h"
#include "lib/evict.h"

/* ---- Maps ------------------------------------------------------------------------------------ */
/* The flow table: preallocated hash (no allocation on the packet path; a full table fails the
 * insert cleanly, and ctrack decides what to evict instead of an LRU evicting a live flow). */
BPF_TABLE("hash", struct ct_key, struct ct_entry, flows, CT_TABLE_SIZE);
BPF_PERCPU_ARRAY(stats, struct ct_stats, 1);
/* Flows that may be evicted when the table is full: an item is pushed when a flow is created
 * (unassured) and when it starts closing, checked again when popped, and pushed back while its
 * flow is live and assured (it may expire or close later). Oldest overwritten when full. */
BPF_QUEUE(evict_queue, struct ct_evict_item, CT_EVICT_QUEUE_SIZE);
#ifndef CT_NO_EVENTS
BPF_RINGBUF_OUTPUT(events, CT_RINGBUF_PAGES);
#endif
/* Never used by the program: it gives user space struct ct_event's layout as BCC derives it
 * for maps (BCC's ring-buffer decoder does not understand the __u64 typedefs). */
BPF_ARRAY(event_layout, struct ct_event, 1);
#ifdef CT_REPLAY
BPF_ARRAY(trace, struct ct_trace, 1);
#endif
BPF_PERCPU_ARRAY(scratch, struct ct_scratch, 1);
/* A packet's ct_result lives in per-CPU map memory, not on the stack. Why: the verifier tracks
 * every constant a stack slot holds, so each path through the TCP state machine that leaves
 * different flags in the result is a state of its own that the code after it is verified
 * again for; map memory holds unknown values, and those paths merge. On the stack, the RTT
 * update on top of the state machine took the verifier past its 1,000,000-instruction limit. */
BPF_PERCPU_ARRAY(results, struct ct_result, 1);

/* ---- Map accesses: BCC rewrites map calls in this file only (lib/common.h declares these) ---- */
static __always_inline struct ct_stats *stats_get(void)
{
	__u32 z = 0;
	return stats.lookup(&z);
}

#ifdef CT_REPLAY
static __always_inline struct ct_trace *ct_trace_get(void)
{
	__u32 z = 0;
	return trace.lookup(&z);
}
#endif

static __always_inline struct ct_scratch *ct_scratch_get(void)
{
	__u32 z = 0;
	return scratch.lookup(&z);
}

static __always_inline struct ct_entry *ct_flow_lookup(struct ct_key *key)
{
	return flows.lookup(key);
}

static __always_inline int ct_flow_delete(struct ct_key *key)
{
	return flows.delete(key);
}

/* The eviction queue overwrites its oldest item when full (BPF_EXIST). */
static __always_inline void ct_evict_push(struct ct_evict_item *it)
{
	evict_queue.push(it, BPF_EXIST);
}

static __always_inline int ct_evict_pop(struct ct_evict_item *it)
{
	/* compared, not returned: before its rewrite BCC types .pop() as returning a pointer, and
	 * clang would warn on stderr */
	return evict_queue.pop(it) != 0;   /* 0: an item was taken */
}

#ifndef CT_NO_EVENTS
static __always_inline struct ct_event *ct_event_reserve(void)
{
	return events.ringbuf_reserve(sizeof(struct ct_event));
}

static __always_inline void ct_event_submit(struct ct_event *ev)
{
	events.ringbuf_submit(ev, 0);
}
#endif

#ifdef CT_REPLAY
/* Replays run on the capture's clock, written by user space before each packet: both clocks
 * below read it. */
static __always_inline __u64 ct_replay_now(void)
{
	struct ct_trace *t = ct_trace_get();
	return t ? t->now : 0;
}
#endif

/* The clock of RTT samples: fine (RTTs of a few ms need better than a jiffy); the capture's in
 * replays. Read only for TCP segments of builds with RTT. */
static __always_inline __u64 ct_now_fine(void)
{
#ifdef CT_REPLAY
	return ct_replay_now();
#else
	return bpf_ktime_get_ns();
#endif
}

static __always_inline __u64 ct_now(void)
{
#ifdef CT_REPLAY
	return ct_replay_now();
#else
	/* CLOCK_MONOTONIC_COARSE: one jiffy of resolution is nothing beside timeouts counted in
	 * seconds, and it costs a quarter of the fast path less than bpf_ktime_get_ns (measured
	 * with bench/fastpath.py: 88 -> 65 ns per established packet). */
	return bpf_ktime_get_coarse_ns();
#endif
}


/* Does this segment restart the flow in a live entry (lock held, d its direction)? The state
 * machine decides it below (ct_tcp_existing); Zeek's record must restart first: 1 for a SYN on a
 * finished connection (TIME_WAIT, or reset), 2 for the SYN/ACK answering a SYN remembered inside
 * a live connection (restarted from that SYN). */
#ifndef CT_NO_ZEEK
static __always_inline __u8 ct_zeek_restarts(struct ct_entry *e, struct ct_pkt *p, __u32 d)
{
	__u8 f = p->tcp_flags & (TH_SYN | TH_ACK | TH_RST | TH_FIN);
	if (p->key.proto != IPPROTO_TCP || p->bad_flags)
		return 0;
	if (f == TH_SYN && (e->state == CT_STATE_TIME_WAIT || e->state == CT_STATE_CLOSE))
		return 1;
	if (f == (TH_SYN | TH_ACK) && !(e->flags & CT_F_RESET) && (e->flags & CT_F_IGNORED_SYN) &&
	    d != e->ignored_dir && p->ack == e->ignored_seq + 1) {
		p->zseed = e->ignored_seq;
		return 2;
	}
	return 0;
}
#endif

/* Handles a tracked packet for entry e (lock taken here). */
static __always_inline void ct_update(struct ct_entry *e, struct ct_pkt *p, __u64 now,
				      struct ct_result *r)
{
	bpf_spin_lock(&e->lock);
	if (now >= e->expires) {
		/* Expired: the entry counts as absent. Its flow ends here (once), and the packet
		 * opens a new one if it can. */
		ct_prev_end(e, r, CT_CLOSE_TIMEOUT);
		ct_result_fill(r, e);
		ct_rtt_summarise(e, &ct_scratch_of(p)->prev_rtt_sum);
		ct_zeek_prev(ct_sc(p), &e->zeek);   /* for its DESTROY, and the replay's record */
		if (!ct_can_open(p)) {
			/* Nothing takes the entry: it leaves the table now (ct_after deletes it),
			 * unless a remover claimed it already. */
			r->prev_remove = !(e->flags & CT_F_DYING);
			e->flags |= CT_F_DYING;
			bpf_spin_unlock(&e->lock);
			r->klass = CT_CLASS_INVALID;
			r->reason = p->bad_flags ? CT_REASON_TCP_BAD_FLAGS : CT_REASON_TCP_NO_FLOW;
			return;
		}
		r->prev_ended = 1;   /* the entry is reused: the replay's record of the old flow */
#ifndef CT_NO_ZEEK
		__builtin_memset(&e->zeek, 0, sizeof(e->zeek));
#endif
		ct_flow_init(e, p, now);
		r->klass = CT_CLASS_NEW;
		r->created = 1;
		r->reopened = 1;
	} else {
		r->old_state = e->state;
#ifndef CT_NO_ZEEK
		p->zrestart = ct_zeek_restarts(e, p, (p->side == e->orig_side) ? CT_DIR_ORIG : CT_DIR_REPLY);
#endif
	}
	/* Zeek sees every packet of the flow, valid or not, and before the state machine: its many
	 * paths need not each be followed through Zeek's rules (the verifier's budget). A flow the
	 * state machine is about to restart gets a new record here (p->zrestart). */
	ct_zeek_update(&e->zeek, p, (p->side == e->orig_side) ? CT_DIR_ORIG : CT_DIR_REPLY, now);
	if (!r->reopened) {
		__u32 d = (p->side == e->orig_side) ? CT_DIR_ORIG : CT_DIR_REPLY;
		if (p->bad_flags) {
			r->klass = CT_CLASS_INVALID;
			r->reason = CT_REASON_TCP_BAD_FLAGS;
		} else if (p->key.proto == IPPROTO_UDP) {
			r->klass = CT_CLASS_ESTABLISHED;
			if (d == CT_DIR_REPLY && !(e->flags & CT_F_SEEN_REPLY)) {
				e->flags |= CT_F_ASSURED;
				e->state = CT_STATE_ESTABLISHED;
			}
		} else {
#ifndef CT_NO_RTT
			/* what tells ct_rtt_update a retransmission, before the segment moves it */
			p->rtt_prev_flags = e->dir[d & 1].flags;
			p->rtt_prev_isn = e->dir[d & 1].isn;
			p->rtt_prev_end = e->dir[d & 1].td_end;
			p->rtt_go = 1;
#endif
			if (p->tcp_flags & TH_SYN)   /* it may end the flow and open another */
				ct_rtt_summarise(e, &ct_scratch_of(p)->prev_rtt_sum);
			ct_tcp_existing(e, p, d, now, r);
		}
	}

	r->has_flow = 1;
#ifndef CT_NO_RTT
	/* a flow (re)started by this packet (p->rtt_init, ct_flow_init), or a valid segment */
	if (ZV(p->rtt_go) && (ZV(p->rtt_init) || (r->klass != CT_CLASS_INVALID && !r->created)))
		ct_rtt_update(e, p, ZV(p->rtt_init) ? CT_DIR_ORIG :
			      (p->side == e->orig_side) ? CT_DIR_ORIG : CT_DIR_REPLY,
			      ZV(p->rtt_prev_flags), ZV(p->rtt_prev_isn), ZV(p->rtt_prev_end));
#endif
	if (r->klass != CT_CLASS_INVALID) {
		/* A remembered SYN restarts the flow only if its SYN/ACK is the connection's very
		 * next packet (netfilter's rule): once anything else passed -- the peer's challenge
		 * ACK above all -- the old connection stands, and a SYN/ACK later is no answer to it
		 * (a blind attacker's, which would otherwise take the flow over). */
		if (!r->ignored_syn && !r->created)
			e->flags &= ~CT_F_IGNORED_SYN;
		__u32 d = (p->side == e->orig_side) ? CT_DIR_ORIG : CT_DIR_REPLY;
		if (d == CT_DIR_REPLY)
			e->flags |= CT_F_SEEN_REPLY;
		if (p->key.proto == IPPROTO_TCP) {
			e->state = ct_tcp_overall(e);
			/* a picked-up flow is ESTABLISHED from its first ACK, but assured (safe from
			 * eviction) only once the other side has answered */
			if (e->state == CT_STATE_ESTABLISHED && (e->flags & CT_F_SEEN_REPLY))
				e->flags |= CT_F_ASSURED;
		}
		e->dir[d & 1].packets += 1;
		e->dir[d & 1].bytes += p->ip_len;
		e->last_seen = now;
		e->expires = now + ct_timeout_ns(e);
		if (!r->created && e->state != r->old_state)
			r->state_changed = 1;
		if (e->close_reason == CT_CLOSE_NONE) {
			if (e->flags & CT_F_RESET) {
				e->close_reason = CT_CLOSE_RST;
				r->closed = 1;
			} else if (e->state == CT_STATE_TIME_WAIT) {
				e->close_reason = CT_CLOSE_FIN;
				r->closed = 1;
			}
			if (r->closed)
				ct_rtt_summarise(e, &ct_scratch_of(p)->rtt_sum);
			r->close_reason = e->close_reason;
		}
		if (ct_closing_state(e->state) && !(e->flags & CT_F_EVICT_QUEUED)) {
			e->flags |= CT_F_EVICT_QUEUED;
			r->push_evict = 1;
		}
	}
	if (r->klass == CT_CLASS_INVALID)
		ct_zeek_invalid(&e->zeek, p, (p->side == e->orig_side) ? CT_DIR_ORIG : CT_DIR_REPLY);
	ct_result_fill(r, e);
	bpf_spin_unlock(&e->lock);
}


/* ---- The packet path -------------------------------------------------------------------------- */
/* An ICMP error about a flow: RELATED when the table has the flow (and, for TCP, the quoted
 * sequence number is one its sender could have sent unacknowledged: RFC 5927's check, which is
 * what keeps a blind attacker's forged "fragmentation needed" from reaching the endpoint). The
 * flow is only read: an error changes no state, counter or timeout, as in netfilter. */
static __always_inline __u8 ct_related(struct ct_pkt *p, struct ct_result *r, __u64 now)
{
	struct ct_entry *e = flows.lookup(&p->key);
	r->klass = CT_CLASS_INVALID;
	r->reason = CT_REASON_ICMP_NO_FLOW;
	if (!e)
		return r->klass;
	bpf_spin_lock(&e->lock);
	if (now < e->expires) {
		r->has_flow = 1;
		ct_result_fill(r, e);
		r->klass = CT_CLASS_RELATED;
		r->reason = CT_REASON_NONE;
		if (p->key.proto == IPPROTO_TCP && !(e->flags & CT_F_PICKED_UP)) {
			__u32 d = (p->side == e->orig_side) ? CT_DIR_ORIG : CT_DIR_REPLY;
			struct ct_dir *snd = &e->dir[d], *rcv = &e->dir[d ^ 1];
			/* SND.UNA as the tracker knows it: the receiver's highest ACK, which may run
			 * ahead of what the sender has heard; so allow a window's worth before it. */
			__u32 una = (rcv->flags & CT_DF_MAXACK_SET) ? rcv->td_maxack : snd->isn;
			__u32 slack = rcv->td_maxwin > CT_MAX_ACK_WINDOW_FLOOR ? rcv->td_maxwin :
				      CT_MAX_ACK_WINDOW_FLOOR;
			if (!(snd->flags & CT_DF_SYN) || seq_after(p->seq, snd->td_end) ||
			    seq_before(p->seq, una - slack)) {
				r->klass = CT_CLASS_INVALID;
				r->reason = CT_REASON_ICMP_SEQ_WINDOW;
			}
		}
	}
	bpf_spin_unlock(&e->lock);
	return r->klass;
}

/* Replay builds: what an ICMP error was, for the replay's line (parsed 2: its quote led to a
 * flow key; 3: it did not). A no-op in live builds. */
static __always_inline void ct_trace_icmp(struct ct_pkt *p, __u8 parsed)
{
#ifdef CT_REPLAY
	__u32 z = 0;
	struct ct_trace *t = trace.lookup(&z);
	if (!t)
		return;
	t->parsed = parsed;
	t->side = p->side;
	t->seq = p->seq;
	t->icmp_type = p->icmp_type;
	t->icmp_code = p->icmp_code;
	t->icmp_outer[0] = p->icmp_outer[0];
	t->icmp_outer[1] = p->icmp_outer[1];
	t->icmp_rest = p->icmp_rest;
#endif
}

/* CT_BENCH_STOP=N (bench/fastpath_parts.py only, never a tool's build): the packet's path ends
 * after stage N, so that the bench can tell what each stage of the established path costs:
 * 1 the per-CPU state cleared, 2 the packet parsed, 3 the clock read and the flow looked up,
 * 4 the flow's lock taken and released. */
#ifndef CT_BENCH_STOP
#define CT_BENCH_STOP 0
#endif

static __always_inline __u8 ct_process(void *data, void *data_end, __u32 pkt_len,
				       struct ct_result *r, struct ct_key *key_out)
{
	__u32 z = 0;
	struct ct_scratch *sc = scratch.lookup(&z);
	if (!sc)
		return r->klass;   /* cannot happen: a one-slot array always has its slot */
	struct ct_pkt *p = &sc->pkt;
	__builtin_memset(p, 0, sizeof(*p));
	__u8 reason = CT_REASON_NONE;
	if (CT_BENCH_STOP == 1)
		return 0;
	int cls = ct_parse(data, data_end, pkt_len, p, &reason);
	r->len = p->ip_len ? p->ip_len : pkt_len;
	if (CT_BENCH_STOP == 2)
		return 0;
	if (cls == CT_CLASS_RELATED) {
		*key_out = p->key;
		ct_trace_icmp(p, 2);
		return ct_related(p, r, ct_now());
	}
	if (cls == CT_CLASS_INVALID && reason == CT_REASON_TCP_BAD_FLAGS) {
		/* INVALID whatever happens; its flow, if any, still records it in Zeek's history
		 * (I for FIN+RST, Q for SYN with FIN or RST), and nothing else changes */
		p->bad_flags = 1;
		cls = CT_CLASS_NEW;
	}
	if (cls != CT_CLASS_NEW) {
		if (p->icmp_error) {   /* an error whose quote was not usable: say what it was */
			*key_out = p->key;   /* only its family is set */
			ct_trace_icmp(p, 3);
		}
		r->klass = cls;
		r->reason = reason;
		return cls;
	}
	*key_out = p->key;
	__u64 now = ct_now();   /* only tracked packets need the clock */

#ifdef CT_REPLAY
	struct ct_trace *t = trace.lookup(&z);
	if (t) {
		t->parsed = 1;
		t->side = p->side;
		t->tcp_flags = p->tcp_flags;
		t->seq = p->seq;
		t->ack = p->ack;
		t->datalen = p->datalen;
		t->win = p->win;
	}
#endif

	/* The established fast path: one lookup, then the flow's own lock. */
	struct ct_entry *e = flows.lookup(&p->key);
	if (!e) {
		if (!ct_can_open(p)) {
			r->klass = CT_CLASS_INVALID;
			r->reason = p->bad_flags ? CT_REASON_TCP_BAD_FLAGS : CT_REASON_TCP_NO_FLOW;
			return r->klass;
		}
		struct ct_entry *ne = (struct ct_entry *)sc->entry;
#ifndef CT_NO_RTT
		if (p->key.proto == IPPROTO_TCP)
			p->rtt_now = ct_now_fine();   /* the opening segment is timed */
#endif
		ct_entry_build(ne, p, now);

		/* Insert only if absent: another CPU may have created the flow since our lookup. */
		int err = flows.insert(&p->key, ne);
		if (err && err != -EEXIST && ct_evict_one(now))
			err = flows.insert(&p->key, ne);
		if (err == -EEXIST) {
			e = flows.lookup(&p->key);   /* lost the race: handle it as an existing flow */
			p->synopts_dir = 0;          /* the entry built for nothing took the options */
		} else if (err) {
			stat_inc(CT_STAT_TABLE_FULL);
			r->klass = CT_CLASS_INVALID;
			r->reason = CT_REASON_TABLE_FULL;
			return r->klass;
		} else {
			r->klass = CT_CLASS_NEW;
			r->created = 1;
			r->has_flow = 1;
			ct_result_fill(r, ne);
			sc->zsrc = (__u64)(long)&ne->zeek;
			goto after;
		}
		if (!e) {
			r->klass = CT_CLASS_INVALID;
			r->reason = CT_REASON_TABLE_FULL;
			return r->klass;
		}
	}
	if (CT_BENCH_STOP == 3) {
		r->klass = CT_CLASS_ESTABLISHED;
		return 0;
	}
	if (CT_BENCH_STOP == 4) {
		bpf_spin_lock(&e->lock);
		e->last_seen = now;
		bpf_spin_unlock(&e->lock);
		r->klass = CT_CLASS_ESTABLISHED;
		return 0;
	}
#ifndef CT_NO_RTT
	/* the fine clock, before the lock (no helper calls under it), when there is anything to time */
	if (p->key.proto == IPPROTO_TCP && (p->rtt_now || ct_rtt_wants_clock(e, p)))
		p->rtt_now = ct_now_fine();
#endif
#ifndef CT_NO_FASTPATH
	/* most segments of a connection: lib/fastpath.h */
	if (p->key.proto == IPPROTO_TCP && ct_fast_tcp(e, p, now, r)) {
		ct_after_extras(p);   /* the RTT histogram; nothing else to report */
		return r->klass;
	}
#endif
	ct_update(e, p, now, r);
	if (p->bad_flags)
		r->has_flow = 0;   /* INVALID before any flow (it only added to Zeek's history) */
	if (r->reopened && flows.lookup(&p->key) != e) {
		/* The collector removed the expired entry between our lookup and our lock, or just
		 * after: the flow this packet opened lives in memory no longer in the table. Insert
		 * it afresh: a copy of what this packet made of it (the map leaves its lock word). */
		struct ct_entry *ne = (struct ct_entry *)sc->entry;
		bpf_probe_read_kernel(ne, sizeof(*ne), e);
		flows.insert(&p->key, ne);
	}
	sc->zsrc = (__u64)(long)&e->zeek;
after:
	/* one copy of what follows for both paths (see struct ct_scratch's zsrc) */
	ct_after(&p->key, r, sc, now);
	ct_after_extras(p);
	return r->klass;
}

/* Verdict and bookkeeping common to both hooks. Returns the action. */
static __always_inline __u8 ct_decide(struct ct_result *r, struct ct_key *key, __u32 ifindex,
				      __u32 *redirect_to)
{
	__u8 action = CT_ACTION_PASS;
#ifdef CT_ENFORCE
	if (r->klass == CT_CLASS_INVALID)
		action = CT_ACTION_DROP;
#endif
#if defined(CT_REDIRECT_A) && defined(CT_REDIRECT_B)
	if (action == CT_ACTION_PASS) {
		if (ifindex == CT_REDIRECT_A) {
			*redirect_to = CT_REDIRECT_B;
			action = CT_ACTION_REDIRECT;
		} else if (ifindex == CT_REDIRECT_B) {
			*redirect_to = CT_REDIRECT_A;
			action = CT_ACTION_REDIRECT;
		}
	}
#endif
	struct ct_stats *st = stats_get();
	if (st) {
		st->v[CT_STAT_PACKETS] += 1;
		st->v[CT_STAT_FASTPATH] += r->fast;
		__u32 k = r->klass < CT_CLASS_MAX ? r->klass : CT_CLASS_UNTRACKED;
		st->v[CT_STAT_CLASS + k] += 1;
		st->v[CT_STAT_BYTES_CLASS + k] += r->len;
		st->v[CT_STAT_ACTION + (action < CT_ACTION_MAX ? action : 0)] += 1;
		if (r->klass == CT_CLASS_INVALID && r->reason < CT_REASON_MAX)
			st->v[CT_STAT_REASON + r->reason] += 1;
	}
#ifdef CT_REPLAY
	__u32 z = 0;
	struct ct_trace *t = trace.lookup(&z);
	if (t) {
		t->klass = r->klass;
		t->reason = r->reason;
		t->action = action;
		t->has_flow = r->has_flow;
		t->state = r->state;
		t->orig_state = r->orig_state;
		t->reply_state = r->reply_state;
		t->key = *key;
	}
#endif
	return action;
}

int ct_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ct_key key = {};
	__u32 redirect_to = 0, z0 = 0;
	struct ct_result *r = results.lookup(&z0);
	if (!r)
		return XDP_PASS;   /* cannot happen: a one-element per-CPU array */
	__builtin_memset(r, 0, sizeof(*r));
#ifdef CT_XDP_FRAGS
	__u32 len = bpf_xdp_get_buff_len(ctx);
#else
	__u32 len = data_end - data;
#endif
#ifdef CT_REPLAY
	__u32 z = 0;
	struct ct_trace *t = trace.lookup(&z);
	if (t && t->wire_len > len)
		len = t->wire_len;
#endif
	/* Through map memory, so that the verifier takes the length as any u32: derived from
	 * data_end - data, its every range check in the parser split the paths further (the
	 * default XDP build then went past the verifier's 1,000,000-instruction limit). */
	r->len = len;
	ct_process(data, data_end, *(volatile __u32 *)&r->len, r, &key);
	__u8 action = ct_decide(r, &key, ctx->ingress_ifindex, &redirect_to);
	if (action == CT_ACTION_DROP)
		return XDP_DROP;
	if (action == CT_ACTION_REDIRECT)
		return bpf_redirect(redirect_to, 0);
	return XDP_PASS;
}

/* How many bytes the parser will read, as far as the linear part tells: the plain cases
 * (Ethernet, IPv4 or IPv6, TCP or UDP) exactly; anything else (VLAN tags, IPv6 extension
 * headers, headers cut by the linear part's end) as a generous 256. Non-IP: nothing. */
static __always_inline __u32 ct_tc_headers_len(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return 256;
	__u32 off = sizeof(*eth), l4;
	__u8 proto;
	if (eth->h_proto == htons(ETH_P_IP)) {
		struct iphdr *iph = data + off;
		if ((void *)(iph + 1) > data_end)
			return 256;
		l4 = off + iph->ihl * 4;
		proto = iph->protocol;
	} else if (eth->h_proto == htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;
		if ((void *)(ip6 + 1) > data_end)
			return 256;
		l4 = off + sizeof(*ip6);
		proto = ip6->nexthdr;
	} else if (eth->h_proto == htons(ETH_P_8021Q) || eth->h_proto == htons(ETH_P_8021AD_) ||
		   eth->h_proto == htons(ETH_P_PPPOE_SES_) || eth->h_proto == htons(ETH_P_MPLS_UC_) ||
		   eth->h_proto == htons(ETH_P_MPLS_MC_)) {
		return 256;   /* tags, PPPoE, labels: the parser's general case */
	} else {
		return 0;
	}
	if (proto == IPPROTO_UDP)
		return l4 + 8;
	if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6)
		return l4 + 8 + 60 + 8 + 8;   /* an error's quoted IP header (+ fragment header), ports, seq */
	if (proto != IPPROTO_TCP)
		return ct_ip6_ext(proto) ? 256 : l4;
	if (l4 > 128)
		return 256;
	__u8 *th = data + l4;
	if ((void *)(th + 13) > data_end)
		return l4 + 60;           /* the data offset is not even visible: the longest header */
	return l4 + ((th[12] >> 4) * 4);
}

int ct_tc(struct __sk_buff *skb)
{
#ifdef CT_TC_EGRESS
	/* The host's copy of its own multicast or broadcast (IP_MULTICAST_LOOP), handed back to
	 * the sending interface's ingress: the egress hook already took the original. On lo every
	 * packet comes back, but as PACKET_HOST, so there user space hooks ingress only. */
	if (skb->pkt_type == PACKET_LOOPBACK)
		return TC_ACT_OK;
#endif
	struct ct_key key = {};
	__u32 redirect_to = 0, z0 = 0;
	struct ct_result *r = results.lookup(&z0);
	if (!r)
		return TC_ACT_OK;   /* cannot happen: a one-element per-CPU array */
	__builtin_memset(r, 0, sizeof(*r));
	/* Headers beyond the linear part (some drivers) must be pulled in before parsing; but a
	 * pull into a GSO super-packet whose headers are all there copies payload for nothing
	 * (measured: 150 ns of a 418 ns run). So pull only what the headers need. */
	__u32 linear = skb->data_end - skb->data;
	__u32 want = ct_tc_headers_len((void *)(long)skb->data, (void *)(long)skb->data_end);
	if (want > skb->len)
		want = skb->len;
	if (want > linear)
		bpf_skb_pull_data(skb, want);
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	ct_process(data, data_end, skb->len, r, &key);
	__u8 action = ct_decide(r, &key, skb->ingress_ifindex, &redirect_to);
	if (action == CT_ACTION_DROP)
		return TC_ACT_SHOT;
	if (action == CT_ACTION_REDIRECT)
		return bpf_redirect(redirect_to, 0);
	return TC_ACT_OK;
}
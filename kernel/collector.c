/* collector.c: a running tracker's maps seen from another process, and its collector.
 *
 * Compiled by ctrack/live/maps.py with -DCT_PIN_DIR="/sys/fs/bpf/ctrack/<name>" and
 * -DCT_TABLE_SIZE=<the pinned table's max_entries>. Declaring the tracker's maps with
 * BPF_TABLE_PINNED makes BCC open the pinned maps instead of creating new ones, and gives Python
 * ctypes types built from the same kernel/ctrack.h as the tracker's: nothing is retyped.
 *
 * The collector's removals (ct_gc_remove, run by ctrack/live/collector.py): user space scans the
 * pinned table with batch lookups and picks the candidates (expired entries; for a flush, the
 * entries to remove); this program, of the tracker's own type (XDP) so that it loads wherever
 * the tracker loads, is run with BPF_PROG_TEST_RUN with the candidates packed in the test packet, one
 * struct ct_gc_cand (48 bytes: the key and the first_seen the scan saw) per candidate, up to
 * CT_GC_RUN_MAX per run. For each it
 *   - looks the entry up and takes its lock; leaves it unless it is still the flow the scan saw
 *     (same first_seen), still expired (mode GC) and not claimed by another remover;
 *   - claims it (CT_F_DYING), marks how its flow ended if it had not (timeout, flushed), builds
 *     the DESTROY event from the entry (final state, counters, times, Zeek record, the RTT
 *     summary as the tracker's end events carry it: kernel/rtt.h), unlocks, deletes the key;
 *   - if the delete succeeded (nobody removed it first), reports DESTROY (timeout / flushed)
 *     through the tracker's ring buffer and statistics;
 *   - writes the candidate's result (CT_GC_*) back over its first_seen in the packet: all user
 *     space reads of a run. Only ct_gc_remove_events (`ctrack gc -v`, flush, delete, which print
 *     what they removed) also leaves each candidate's event in gc_out.
 * Events used to travel in the packet both ways (about 350 bytes each with the RTT and the Zeek
 * record: 9 candidates per run, half the scan rate); a candidate is 48 bytes (73 per run).
 * Why not a BPF iterator (in the kernel, no copy): the kernel refuses tracing programs on
 * locked-down machines where XDP loads (issue 9); measured, this path meets the collector's
 * targets on a quiet machine (bench/gc.py, docs/top.md).
 *
 * The race left, and why it is harmless to live flows: see "Safety" in docs/top.md. In short,
 * the check and the removal are two steps (a bpf_spin_lock may not be held across a helper
 * call); an entry already expired at the check cannot become live again by time passing, only
 * by a packet that reinitialises it as a *new* flow in the instant between the two steps (the
 * tracker treats an expired entry as absent). Such a revival is counted (gc_stats.revived).
 */
#include "ctrack.h"
#include "lib/summary.h"

BPF_TABLE_PINNED("hash", struct ct_key, struct ct_entry, flows, CT_TABLE_SIZE, CT_PIN_DIR "/flows");
BPF_TABLE_PINNED("percpu_array", u32, struct ct_stats, stats, 1, CT_PIN_DIR "/stats");

/* The tracker's ring buffer, opened from its pin (BCC's BPF_RINGBUF_OUTPUT has no pinned
 * form; this is the same declaration with the pin path in the section name). The size is
 * the pinned map's, whatever is written here. */
struct events_table_t {
	int key;
	u32 leaf;
	int (*ringbuf_output)(void *, u64, u64);
	void *(*ringbuf_reserve)(u64);
	void (*ringbuf_discard)(void *, u64);
	void (*ringbuf_submit)(void *, u64);
	u32 max_entries;
};
__attribute__((section("maps/ringbuf:" CT_PIN_DIR "/events")))
struct events_table_t events = { .max_entries = CT_RINGBUF_PAGES * 4096 };

/* Gives user space struct ct_event's ctypes type (see the same map in tracker.c). */
BPF_ARRAY(event_layout, struct ct_event, 1);

/* The collector's totals, pinned beside the tracker's maps (BCC creates the pin on first use)
 * so that ctrack run, ctrack gc, ctrack flush, ctrack-top and the metrics all see the same
 * numbers. Per CPU: two processes may remove at once. */
struct ct_gc_stats {
	u64 scans;      /* complete GC passes (ct_gc_pass_done) */
	u64 scanned;    /* entries visited by GC passes */
	u64 removed;    /* expired entries removed (each reported DESTROY timeout) */
	u64 timeouts;   /* of which had not ended otherwise (counted closed_timeout) */
	u64 flushed;    /* entries removed by ctrack flush / delete */
	u64 revived;    /* removed entries a packet reinitialised between check and removal */
	u64 events_lost;/* ring buffer full when reporting */
};
BPF_TABLE_PINNED("percpu_array", u32, struct ct_gc_stats, gc_stats, 1, CT_PIN_DIR "/gc_stats");

#define CT_GC_MODE_GC 0         /* remove the candidates still expired */
#define CT_GC_MODE_FLUSH 1      /* remove the candidates whatever their state */

/* Result of one candidate, written over its first_seen (struct ct_gc_cand). */
#define CT_GC_REMOVED 1         /* removed by this run, DESTROY reported */
#define CT_GC_ENDED 2           /* its flow had not ended otherwise (closed_timeout/flushed) */
#define CT_GC_REVIVED 4         /* a packet reinitialised it between check and removal */
#define CT_GC_LOST 8            /* the ring buffer was full: its DESTROY is counted lost */

/* One candidate in the test packet. User space builds an array of them straight from the
 * scan's buffers (numpy, offsets from this type's BTF: gc_cand_layout below). */
struct ct_gc_cand {
	struct ct_key key;
	__u64 first_seen;    /* in: the first_seen the scan saw (0: any); out: the CT_GC_* result */
};

/* At most this many candidates per run: the test packet of an XDP program holds a page less
 * XDP's headroom and tailroom (3520 bytes on x86-64: 73 candidates); user space sends what fits
 * and resends what a smaller packet left out. */
#define CT_GC_RUN_MAX 73

/* Gives user space struct ct_gc_cand's ctypes type. */
BPF_ARRAY(gc_cand_layout, struct ct_gc_cand, 1);

/* One process's parameters for its runs: user space writes them before a pass. */
struct ct_gc_ctl {
	u64 now;          /* tracker clock (CLOCK_MONOTONIC_COARSE) sampled before the pass */
	u32 mode;         /* CT_GC_MODE_* */
	u32 pad;
	u64 scanned;      /* entries the pass looked at (for ct_gc_pass_done) */
};
BPF_ARRAY(gc_ctl, struct ct_gc_ctl, 1);

/* The event being built (per CPU: a run does not migrate; two processes may run at once). */
BPF_PERCPU_ARRAY(gc_event, struct ct_event, 1);

/* ct_gc_remove_events leaves here the event of each candidate of its last run (the DESTROY sent when
 * its result has CT_GC_REMOVED). Not pinned: each process has its own, like gc_ctl, and runs
 * one run at a time. */
BPF_ARRAY(gc_out, struct ct_event, CT_GC_RUN_MAX);

/* One candidate: ev->key is its key, want the first_seen the scan saw (0: any). On return ev is
 * the DESTROY event sent when removed; the CT_GC_* result is returned. The run's counts go to
 * tot and are folded into the maps once per run. */
static __always_inline u8 gc_remove(struct ct_event *ev, u64 want, u64 now, u32 mode,
				    struct ct_gc_stats *tot)
{
	struct ct_key key = ev->key;
	struct ct_entry *e = flows.lookup(&key);
	if (!e)
		return 0;

	u8 why = mode == CT_GC_MODE_GC ? CT_CLOSE_TIMEOUT : CT_CLOSE_FLUSHED;
	u8 res = 0;
	u64 first_seen = 0, last_seen = 0;
	bpf_spin_lock(&e->lock);
	if ((mode != CT_GC_MODE_GC || e->expires <= now) && (!want || e->first_seen == want) &&
	    !(e->flags & CT_F_DYING)) {
		/* Ours to remove: claimed, so that a packet finding it expired meanwhile (or reusing
		 * it for a new flow) leaves its DESTROY to us, and another collector or flush leaves
		 * it alone. Its end is counted once: close_reason stays set. */
		e->flags |= CT_F_DYING;
		res = CT_GC_REMOVED;
		if (e->close_reason == CT_CLOSE_NONE) {
			e->close_reason = why;
			res |= CT_GC_ENDED;
		}
		CT_SUMMARY_FILL(ev, e);   /* as the tracker fills its own (lib/summary.h) */
		first_seen = e->first_seen;
		last_seen = e->last_seen;
		__builtin_memcpy(&ev->zeek, &e->zeek, sizeof(ev->zeek));   /* conn_state, history */
		ct_rtt_summarise(e, &ev->rtt);   /* as the tracker's own end events carry it */
		ev->pad = 0;
	}
	bpf_spin_unlock(&e->lock);
	if (!res)
		return 0;   /* live again, another flow now, or another remover's */
	if (flows.delete(&key) != 0)
		return 0;   /* someone else removed it first (the tracker's eviction): theirs to report */

	/* The entry's memory outlives its removal (preallocated table): a packet that looked it up
	 * before the removal and reinitialised it after the check shows as a new first_seen. */
	if (e->first_seen != first_seen || e->last_seen != last_seen) {
		res |= CT_GC_REVIVED;
		tot->revived += 1;
	}
	if (mode == CT_GC_MODE_GC)
		tot->removed += 1;
	else
		tot->flushed += 1;
	if (res & CT_GC_ENDED)
		tot->timeouts += 1;   /* the run's flows ended here: closed_timeout or closed_flushed */
	ev->ts = bpf_ktime_get_ns();   /* as the tracker's events: CLOCK_MONOTONIC, read now */
	ev->type = CT_EVENT_DESTROY;
	ev->old_state = 0;
	ev->close_reason = why;
	struct ct_event *r = events.ringbuf_reserve(sizeof(struct ct_event));
	if (r) {
		__builtin_memcpy(r, ev, sizeof(*r));
		events.ringbuf_submit(r, 0);
	} else {
		res |= CT_GC_LOST;
		tot->events_lost += 1;
	}
	return res;
}

/* One run: the packet is up to CT_GC_RUN_MAX struct ct_gc_cand candidates. Returns how many it
 * handled (test runs do not interpret the value): a kernel whose test packet holds less than
 * user space assumed keeps the rest in fragments this program does not see, and user space
 * sends those again. collect (a constant: two programs) also leaves each event in gc_out. */
static __always_inline int gc_run(struct xdp_md *ctx, const int collect)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	u32 z = 0;
	struct ct_gc_ctl *c = gc_ctl.lookup(&z);
	if (!c)
		return XDP_ABORTED;
	u64 now = c->now;
	u32 mode = c->mode;
	struct ct_gc_stats tot = {};
	int i;
	for (i = 0; i < CT_GC_RUN_MAX; i++) {
		struct ct_gc_cand *p = data + i * sizeof(struct ct_gc_cand);
		if ((void *)(p + 1) > data_end)
			break;
		/* in map memory: helpers take keys from it, packet pointers do not survive the
		 * helper calls in between, and the event (with its Zeek record) is too big for the
		 * 512-byte stack beside the run's totals */
		struct ct_event *ev = gc_event.lookup(&z);
		if (!ev)
			break;
		/* every field is set when the candidate is removed (the event is used only then) */
		__builtin_memcpy(&ev->key, &p->key, sizeof(ev->key));
		u8 res = gc_remove(ev, p->first_seen, now, mode, &tot);
		if (collect) {
			u32 slot = i;   /* a copy: a stack slot handed to a helper loses i's bounds */
			struct ct_event *o = gc_out.lookup(&slot);
			if (o)
				__builtin_memcpy(o, ev, sizeof(*o));
		}
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		p = data + i * sizeof(struct ct_gc_cand);
		if ((void *)(p + 1) > data_end)
			break;
		p->first_seen = res;
	}
	struct ct_gc_stats *g = gc_stats.lookup(&z);
	if (g) {
		g->removed += tot.removed;
		g->flushed += tot.flushed;
		g->revived += tot.revived;
		g->events_lost += tot.events_lost;
		if (mode == CT_GC_MODE_GC)
			g->timeouts += tot.timeouts;
	}
	struct ct_stats *st = stats.lookup(&z);
	if (st) {
		st->v[mode == CT_GC_MODE_GC ? CT_STAT_CLOSED_TIMEOUT : CT_STAT_CLOSED_FLUSHED] += tot.timeouts;
		st->v[CT_STAT_EVENTS_LOST] += tot.events_lost;
	}
	return i;
}

/* Run with BPF_PROG_TEST_RUN by the collector's passes: result codes only. */
int ct_gc_remove(struct xdp_md *ctx)
{
	return gc_run(ctx, 0);
}

/* The same for `ctrack gc -v`, flush and delete, which print what they removed. Two programs
 * rather than a flag read at run time: the verifier walks each of the CT_GC_RUN_MAX iterations,
 * and the copy's branch would double the hot program's load time. */
int ct_gc_remove_events(struct xdp_md *ctx)
{
	return gc_run(ctx, 1);
}

/* Run once after a GC pass: folds the pass into the totals (per CPU, so no lost update between
 * two processes, as a read-modify-write from user space would risk). */
int ct_gc_pass_done(struct xdp_md *ctx)
{
	u32 z = 0;
	struct ct_gc_ctl *c = gc_ctl.lookup(&z);
	struct ct_gc_stats *s = gc_stats.lookup(&z);
	if (c && s) {
		s->scans += 1;
		s->scanned += c->scanned;
	}
	return XDP_PASS;
}

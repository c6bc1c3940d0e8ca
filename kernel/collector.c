/* collector.c: a running tracker's maps seen from another process, and its collector.
 *
 * Compiled by ctrack/shared.py with -DCT_PIN_DIR="/sys/fs/bpf/ctrack/<name>" and
 * -DCT_TABLE_SIZE=<the pinned table's max_entries>. Declaring the tracker's maps with
 * BPF_TABLE_PINNED makes BCC open the pinned maps instead of creating new ones, and gives Python
 * ctypes types built from the same kernel/ctrack.h as the tracker's: nothing is retyped.
 *
 * The collector (ct_collect, a BPF iterator over the flow table, run by ctrack/gc.py):
 *   mode GC     removes entries whose `expires` has passed, each checked again under the entry's
 *               lock just before its removal; reports `closed: timeout` (ring buffer event and
 *               the tracker's CT_STAT_CLOSED_TIMEOUT) for a flow that had not ended otherwise;
 *   mode FLUSH  removes the entries whose keys user space put in `flush_keys` (ctrack flush /
 *               delete), or every entry (FLUSH_ALL), reporting `closed: flushed`.
 * Each removed flow is also written to the iterator's output (bpf_seq_write), a struct ct_event
 * with its final counters, so the process that ran the scan can print exactly what went.
 *
 * Why an iterator: it visits every entry in the kernel with no copy to user space; measured
 * (bench/gc.py) faster than batch lookups plus a conditional delete, and loadable by BCC as is
 * (bpf_for_each_map_elem would be faster still, but BCC 0.26 cannot relocate its callback).
 *
 * The race left, and why it is harmless to live flows: see "Safety" in docs/top.md. In short,
 * the check and the removal are two steps (a bpf_spin_lock may not be held across a helper
 * call); an entry already expired at the check cannot become live again by time passing, only
 * by a packet that reinitialises it as a *new* flow in the instant between the two steps (the
 * tracker treats an expired entry as absent). Such a revival is counted (gc_stats.revived).
 */
#include "ctrack.h"

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
 * numbers. Per CPU: iterators of two processes may run at once. */
struct ct_gc_stats {
	u64 scans;      /* complete GC passes */
	u64 scanned;    /* entries visited by GC passes */
	u64 removed;    /* expired entries removed */
	u64 timeouts;   /* of which had not ended otherwise: reported `closed: timeout` */
	u64 flushed;    /* entries removed by ctrack flush / delete */
	u64 revived;    /* removed entries a packet reinitialised between check and removal */
	u64 events_lost;/* ring buffer full when reporting */
};
BPF_TABLE_PINNED("percpu_array", u32, struct ct_gc_stats, gc_stats, 1, CT_PIN_DIR "/gc_stats");

#define CT_GC_MODE_GC 0
#define CT_GC_MODE_FLUSH 1      /* the keys in flush_keys */
#define CT_GC_MODE_FLUSH_ALL 2  /* every entry */

/* One process's control of its iterator runs: user space writes now and mode, the program
 * writes the rest (read back after the run). */
struct ct_gc_ctl {
	u64 now;          /* tracker clock (CLOCK_MONOTONIC_COARSE) sampled before the run */
	u32 mode;         /* CT_GC_MODE_* */
	u32 quiet;        /* no output records (each one written can make the walk restart) */
	u64 scanned;
	u64 removed;
	u64 reported;     /* closed events sent */
	u64 live;         /* entries left that are not expired */
	u64 next_expiry;  /* earliest `expires` among them (U64_MAX: none) */
};
BPF_ARRAY(gc_ctl, struct ct_gc_ctl, 1);

/* Keys to remove in FLUSH mode. Not preallocated: empty between flushes. */
BPF_F_TABLE("hash", struct ct_key, u8, flush_keys, CT_TABLE_SIZE, BPF_F_NO_PREALLOC);

/* The iterator's context (struct bpf_iter__bpf_map_elem in the kernel; only its layout
 * matters, the verifier types the fields from the kernel's BTF). */
struct bpf_iter_meta {
	void *seq;
	u64 session_id;
	u64 seq_num;
};
struct bpf_iter__bpf_map_elem {
	struct bpf_iter_meta *meta;
	void *map;
	void *key;
	void *value;
};

static __always_inline void gc_count(u32 field)
{
	u32 z = 0;
	struct ct_gc_stats *s = gc_stats.lookup(&z);
	if (!s)
		return;
	switch (field) {
	case 0: s->removed += 1; break;
	case 1: s->timeouts += 1; break;
	case 2: s->flushed += 1; break;
	case 3: s->revived += 1; break;
	case 4: s->events_lost += 1; break;
	}
}

BPF_ITER(bpf_map_elem)
{
	u32 z = 0;
	struct ct_gc_ctl *c = gc_ctl.lookup(&z);
	if (!c)
		return 0;
	struct ct_key *k = ctx->key;
	struct ct_entry *v = ctx->value;
	if (!k || !v) {
		/* The last call, after the last element: fold this pass into the totals. */
		if (c->mode == CT_GC_MODE_GC) {
			struct ct_gc_stats *s = gc_stats.lookup(&z);
			if (s) {
				s->scans += 1;
				s->scanned += c->scanned;
			}
		}
		return 0;
	}
	c->scanned += 1;
	u64 now = c->now;

	if (c->mode == CT_GC_MODE_GC) {
		/* The common case, a live entry, costs one unlocked read: an entry that looks live
		 * here is left alone anyway, and one that looks expired is checked again under its
		 * lock below. */
		if (v->expires > now) {
			c->live += 1;
			if (v->expires < c->next_expiry)
				c->next_expiry = v->expires;
			return 0;
		}
	}

	/* On the stack: helpers take no read-only buffer (the iterator's key) as a map key. */
	struct ct_key key = *k;
	if (c->mode == CT_GC_MODE_FLUSH && !flush_keys.lookup(&key))
		return 0;
	/* The lock needs a map-value pointer the verifier knows as such (the iterator's value is a
	 * plain buffer): look the entry up again. */
	struct ct_entry *e = flows.lookup(&key);
	if (!e)
		return 0;

	struct ct_event ev = {};
	u8 report = CT_CLOSE_NONE;
	int go = 0;
	u64 first_seen, last_seen;
	bpf_spin_lock(&e->lock);
	int expired = e->expires <= now;
	if (expired || c->mode != CT_GC_MODE_GC) {
		go = 1;
		/* Report the end of a flow only once: a flow closed by FIN/RST was reported then.
		 * Marking it here also keeps a packet that revives the entry in the instant before
		 * the removal from reporting the same end a second time. */
		if (e->close_reason == CT_CLOSE_NONE) {
			report = expired ? CT_CLOSE_TIMEOUT : CT_CLOSE_FLUSHED;
			e->close_reason = report;
		}
		ev.state = e->state;
		ev.orig_state = e->dir[0].state;
		ev.reply_state = e->dir[1].state;
		ev.orig_side = e->orig_side;
		ev.close_reason = e->close_reason;
		ev.packets[0] = e->dir[0].packets;
		ev.packets[1] = e->dir[1].packets;
		ev.bytes[0] = e->dir[0].bytes;
		ev.bytes[1] = e->dir[1].bytes;
		ev.first_seen = e->first_seen;
		ev.last_seen = e->last_seen;
		__builtin_memcpy(&ev.zeek, &e->zeek, sizeof(ev.zeek));   /* conn_state, history */
	} else {
		/* A packet made it live between the unlocked read and the lock. */
		c->live += 1;
		if (e->expires < c->next_expiry)
			c->next_expiry = e->expires;
	}
	first_seen = e->first_seen;
	last_seen = e->last_seen;
	bpf_spin_unlock(&e->lock);
	if (!go)
		return 0;

	if (flows.delete(&key) != 0)
		return 0;   /* someone else removed it first (the tracker's eviction, another flush) */
	c->removed += 1;
	/* The entry's memory outlives its removal (preallocated table): a packet that looked it up
	 * before the removal and reinitialised it after the check shows as a new first_seen. */
	if (e->first_seen != first_seen || e->last_seen != last_seen)
		gc_count(3);
	gc_count(c->mode == CT_GC_MODE_GC ? 0 : 2);

	ev.ts = now;
	ev.key = key;
	ev.type = CT_EVENT_CLOSED;
	/* pad = 1 marks "this removal sent the closed event" in the iterator's output */
	ev.pad = report != CT_CLOSE_NONE;
	if (report != CT_CLOSE_NONE) {
		c->reported += 1;
		struct ct_stats *st = stats.lookup(&z);
		if (report == CT_CLOSE_TIMEOUT) {
			gc_count(1);
			if (st)
				st->v[CT_STAT_CLOSED_TIMEOUT] += 1;
		} else if (st) {
			st->v[CT_STAT_CLOSED_FLUSHED] += 1;
		}
		struct ct_event *r = events.ringbuf_reserve(sizeof(struct ct_event));
		if (r) {
			__builtin_memcpy(r, &ev, sizeof(ev));
			r->pad = 0;
			events.ringbuf_submit(r, 0);
		} else {
			gc_count(4);
			struct ct_stats *st = stats.lookup(&z);
			if (st)
				st->v[CT_STAT_EVENTS_LOST] += 1;
		}
	}
	/* When the output buffer fills, the kernel stops the walk and resumes it by position in
	 * the bucket, and the entries removed meanwhile can make it skip a neighbour or two: they
	 * are found by the next pass (or flush retries). Quiet passes write nothing. */
	if (!c->quiet)
		bpf_seq_write(ctx->meta->seq, &ev, sizeof(ev));
	return 0;
}

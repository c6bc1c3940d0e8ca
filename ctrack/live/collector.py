"""The collector: removes expired flows from a running tracker's table without waiting for a packet.

The tracker itself only notices that a flow expired when a packet of that flow arrives, so idle
flows would stay in the table forever and fill it. A pass of the Collector:
  1. scans the pinned table with batch lookups into reused buffers and picks the expired entries
     straight from the raw bytes with numpy (field offsets from the map's ctypes types: no
     Python object per entry);
  2. hands them to kernel/collector.c's ct_gc_remove, an XDP program (the tracker's own program
     type, so it loads wherever the tracker does) run with BPF_PROG_TEST_RUN, up to
     CT_GC_RUN_MAX candidates per run packed in the test packet as struct ct_gc_cand (key and
     first_seen, 48 bytes: 73 per run). Under each entry's lock it checks the entry is still the
     flow the scan saw (first_seen) and still expired, claims it, builds its DESTROY event
     (counters, Zeek record, RTT summary), deletes it, and reports DESTROY `timeout` through the
     tracker's ring buffer and statistics (CT_STAT_CLOSED_TIMEOUT when the flow had not ended by
     FIN/RST before). Only a result code per candidate comes back in the packet; the events
     themselves are read back (from the program's gc_out map) only by the callers that print
     them (`ctrack gc -v`, flush, delete).

    with Shared.open("edge") as sh:
        gc = Collector(sh, interval=1.0)
        r = gc.scan()                      # one pass: ScanResult
        gc.run(stop_event, on_scan=print)  # passes until stop_event is set

Scheduling (adaptive): after a pass, the next one comes when the earliest remaining entry
expires (the pass measures it), but at least every `interval` seconds -- or every 4 x interval
once three passes in a row found nothing to remove while the table is under 90% full -- and
never sooner than interval / 20. A table of idle long-lived flows is thus scanned rarely, a
table of short-lived ones as their timeouts fall due.

One collector per tracker: `ctrack run` starts one unless --no-gc; `ctrack gc` refuses to run
beside it (a lock file in /run/ctrack). Its status (pid, interval, last pass) is written to
/run/ctrack/<name>.collector for ctrack-top and the metrics; its totals are the pinned gc_stats.
"""
import ctypes
import json
import os
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from . import pins
from ctrack.engine.defs import Defs
from ctrack.errors import CtrackError
from .filelock import try_lock
from ctrack.bpf.maps import Batch
from .maps import SOURCE
from ctrack.bpf.testrun import TestRunner
from ctrack.engine.tracker import kernel_now_ns

U64_MAX = (1 << 64) - 1
QUIET_PASSES = 3        # passes with nothing removed before backing off
BACKOFF = 4             # x interval when quiet and the table not nearly full
BACKOFF_MAX_FILL = 0.9
MIN_FRACTION = 20       # never more often than interval / MIN_FRACTION
CLOCK_MARGIN_S = 0.005  # the tracker's coarse clock lags CLOCK_MONOTONIC by up to a jiffy


SCAN_CHUNK = 32768      # entries per batch lookup: few syscalls, 6 MB of buffers
# XDP's test packet: a page less XDP_PACKET_HEADROOM (256) and the tail's skb_shared_info
# (320 on x86-64); larger packets would need a multi-buffer program
XDP_TEST_MAX = 4096 - 256 - 320


def _macros():
    return Defs(SOURCE).macros


def _dtype(ctype, names):
    """A numpy structured dtype reading the named fields of a ctypes structure in place (offsets
    and sizes from the ctypes type: nothing retyped)."""
    from .maps import _field
    fmts, offs = [], []
    for n in names:
        off, ft = _field(ctype, n)
        size = ctypes.sizeof(ft)
        fmts.append(f"=u{size}" if size in (1, 2, 4, 8) and not hasattr(ft, "_fields_") else f"V{size}")
        offs.append(off)
    return np.dtype({"names": list(names), "formats": fmts, "offsets": offs,
                     "itemsize": ctypes.sizeof(ctype)})


@dataclass
class ScanResult:
    scanned: int = 0
    removed: int = 0
    reported: int = 0        # DESTROY events sent (one per entry removed)
    ended: int = 0           # of the removed, flows that had not ended otherwise (by FIN/RST)
    live: int = 0
    next_expiry_ns: int = U64_MAX
    duration_s: float = 0.0
    started_ns: int = 0      # tracker clock at the start of the pass
    flows: list = field(default_factory=list)   # decoded records of what was removed

    def json(self):
        return {"scanned": self.scanned, "removed": self.removed, "reported": self.reported,
                "ended": self.ended, "live": self.live, "duration_ms": round(self.duration_s * 1000, 3),
                "next_expiry_in_s": None if self.next_expiry_ns == U64_MAX else
                round(max(0, self.next_expiry_ns - self.started_ns) / 1e9, 3)}


def status_path(name):
    # JSON, but not named *.json: pins.running() takes those for trackers
    return os.path.join(pins.RUN_DIR, f"{name}.collector")


def lock_path(name):
    return os.path.join(pins.RUN_DIR, f"{name}.collector.lock")


def read_status(name):
    """The running collector's status for tracker NAME, or None when none runs. A status with
    "error" is a collector that could not run (the kernel refused its program; ctrack run says
    so in its banner): ctrack-top and the metrics report it as not running, with the reason."""
    try:
        with open(status_path(name)) as f:
            st = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    try:
        os.kill(int(st.get("pid", 0)), 0)
    except (ProcessLookupError, ValueError):
        return None
    except PermissionError:
        pass
    return st


class Collector:
    def __init__(self, shared, interval=1.0):
        if interval <= 0:
            raise CtrackError("the collector's interval must be positive (seconds)")
        self.sh = shared
        self.interval = float(interval)
        self.min_delay = max(0.01, self.interval / MIN_FRACTION)
        self.quiet = 0
        self.delay = self.interval
        self.last = None
        self._lock_fd = None
        m = _macros()
        self.mode_gc, self.mode_flush = m["CT_GC_MODE_GC"], m["CT_GC_MODE_FLUSH"]
        self.R_REMOVED, self.R_ENDED = m["CT_GC_REMOVED"], m["CT_GC_ENDED"]
        self.R_REVIVED, self.R_LOST = m["CT_GC_REVIVED"], m["CT_GC_LOST"]
        C = shared.bpf["gc_cand_layout"].Leaf   # struct ct_gc_cand, from its BTF
        self.cand_size = ctypes.sizeof(C)
        self.per_run = max(1, min(m["CT_GC_RUN_MAX"], XDP_TEST_MAX // self.cand_size))
        self.cand_dtype = _dtype(C, ("key", "first_seen"))
        self.entry_dtype = _dtype(shared.Entry, ("first_seen", "expires"))
        self.key_dtype = np.dtype((np.void, shared.layout.key_size))
        self._batch = None
        self._runner = None
        self._ctl_now = None
        self._out = None
        self._events_used = False

    def describe(self):
        """How passes run, for banners and -v."""
        return "batch-lookup scan + XDP compare-and-delete"

    def load(self):
        """Load the collector's programs now (CtrackError naming what the kernel refused)."""
        self.sh.collector()

    # ---- one pass ----

    def candidates(self, now, pick_all=False, totals=None):
        """Walks the whole table, copied out chunk by chunk with batch lookups, and yields per
        chunk (keys, first_seens) of its candidates: the entries expired at `now` (or every
        entry), picked from the raw bytes (views of the reused buffers: valid until the next
        chunk). totals (a dict) gets "scanned", "live" and "next_expiry" (U64_MAX: none)."""
        if self._batch is None:
            L = self.sh.layout
            self._batch = Batch(self.sh.flows.map_fd, L.key_size, L.entry_size, SCAN_CHUNK)
        t = {"scanned": 0, "live": 0, "next_expiry": U64_MAX} if totals is None else totals
        t.update(scanned=0, live=0, next_expiry=U64_MAX)
        for n, kbuf, vbuf in self._batch.lookup_all():
            k = np.frombuffer(kbuf, dtype=self.key_dtype, count=n)
            t["scanned"] += n
            if pick_all:
                yield k, np.zeros(n, dtype=np.uint64)
                continue
            v = np.frombuffer(vbuf, dtype=self.entry_dtype, count=n)
            exp = v["expires"]
            dead = exp <= now
            nd = int(np.count_nonzero(dead))
            if nd < n:
                t["live"] += n - nd
                t["next_expiry"] = min(t["next_expiry"],
                                       int(np.where(dead, np.uint64(U64_MAX), exp).min()))
            if nd:
                yield k[dead], v["first_seen"][dead]

    def _walk(self, now, mode, collect, pick_all=False):
        """One pass: each chunk's candidates are removed as soon as it is copied out, by a
        second thread while this one copies the next chunk (both wait in the kernel, GIL
        released: with half the table expired the removals cost about as much kernel time as
        the copy, and overlapped the pass takes little more than the copy; memory bounded by
        a few chunks of candidates). The kernel's walk goes bucket by bucket and removals only
        touch buckets already copied, so none is skipped. Returns (result codes, events of the
        removed when collect, entries seen, live entries, earliest live expiry)."""
        results, events, failed = [], [], []
        t = {}
        todo = worker = None

        def remove_all():
            while True:
                item = todo.get()
                if item is None:
                    return
                if failed:
                    continue   # drain: the scan still puts what it found
                try:
                    res, evs = self._remove(item[0], item[1], mode, now, collect)
                except BaseException as exc:  # re-raised in the scanning thread
                    failed.append(exc)
                    continue
                results.append(res)
                events.extend(evs)

        try:
            for keys, firsts in self.candidates(now, pick_all, t):
                if pick_all:
                    keys = keys.copy()   # a view of the scan's buffer (a mask's result is a copy)
                if worker is None:
                    # only a pass that finds candidates starts the thread (none at rest)
                    todo = queue.Queue(maxsize=2)
                    worker = threading.Thread(target=remove_all, name="ctrack-gc-remove",
                                              daemon=True)
                    worker.start()
                todo.put((keys, firsts))
        finally:
            if worker is not None:
                todo.put(None)
                worker.join()
        if failed:
            raise failed[0]
        res = np.concatenate(results) if results else None
        return res, events, t["scanned"], t["live"], t["next_expiry"]

    def _remove(self, keys, firsts, mode, now, collect=False):
        """Runs ct_gc_remove on the candidates (keys: raw key bytes, firsts: the first_seen each
        must still have, 0 for any); (result codes, the DESTROY events (ctypes struct ct_event)
        of those removed when collect, else [])."""
        fd_remove, _, ctl = self.sh.collector(events=collect)
        self._events_used |= collect
        if self._ctl_now != (now, mode):
            c = ctl.Leaf()
            c.now, c.mode = now, mode
            ctl[ctl.Key(0)] = c
            self._ctl_now = (now, mode)
        n = len(keys)
        # the packet: the candidates as the program reads them; it writes each one's result
        # over its first_seen
        recs = np.empty(n, dtype=self.cand_dtype)
        recs["key"] = keys
        recs["first_seen"] = firsts
        if self._runner is None or self._runner.fd != fd_remove:
            self._runner = TestRunner(fd_remove, max_frame=0)
        base = recs.ctypes.data
        size = self.cand_size
        run = self._runner.run_at
        res = recs["first_seen"]
        events = []
        i = 0
        while i < n:
            m = min(self.per_run, n - i)
            addr = base + i * size
            done = run(addr, m * size, addr)
            if done < m:
                if done <= 0:
                    raise CtrackError("the collector's XDP program handled no candidate of a "
                                      "test run: this kernel's test packets are too small")
                self.per_run = done   # the rest were beyond what the program sees: resend
            if collect:
                events += self._events_of(res[i:i + done])
            i += done
        return res.copy(), events

    def _events_of(self, res):
        """The events the last run left in gc_out for its removed candidates (res: its results)."""
        if self._out is None:
            self._out = self.sh.bpf["gc_out"]
        out = self._out
        return [out[out.Key(int(j))] for j in np.nonzero(res & self.R_REMOVED)[0]]

    def _pass_done(self, scanned):
        # with the programs loaded already (the events' only when a pass used them)
        _, fd_done, ctl = self.sh.collector(events=self._events_used)
        c = ctl.Leaf()
        c.scanned = scanned
        c.mode = self.mode_gc
        ctl[ctl.Key(0)] = c
        self._ctl_now = None   # now and mode were overwritten
        TestRunner(fd_done, max_frame=64).run(bytes(64))

    def _result(self, res, events, collect, **kw):
        r = ScanResult(**kw)
        if res is not None:
            removed = (res & self.R_REMOVED) != 0
            r.removed = r.reported = int(np.count_nonzero(removed))
            r.ended = int(np.count_nonzero(res & self.R_ENDED))
            if collect and r.removed:
                r.flows = self.decode(events)
        return r

    def decode(self, events):
        """The removed flows' DESTROY events (_remove, ctypes) as event dicts
        (ctrack.engine.events.decode_event), with "reported": True (this removal sent their DESTROY)."""
        from ctrack.engine.events import decode_event
        out = []
        for ev in events:
            d = decode_event(ev)
            d["reported"] = True
            out.append(d)
        return out

    def scan(self, collect=True):
        """One GC pass over the whole table. collect=False skips decoding what was removed."""
        now = kernel_now_ns()
        t0 = time.perf_counter()
        res, recs, scanned, live, nxt = self._walk(now, self.mode_gc, collect)
        if res is not None:
            # left by the removal (a packet revalidated it since the scan): live after all
            live += int(np.count_nonzero((res & self.R_REMOVED) == 0))
        self._pass_done(scanned)
        r = self._result(res, recs, collect, scanned=scanned, live=live, next_expiry_ns=nxt,
                         duration_s=time.perf_counter() - t0, started_ns=now)
        self.last = r
        return r

    def flush(self, raw_keys=None):
        """Remove the entries with these raw keys (RowLayout.key_bytes), or every entry (None), under
        their locks; each is reported DESTROY `flushed`. Returns the ScanResult with the removed
        flows decoded."""
        now = kernel_now_ns()
        t0 = time.perf_counter()
        res = recs = None
        if raw_keys is None:
            res, recs, scanned, _, _ = self._walk(now, self.mode_flush, True, pick_all=True)
        else:
            scanned = len(raw_keys)
            if raw_keys:
                keys = np.frombuffer(b"".join(raw_keys), dtype=self.key_dtype)
                res, recs = self._remove(keys, np.zeros(len(keys), dtype=np.uint64),
                                         self.mode_flush, now, collect=True)
        return self._result(res, recs, True, scanned=scanned, duration_s=time.perf_counter() - t0,
                            started_ns=now)

    # ---- scheduling ----

    def next_delay(self, r):
        """Seconds until the next pass after result r (see the module docstring)."""
        fill = (r.live + r.removed) / max(1, self.sh.table_size)
        self.quiet = self.quiet + 1 if r.removed == 0 else 0
        hi = self.interval
        if self.quiet >= QUIET_PASSES and fill < BACKOFF_MAX_FILL:
            hi = self.interval * BACKOFF
        if r.next_expiry_ns != U64_MAX:
            due = (r.next_expiry_ns - kernel_now_ns()) / 1e9 + CLOCK_MARGIN_S
            hi = min(hi, due)
        self.delay = max(self.min_delay, hi)
        return self.delay

    def acquire(self):
        """Become the tracker's only collector, or CtrackError naming the one running."""
        if self._lock_fd is not None:
            return
        os.makedirs(pins.RUN_DIR, exist_ok=True)
        fd = try_lock(lock_path(self.sh.name))
        if fd is None:
            st = read_status(self.sh.name) or {}
            who = f" (pid {st['pid']}, {st.get('owner', 'ctrack')})" if st.get("pid") else ""
            raise CtrackError(f"tracker {self.sh.name!r} already has a collector{who}; `ctrack run` "
                              f"collects unless started with --no-gc")
        self._lock_fd = fd

    def release(self, keep_status=False):
        """No longer the collector. keep_status: leave the status file (an error in it) for
        ctrack-top and the metrics, as long as this process lives."""
        if not keep_status:
            try:
                os.unlink(status_path(self.sh.name))
            except FileNotFoundError:
                pass
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def write_status(self, owner, error=None):
        r = self.last or ScanResult()
        st = {"pid": os.getpid(), "owner": owner, "interval_s": self.interval,
              "next_delay_s": round(self.delay, 3), "last_scan_wall": time.time(),
              "last": r.json(), "path": self.describe()}
        if error:
            st["error"] = error
        tmp = status_path(self.sh.name) + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f)
        os.replace(tmp, status_path(self.sh.name))

    def run(self, stop, on_scan=None, owner="ctrack gc", collect=None):
        """Passes until the threading.Event `stop` is set. on_scan(result) after each; collect:
        decode what each pass removed into result.flows (default: when on_scan is given)."""
        if collect is None:
            collect = on_scan is not None
        self.acquire()
        try:
            while not stop.is_set():
                r = self.scan(collect=collect)
                self.next_delay(r)
                self.write_status(owner)
                if on_scan:
                    on_scan(r)
                stop.wait(self.delay)
        finally:
            self.release()

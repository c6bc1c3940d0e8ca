"""The collector: removes expired flows from a running tracker's table without waiting for a packet.

The tracker itself only notices that a flow expired when a packet of that flow arrives, so idle
flows would stay in the table forever and fill it. A Collector runs kernel/collector.c's iterator
over the pinned table: every entry is visited in the kernel, each expired one is checked again
under its own lock, removed, and (if its flow had not ended by FIN/RST) reported as
`closed: timeout` through the tracker's own ring buffer and CT_STAT_CLOSED_TIMEOUT counter.

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
import time
from dataclasses import dataclass, field

from . import pins
from .defs import Defs
from .errors import CtrackError
from .filelock import try_lock
from .mapops import Batch, iter_run
from .shared import SOURCE
from .tracker import kernel_now_ns

U64_MAX = (1 << 64) - 1
QUIET_PASSES = 3        # passes with nothing removed before backing off
BACKOFF = 4             # x interval when quiet and the table not nearly full
BACKOFF_MAX_FILL = 0.9
MIN_FRACTION = 20       # never more often than interval / MIN_FRACTION
CLOCK_MARGIN_S = 0.005  # the tracker's coarse clock lags CLOCK_MONOTONIC by up to a jiffy


def _modes():
    m = Defs(SOURCE).macros
    return m["CT_GC_MODE_GC"], m["CT_GC_MODE_FLUSH"], m["CT_GC_MODE_FLUSH_ALL"]


@dataclass
class ScanResult:
    scanned: int = 0
    removed: int = 0
    reported: int = 0        # closed events sent (flows that had not ended otherwise)
    live: int = 0
    next_expiry_ns: int = U64_MAX
    duration_s: float = 0.0
    started_ns: int = 0      # tracker clock at the start of the pass
    flows: list = field(default_factory=list)   # decoded records of what was removed

    def json(self):
        return {"scanned": self.scanned, "removed": self.removed, "reported": self.reported,
                "live": self.live, "duration_ms": round(self.duration_s * 1000, 3),
                "next_expiry_in_s": None if self.next_expiry_ns == U64_MAX else
                round(max(0, self.next_expiry_ns - self.started_ns) / 1e9, 3)}


def status_path(name):
    # JSON, but not named *.json: pins.running() takes those for trackers
    return os.path.join(pins.RUN_DIR, f"{name}.collector")


def lock_path(name):
    return os.path.join(pins.RUN_DIR, f"{name}.collector.lock")


def read_status(name):
    """The running collector's status for tracker NAME, or None when none runs."""
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
        self.mode_gc, self.mode_flush, self.mode_flush_all = _modes()

    # ---- one pass ----

    def _run(self, mode, collect=True):
        link, ctl, _ = self.sh.collector()
        c = ctl.Leaf()
        c.now = kernel_now_ns()
        c.mode = mode
        c.quiet = 0 if collect else 1
        c.next_expiry = U64_MAX
        ctl[ctl.Key(0)] = c
        t0 = time.perf_counter()
        out = iter_run(link)
        dt = time.perf_counter() - t0
        c = ctl[ctl.Key(0)]
        r = ScanResult(scanned=c.scanned, removed=c.removed, reported=c.reported, live=c.live,
                       next_expiry_ns=c.next_expiry, duration_s=dt, started_ns=c.now)
        if collect and out:
            r.flows = self.decode(out)
        return r

    def decode(self, raw):
        """The iterator's output: one struct ct_event per removed flow, as event dicts with
        "reported" (this removal sent the closed event)."""
        from .events import decode_event
        E = self.sh.Event
        size = ctypes.sizeof(E)
        out = []
        for off in range(0, len(raw) - size + 1, size):
            ev = E.from_buffer_copy(raw, off)
            d = decode_event(ev)
            d["reported"] = bool(ev.pad)
            out.append(d)
        return out

    def scan(self, collect=True):
        """One GC pass over the whole table. collect=False skips decoding what was removed."""
        r = self._run(self.mode_gc, collect)
        self.last = r
        return r

    def flush(self, raw_keys=None):
        """Remove the entries with these raw keys (RowLayout.key_bytes), or every entry (None), under
        their locks; each flow not ended otherwise is reported `closed: flushed`. Returns the
        ScanResult whose .flows are the removed flows with their final counters."""
        if raw_keys is None:
            return self._run(self.mode_flush_all)
        raw_keys = list(raw_keys)
        if not raw_keys:
            return ScanResult()
        _, _, fk = self.sh.collector()
        ks = self.sh.layout.key_size
        b = Batch(fk.map_fd, ks, 1, chunk=min(len(raw_keys), 65536))
        ones = ctypes.create_string_buffer(b"\x01" * b.chunk, b.chunk)
        chunks = [raw_keys[i:i + b.chunk] for i in range(0, len(raw_keys), b.chunk)]
        try:
            for part in chunks:
                ctypes.memmove(b.keys, b"".join(part), len(part) * ks)
                b.update(b.keys, ones, len(part))
            return self._run(self.mode_flush)
        finally:
            for part in chunks:   # leave flush_keys empty for the next flush
                ctypes.memmove(b.keys, b"".join(part), len(part) * ks)
                b.delete(b.keys, len(part))

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

    def release(self):
        try:
            os.unlink(status_path(self.sh.name))
        except FileNotFoundError:
            pass
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def write_status(self, owner):
        r = self.last or ScanResult()
        st = {"pid": os.getpid(), "owner": owner, "interval_s": self.interval,
              "next_delay_s": round(self.delay, 3), "last_scan_wall": time.time(),
              "last": r.json()}
        tmp = status_path(self.sh.name) + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f)
        os.replace(tmp, status_path(self.sh.name))

    def run(self, stop, on_scan=None, owner="ctrack gc"):
        """Passes until the threading.Event `stop` is set. on_scan(result) after each."""
        self.acquire()
        try:
            while not stop.is_set():
                r = self.scan(collect=on_scan is not None)
                self.next_delay(r)
                self.write_status(owner)
                if on_scan:
                    on_scan(r)
                stop.wait(self.delay)
        finally:
            self.release()

"""ctrack-top's model: samples of a running tracker (table rows, counters, collector status) and
what the screen shows from them -- rates, counts by state, the filtered and sorted flow list.

A Sampler reads the pinned maps once per refresh (batch lookups, see ctrack.live.maps) and keeps
the previous sample to turn counters into rates: each flow's bits/s from its byte counters
(only while the entry holds the same flow: same first_seen), the tracker's packets/s by class
from its statistics. Sorting and scrolling reuse the last sample, so keys answer at once.
Only the rows on screen are ever formatted (ctrack/top/view.py).
"""
import collections
import heapq
import time
from operator import add, itemgetter

from ctrack.engine.defs import defs
from ctrack.live.collector import read_status
from ctrack.engine.tracker import kernel_now_ns

SORTS = ("rate", "bytes", "packets", "age", "idle", "state")


class Sample:
    """One reading of the tracker."""

    def __init__(self, rows, now_ns, stats, gc_totals, gc_status, mono):
        self.rows = rows            # every entry (RowLayout tuples)
        self.now = now_ns           # tracker clock when read
        self.mono = mono            # time.monotonic() when read
        self.stats = stats          # ctrack.engine.stats names -> totals
        self.gc = gc_totals
        self.gc_status = gc_status
        self.live = []              # entries not expired
        self.rate = {}              # raw key -> bits/s (live flows seen in the previous sample too)
        self.by_state = collections.Counter()   # (proto, state value) -> live flows
        self.expired = 0


class Sampler:
    def __init__(self, shared):
        self.sh = shared
        self.L = shared.layout
        self.prev = None
        self.cur = None
        self._prev_bytes = {}   # key -> (first_seen, total bytes)

    def sample(self):
        sh, L = self.sh, self.L
        rows = sh.rows()
        now = kernel_now_ns()
        s = Sample(rows, now, sh.stats(), sh.gc_totals(), read_status(sh.name), time.monotonic())
        iE = L.EXPIRES
        # built-in map/itemgetter/zip/Counter wherever possible: this runs over every entry
        # (100,000 and more) once a second, and C-level loops are several times faster
        live = s.live = [r for r in rows if r[iE] > now]
        s.expired = len(rows) - len(live)
        s.by_state = collections.Counter(map(itemgetter(L.PROTO, L.STATE), live))
        keys = list(map(itemgetter(L.KEY), live))
        firsts = list(map(itemgetter(L.FIRST), live))
        totals = list(map(add, map(itemgetter(L.BYTES0), live), map(itemgetter(L.BYTES1), live)))
        dt = s.mono - self.cur.mono if self.cur else 0
        if dt > 0:
            f8 = 8 / dt
            s.rate = {k: (b - p[1]) * f8 for k, f, b, p in
                      zip(keys, firsts, totals, map(self._prev_bytes.get, keys))
                      if p is not None and p[0] == f}
        self._prev_bytes = dict(zip(keys, zip(firsts, totals)))
        self.prev, self.cur = self.cur, s
        return s

    # ---- tracker-wide rates ----

    def class_rates(self):
        """{class name: packets/s} between the last two samples (None before the second)."""
        if not self.prev:
            return None
        dt = self.cur.mono - self.prev.mono
        a, b = self.prev.stats, self.cur.stats
        return {k[6:]: (b[k] - a.get(k, 0)) / dt for k in b if k.startswith("class.") and dt > 0}

    def class_bit_rates(self):
        """{class name: bits/s} between the last two samples, from the tracker's byte counters
        by class (IP length; frame length for non-IP). None before the second sample."""
        if not self.prev:
            return None
        dt = self.cur.mono - self.prev.mono
        a, b = self.prev.stats, self.cur.stats
        return {k[12:]: 8 * (b[k] - a.get(k, 0)) / dt for k in b
                if k.startswith("bytes_class.") and dt > 0}

    def tracked_bits_per_s(self):
        """Bits/s of all live flows (sum of their byte counters' growth)."""
        return sum(self.cur.rate.values()) if self.cur else 0.0


class View:
    """What the flow table shows: filter, sort, scroll position. Works on the latest sample."""

    def __init__(self, layout, flt, sort="rate", reverse=False):
        self.L = layout
        self.flt = flt
        self.sort = sort
        self.reverse = reverse
        self.offset = 0
        self._pred = flt.row_predicate(layout)

    def set_filter(self, flt):
        self.flt = flt
        self._pred = flt.row_predicate(self.L)
        self.offset = 0

    def cycle_sort(self):
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self.offset = 0

    def _key(self, sample):
        L = self.L
        ik = L.KEY
        rate = sample.rate
        # every key sorts "most interesting first" unless reversed
        return {
            # equal rates (idle flows: 0) by bytes, so the order is stable between refreshes
            "rate": lambda r: (-rate.get(r[ik], 0.0), -(r[L.BYTES0] + r[L.BYTES1])),
            "bytes": lambda r: -(r[L.BYTES0] + r[L.BYTES1]),
            "packets": lambda r: -(r[L.PKTS0] + r[L.PKTS1]),
            "age": lambda r: r[L.FIRST],
            "idle": lambda r: r[L.LAST],
            "state": lambda r: (r[L.STATE], -rate.get(r[ik], 0.0)),
        }[self.sort]

    def rows(self, sample, height):
        """(matching count, the rows of the window [offset, offset + height))."""
        pred = self._pred
        rows = sample.live if not self.flt else [r for r in sample.live if pred(r)]
        n = len(rows)
        self.offset = max(0, min(self.offset, n - height)) if height else 0
        want = self.offset + height
        key = self._key(sample)
        if want < n // 8:
            # a screenful out of many: a partial selection beats sorting everything
            pick = heapq.nlargest(want, rows, key=key) if self.reverse else heapq.nsmallest(want, rows, key=key)
        else:
            pick = sorted(rows, key=key, reverse=self.reverse)
        return n, pick[self.offset:want]

    def scroll(self, delta, height, total):
        self.offset = max(0, min(self.offset + delta, max(0, total - height)))


def state_names_present(sample):
    """Overall state names among live flows, in enum order (for the `t` key)."""
    d = defs().ct_state
    vals = sorted({s for (_, s) in sample.by_state})
    return [d.name(v) for v in vals]

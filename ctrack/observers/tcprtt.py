"""The RTT observer: kernel/tcprtt.c on tcp:tcp_probe, as log2 histograms and per-flow statistics.

    with RttObserver(Filters(rports=[5201]), flows=True) as obs:
        obs.wait(5.0)
        for h in obs.histograms(): print(h.count, h.buckets())
        for f in obs.flows(): print(f.laddr, f.lport, f.raddr, f.rport, f.avg_us)

The histogram's values are the kernel's smoothed RTT (tcp_probe's srtt: tp->srtt_us >> 3, in
microseconds) sampled at each received segment, so busy connections weigh more than idle ones."""
import ctypes
import ipaddress
import time
from dataclasses import asdict, dataclass, field
from typing import List, Optional

from ctrack.text import addr_text

from .base import Observer
from .defs import AF_INET
from .netns import NetnsSockets

VERDICT_IN, VERDICT_OUT = 1, 2


def section_name(raw):
    """A histogram section's address (kept IPv4-mapped in the key) as text."""
    addr = ipaddress.IPv6Address(bytes(raw))
    return str(addr.ipv4_mapped or addr)


def slot_bounds(i):
    """Value range of log2 slot i, as BCC's print_log2_hist labels it (slot 1 holds 0 and 1)."""
    low, high = (1 << i) >> 1, (1 << i) - 1
    return (low - 1 if low == high else low), high


@dataclass
class Log2Hist:
    section: Optional[str]          # the address of a per-address histogram, else None
    unit: str                       # "usecs" or "msecs"
    slots: List[int]                # slots[i]: samples whose value falls in slot_bounds(i)
    sum: Optional[float] = None     # with extended=True: sum and count of the values
    samples: Optional[int] = None

    @property
    def count(self):
        return sum(self.slots)

    def buckets(self):
        """[(low, high, count)] from the first to the last non-empty slot."""
        used = [i for i, n in enumerate(self.slots) if n]
        if not used:
            return []
        return [(*slot_bounds(i), self.slots[i]) for i in range(max(1, used[0]), used[-1] + 1)]

    def fraction_at_most(self, value):
        """Share of samples in buckets lying wholly at or below value (in this unit)."""
        return sum(n for lo, hi, n in self.buckets() if hi <= value) / self.count if self.count else 0.0

    @property
    def average(self):
        return self.sum / self.samples if self.samples else None

    def as_dict(self):
        d = {"section": self.section, "unit": self.unit, "count": self.count,
             "buckets": [{"low": lo, "high": hi, "count": n} for lo, hi, n in self.buckets()]}
        if self.samples is not None:
            d.update(sum=self.sum, samples=self.samples, avg=self.average)
        return d


@dataclass
class FlowStats:
    """One connection's smoothed RTT over the samples seen (microseconds)."""
    family: int                     # 4 or 6
    laddr: str
    lport: int
    raddr: str
    rport: int
    count: int
    min_us: int
    avg_us: float
    max_us: int
    last_us: int
    first_ts: float                 # wall-clock time of the first and latest samples
    last_ts: float
    cookie: int = field(default=0)  # the socket's cookie (as ss -e and sock_diag show it)

    def as_dict(self):
        return asdict(self)


class RttObserver(Observer):
    program = "tcprtt"
    tracepoint = "tcp/tcp_probe"

    def __init__(self, filters=None, milliseconds=False, per=None, extended=False, hist=True,
                 flows=False, netns=None):
        super().__init__(filters)
        if per not in (None, "laddr", "raddr"):
            raise ValueError("per must be None, 'laddr' or 'raddr'")
        if not hist and not flows:
            raise ValueError("nothing to record: want hist and/or flows")
        self.milliseconds, self.per, self.extended = milliseconds, per, extended
        self.hist, self.want_flows, self.netns = hist, flows, netns
        self.unit = "msecs" if milliseconds else "usecs"
        self._ns = None
        self._queries = []
        self.netns_answered = 0

    def defines(self):
        out = super().defines()
        if self.milliseconds:
            out.append("#define OBS_MS 1")
        if self.per == "laddr":
            out.append("#define OBS_HIST_LADDR 1")
        elif self.per == "raddr":
            out.append("#define OBS_HIST_RADDR 1")
        if self.extended:
            out.append("#define OBS_EXTENDED 1")
        if not self.hist:
            out.append("#define OBS_NO_HIST 1")
        if self.want_flows:
            out.append("#define OBS_FLOWS 1")
        if self.netns:
            out.append("#define OBS_NETNS 1")
        return out

    def start(self):
        if self.netns:
            # Before loading: a bad name is the user's one-line error, not a half-started tool.
            self._ns = NetnsSockets(self.netns)
        return super().start()

    def _opened(self):
        if self.netns:
            self.bpf[b"netns_queries"].open_ring_buffer(self._on_query)

    def close(self):
        super().close()
        if self._ns:
            self._ns.close()
            self._ns = None

    # ---- namespace verdicts ---------------------------------------------------------------
    def _on_query(self, ctx, data, size):
        self._queries.append(self.bpf[b"netns_queries"].event(data).cookie)
        return 0

    def _answer(self):
        if not self._queries:
            return
        inside = self._ns.tcp_cookies()
        table = self.bpf[b"netns_verdict"]
        for cookie in self._queries:
            verdict = VERDICT_IN if cookie in inside else VERDICT_OUT
            table[table.Key(cookie)] = table.Leaf(verdict)
        self.netns_answered += len(self._queries)
        self._queries = []

    def wait(self, seconds, stop=None):
        """Let the program record for up to seconds (less if stop() turns true), answering the
        program's namespace questions meanwhile."""
        end = time.monotonic() + seconds
        while not (stop and stop()):
            left = end - time.monotonic()
            if left <= 0:
                break
            step = min(left, 0.1)
            if self.netns:
                self.bpf.ring_buffer_poll(max(1, int(step * 1000)))
                self._answer()
            else:
                time.sleep(step)

    # ---- reading the maps -----------------------------------------------------------------
    def histograms(self):
        """The histograms recorded so far, one per section (a single one unless per=...)."""
        if not self.hist:
            return []
        slots = {}
        for k, v in self.bpf[b"hist"].items():
            key = bytes(k.addr) if self.per else None
            slots.setdefault(key, [0] * 65)[k.slot] += v.value
        sums = {}
        if self.extended:
            for k, v in self.bpf[b"sums"].items():
                sums[bytes(k.addr) if self.per else None] = (v.sum, v.count)
        out = []
        for key in sorted(slots, key=lambda b: b or b""):
            total, n = sums.get(key, (None, None)) if self.extended else (None, None)
            if total is not None and self.milliseconds:
                total = total / 1000   # the kernel sums microseconds (see tcprtt.c)
            out.append(Log2Hist(section_name(key) if key is not None else None, self.unit,
                                slots[key], total, n))
        return out

    def print_histograms(self):
        """BCC's own log2 printing of the histogram map (the format BCC's tools print)."""
        if self.per:
            header = "Local Address" if self.per == "laddr" else "Remote Address"
            self.bpf[b"hist"].print_log2_hist(self.unit, header, section_print_fn=section_name,
                                             bucket_fn=bytes, bucket_sort_fn=sorted)
        else:
            # One section: print it as BCC prints a plain histogram, without a section title.
            h = self.histograms()
            if h:
                from bcc.table import _print_log2_hist
                _print_log2_hist(h[0].slots, self.unit, None)

    def clear(self):
        """Start the histograms afresh (for interval output)."""
        if self.hist:
            self.bpf[b"hist"].clear()
        if self.extended:
            self.bpf[b"sums"].clear()

    def flows(self):
        """Per-connection statistics recorded so far, busiest first."""
        out = []
        for k, v in self.bpf[b"flows"].items():
            if not v.count:
                continue
            out.append(FlowStats(
                family=4 if k.family == AF_INET else 6,
                laddr=addr_text(k.family, k.laddr), lport=k.lport,
                raddr=addr_text(k.family, k.raddr), rport=k.rport,
                count=v.count, min_us=v.min_us, avg_us=v.sum_us / v.count, max_us=v.max_us,
                last_us=v.last_us, first_ts=self.wall_time(v.first_ns),
                last_ts=self.wall_time(v.last_ns), cookie=v.cookie))
        out.sort(key=lambda f: -f.count)
        return out

    def clear_flows(self):
        self.bpf[b"flows"].clear()

"""Builds and loads the tracker (kernel/tracker.c) with BCC, specialised by a TrackerConfig.

Options that change the packet path (policy, pickup, timeouts, table size, redirect peers,
replay clock) become -D flags, so what is off costs nothing in the kernel. The same object
serves `ctrack replay` (XDP entry, BPF_PROG_TEST_RUN), `ctrack run` (XDP or TC) and the tests.
"""
import ctypes
import os
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from ctrack import KERNEL_DIR
from .defs import defs
from ctrack.errors import CtrackError
from ctrack.bpf import preflight

SOURCE = os.path.join(KERNEL_DIR, "tracker.c")
CLOCK_MONOTONIC_COARSE = getattr(__import__("time"), "CLOCK_MONOTONIC_COARSE", 6)


def kernel_now_ns():
    """The live tracker's clock (first_seen, last_seen, expires): CLOCK_MONOTONIC_COARSE."""
    import time
    return time.clock_gettime_ns(CLOCK_MONOTONIC_COARSE)
POLICIES = ("observe", "enforce")


@dataclass(frozen=True)
class TrackerConfig:
    policy: str = "observe"
    pickup: bool = False
    # timeout name (as in ctrack.h's CT_TIMEOUT_<NAME>) -> seconds
    timeouts: Tuple[Tuple[str, int], ...] = ()
    table_size: Optional[int] = None
    redirect: Optional[Tuple[int, int]] = None   # (ifindex A, ifindex B): bump in the wire
    replay: bool = False
    events: bool = True
    xdp_frags: bool = False
    tc_egress: bool = False   # ct_tc also hooks egress of the observed interface
    rtt: bool = True        # passive RTT (ctrack.engine.rtt); off: -DCT_NO_RTT, nothing of it runs
    synopts: bool = True    # the SYNs' options summary (ctrack.engine.tcpopts); off: -DCT_NO_SYNOPTS
    # the established fast path (kernel/lib/fastpath.h); off: -DCT_NO_FASTPATH, every packet takes
    # the general path -- the same verdicts and tables, slower (its test and bench/fastpath.py)
    fastpath: bool = True
    zeek: bool = True       # Zeek's conn_state/history (ctrack.engine.zeek); off: -DCT_NO_ZEEK

    def cflags(self):
        d = defs()
        flags = ["-I" + KERNEL_DIR, "-Wno-unused-function"]
        if self.policy not in POLICIES:
            raise CtrackError(f"unknown policy {self.policy!r}: choose observe or enforce")
        if self.policy == "enforce":
            flags.append("-DCT_ENFORCE")
        if self.pickup:
            flags.append("-DCT_PICKUP")
        for name, secs in self.timeouts:
            if name not in d.timeouts:
                raise CtrackError(f"unknown timeout {name!r}: known are {', '.join(d.timeouts)}")
            check_timeout(name, secs)
            flags.append(f"-DCT_TIMEOUT_{name}={int(secs)}ULL")
        if self.table_size is not None:
            check_table_size(self.table_size)
            flags.append(f"-DCT_TABLE_SIZE={int(self.table_size)}")
        if self.redirect:
            a, b = self.redirect
            flags += [f"-DCT_REDIRECT_A={int(a)}", f"-DCT_REDIRECT_B={int(b)}"]
        if self.replay:
            flags.append("-DCT_REPLAY")
        if not self.events:
            flags.append("-DCT_NO_EVENTS")
        if self.xdp_frags:
            flags.append("-DCT_XDP_FRAGS")
        if self.tc_egress:
            flags.append("-DCT_TC_EGRESS")
        if not self.rtt:
            flags.append("-DCT_NO_RTT")
        if not self.synopts:
            flags.append("-DCT_NO_SYNOPTS")
        if not self.fastpath:
            flags.append("-DCT_NO_FASTPATH")
        if not self.zeek:
            flags.append("-DCT_NO_ZEEK")
        return flags

    def effective_timeouts(self):
        t = dict(defs().timeouts)
        t.update(dict(self.timeouts))
        return t


# Bounds that keep the kernel's u64 nanosecond arithmetic exact (capture clocks start near
# 1.7e18 ns; 2^64 is 1.8e19) and the preallocated table within reach of real memory.
MAX_TIMEOUT = 10 * 365 * 24 * 3600   # ten years
MAX_TABLE_SIZE = 1 << 24             # 16M entries, about 4 GiB preallocated


def check_timeout(name, secs):
    if not 1 <= int(secs) <= MAX_TIMEOUT:
        raise CtrackError(f"bad --timeout {name}={secs}: seconds must be from 1 to {MAX_TIMEOUT} (ten years)")


def check_table_size(n):
    if not 1 <= int(n) <= MAX_TABLE_SIZE:
        raise CtrackError(f"bad table size {n}: must be from 1 to {MAX_TABLE_SIZE}")


def default_pickup(policy, pickup=None):
    """Mid-stream pickup unless told: on when observing (netfilter picks up by default, and a
    capture that starts mid-connection should show its flows), off when enforcing (a flow no
    SYN opened is not let through unless asked for)."""
    return policy != "enforce" if pickup is None else bool(pickup)


def add_pickup_arguments(p):
    """--pickup / --no-pickup for ctrack run and ctrack replay (default: default_pickup)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--pickup", dest="pickup", action="store_const", const=True, default=None,
                   help="create flows from mid-stream segments (the default under observe)")
    g.add_argument("--no-pickup", dest="pickup", action="store_const", const=False,
                   help="refuse them: INVALID tcp_no_flow (the default under enforce)")


def parse_timeouts(specs):
    """['ESTABLISHED=30', 'udp_new=5'] -> (('ESTABLISHED', 30), ('UDP_NEW', 5)); CtrackError on
    a malformed item or an unknown name."""
    known = defs().timeouts
    out = {}
    for spec in specs or ():
        name, sep, val = spec.partition("=")
        name = name.strip().upper().replace("-", "_")
        if not sep or not val.strip().isdigit():
            raise CtrackError(f"bad --timeout {spec!r}: expected STATE=SECONDS, e.g. ESTABLISHED=300")
        if name not in known:
            raise CtrackError(f"bad --timeout {spec!r}: unknown state {name}; known: {', '.join(known)}")
        check_timeout(name, int(val))
        out[name] = int(val)
    return tuple(sorted(out.items()))


class Tracker:
    """A compiled and loaded tracker. Maps: flows, stats, evict_queue, events (ring buffer),
    trace (replay builds). close() releases everything (BCC detaches what it attached)."""

    def __init__(self, config: TrackerConfig = TrackerConfig(), checks=True):
        if checks:
            preflight.check_all()
        bcc = preflight.require_bcc()
        self.config = config
        self.defs = defs()
        cflags = config.cflags()
        with _StderrCapture() as cap:
            try:
                self.bpf = bcc.BPF(src_file=SOURCE.encode(), cflags=cflags)
                failure = None
            except Exception as exc:  # BCC raises a bare Exception on any failure
                failure = exc
        if failure is not None:
            raise CtrackError(_explain_bcc_failure(cap.text, failure)) from None
        if os.environ.get("CTRACK_DEBUG") and cap.text:
            os.write(2, cap.text.encode())
        self._fns = {}

    def fn(self, name="ct_xdp"):
        """Load one entry point: ct_xdp (XDP) or ct_tc (SCHED_CLS). Cached."""
        if name not in self._fns:
            import bcc
            kind = bcc.BPF.XDP if name == "ct_xdp" else bcc.BPF.SCHED_CLS
            try:
                self._fns[name] = self.bpf.load_func(name, kind)
            except Exception as exc:
                raise CtrackError(f"the kernel refused to load {name}: {exc}") from None
        return self._fns[name]

    @property
    def flows(self):
        return self.bpf["flows"]

    @property
    def stats_map(self):
        return self.bpf["stats"]

    def stats(self):
        """Global statistics summed over CPUs, by name (see ctrack.engine.stats)."""
        from .stats import decode_stats
        return decode_stats(self.stats_map, self.defs)

    def reset(self):
        """Empty the flow table, statistics and eviction queue (tests, repeated replays)."""
        self.flows.clear()
        st = self.stats_map
        st[st.Key(0)] = st.Leaf(*[st.sLeaf() for _ in range(len(st.Leaf()))])
        q = self.bpf["evict_queue"]
        while True:
            try:
                q.pop()
            except KeyError:
                break

    def close(self):
        if getattr(self, "bpf", None) is not None:
            self.bpf.cleanup()
            self.bpf = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _StderrCapture:
    """Collects what BCC and clang write to fd 2 while compiling (warnings, libbcc's messages),
    so a user sees one line, not forty; CTRACK_DEBUG=1 shows it all."""

    def __enter__(self):
        import tempfile
        self._tmp = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._tmp.fileno(), 2)
        return self

    def __exit__(self, *exc):
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._tmp.seek(0)
        self.text = self._tmp.read().decode(errors="replace")
        self._tmp.close()


def _explain_bcc_failure(text, exc):
    import re
    m = re.search(r"could not open bpf map: (\w+), error: ([^\n]+)", text)
    if m:
        hint = " (try a smaller --table-size)" if "memory" in m.group(2).lower() or "big" in m.group(2).lower() else ""
        return f"cannot create the tracker's {m.group(1)} map: {m.group(2).strip()}{hint}"
    for line in text.splitlines():
        if "error:" in line:
            return f"the tracker failed to compile: {line.strip()} (CTRACK_DEBUG=1 shows everything)"
    return f"the tracker failed to load: {exc}"

#!/usr/bin/env python3
"""Where the established fast path's time goes, stage by stage, against the reference conntrack.

    sudo /usr/bin/python3 bench/fastpath_parts.py [--repeat 200000] [--runs 15] [--json]

bench/fastpath.py gives the total. This gives its parts. It builds the tracker several times, in
the same run and on the same data segment with timestamps (NOP, NOP, TS, as Linux sends it):
- builds that end the packet's path early (-DCT_BENCH_STOP=N, see kernel/tracker.c's
  ct_process), after:
  1. the per-CPU state is cleared;
  2. the packet is parsed;
  3. the clock is read and the flow is looked up;
  4. the flow's lock is taken and released;
- the whole fast path without the passive RTT and Zeek's record (`--no-rtt --no-zeek`): stage 4
  plus the checks, netfilter's window rules and the counters;
- `--no-rtt` (adds Zeek's record);
- the default build (adds the passive RTT).

Every build also counts its statistics and returns its verdict, as a packet does. Each row gives
ns per packet (median of rounds), the ratio to the reference conntrack in the same round, and what
the stage adds to the row above it. The reference (bench/reference_ct.c) does stages 2-4 in their
least form: parse Ethernet/IPv4/TCP, one lookup, counters under the lock.
"""
import argparse
import json
import os
import statistics
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from scapy.layers.inet import IP  # noqa: E402

from ctrack.bpf.testrun import TestRunner  # noqa: E402
from ctrack.engine.tracker import Tracker, TrackerConfig  # noqa: E402
from fastpath import Reference, measure, round_ratio, tcp_frames, with_timestamps  # noqa: E402


@dataclass(frozen=True)
class StopConfig(TrackerConfig):
    """A tracker build whose packet path ends after stage `stop` (0: the whole path)."""
    stop: int = 0

    def cflags(self):
        flags = super().cflags()
        if self.stop:
            flags.append(f"-DCT_BENCH_STOP={self.stop}")
        return flags


STAGES = [
    ("1 per-CPU state cleared", dict(stop=1)),
    ("2 + parse", dict(stop=2)),
    ("3 + clock, flow lookup", dict(stop=3)),
    ("4 + the flow's lock", dict(stop=4)),
    ("5 + checks, window, counters", dict(rtt=False, zeek=False)),
    ("6 + Zeek's record", dict(rtt=False)),
    ("7 + passive RTT (default)", dict()),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=200000, help="runs per measurement")
    ap.add_argument("--runs", type=int, default=15, help="interleaved rounds (median)")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args()

    setup, data = tcp_frames(IP, "10.1.0.1", "10.2.0.2")
    data = with_timestamps(data)
    ref = Reference()
    trackers = []
    try:
        cases = [("reference conntrack", ref.xdp, data)]
        ref.xdp.run(data)   # inserts the reference's flow: its later runs are the established path
        for name, kw in STAGES:
            tr = Tracker(StopConfig(**kw))
            trackers.append(tr)
            runner = TestRunner(tr.fn("ct_xdp").fd)
            for frame in setup:
                runner.run(frame)
            cases.append((name, runner, data))
        samples = measure(cases, args.repeat, args.runs)
    finally:
        for tr in trackers:
            tr.close()
        ref.close()

    rows, prev = [], None
    refs = samples["reference conntrack"]
    for name, *_ in cases:
        s = samples[name]
        med = statistics.median(s)
        rows.append({"stage": name, "median_ns": med, "vs_reference": round_ratio(s, refs),
                     "adds_ns": None if prev is None or name == "reference conntrack"
                     else med - prev})
        if name != "reference conntrack":
            prev = med
    if args.json:
        print(json.dumps({"repeat": args.repeat, "runs": args.runs, "rows": rows}, indent=1))
        return 0
    print(f"BPF_PROG_TEST_RUN (XDP), data segment with timestamps, repeat={args.repeat}, "
          f"median of {args.runs} interleaved rounds")
    print(f"{'stage':34} {'ns':>6} {'vs ref':>7} {'adds':>6}")
    for r in rows:
        adds = "" if r["adds_ns"] is None else f"{r['adds_ns']:+6.0f}"
        print(f"{r['stage']:34} {r['median_ns']:6.0f} {r['vs_reference']:6.2f}x {adds:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

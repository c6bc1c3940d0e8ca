#!/usr/bin/python3
"""What passive RTT and the SYN options summary cost the tracker's established path: the default
build (both on) beside the build with `--no-rtt --no-syn-options` (-DCT_NO_RTT -DCT_NO_SYNOPTS:
none of it compiled in) and an empty XDP program, in the same run, with BPF_PROG_TEST_RUN
(repeat=N); ns/packet, median of runs, and ratios.

    sudo /usr/bin/python3 bench/rtt_cost.py [--repeat 200000] [--runs 11] [--json]

Frames: a 1000-byte data segment of an established IPv4 flow with TCP timestamps in Linux's
layout (NOP, NOP, TS: the tracker's fast check) and the same without timestamps. The flows are set
up by their handshakes through each build first. A repeated frame carries a TSval already seen,
so the RTT build does what it does for most segments of a real flow: reads the timestamps and
the fine clock, finds nothing new to time and no echo to match. (A sample or a new TSval adds a
few stores.) bench/fastpath.py has the other paths.
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scapy.layers.inet import IP, TCP  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402
from scapy.packet import Raw  # noqa: E402

from ctrack.bpf.testrun import TestRunner  # noqa: E402
from ctrack.engine.tracker import Tracker, TrackerConfig  # noqa: E402

SYN_OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]


def frames(sport, ts):
    e = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    c = lambda **kw: bytes(e / IP(src="10.1.0.1", dst="10.2.0.2") / TCP(sport=sport, dport=80, **kw))
    s = lambda **kw: bytes(e / IP(src="10.2.0.2", dst="10.1.0.1") / TCP(sport=80, dport=sport, **kw))
    syn_opts = SYN_OPTS if ts else [o for o in SYN_OPTS if o[0] != "Timestamp"]
    seg = [("NOP", None), ("NOP", None), ("Timestamp", (2, 1))] if ts else []
    setup = [c(flags="S", seq=1000, options=syn_opts),
             s(flags="SA", seq=5000, ack=1001, options=syn_opts),
             c(flags="A", seq=1001, ack=5001, options=seg)]
    data = bytes(e / IP(src="10.1.0.1", dst="10.2.0.2") / TCP(
        sport=sport, dport=80, flags="PA", seq=1001, ack=5001, window=512, options=seg) / Raw(b"x" * 1000))
    return setup, data


def measure(runner, frame, repeat, runs):
    samples = [runner.run(frame, repeat=repeat)[1] for _ in range(runs)]
    return statistics.median(samples), min(samples), max(samples)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=200000)
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import bcc
    empty = bcc.BPF(text="int xdp_empty(struct xdp_md *ctx) { return XDP_PASS; }")
    empty_xdp = TestRunner(empty.load_func("xdp_empty", bcc.BPF.XDP).fd)
    builds = {"rtt": Tracker(TrackerConfig()),
              "no-rtt": Tracker(TrackerConfig(rtt=False, synopts=False))}
    runners = {k: TestRunner(t.fn("ct_xdp").fd) for k, t in builds.items()}
    (setup_ts, data_ts), (setup_plain, data_plain) = frames(40000, True), frames(40001, False)
    for r in runners.values():
        for f in setup_ts + setup_plain:
            r.run(f)

    cases = [("empty XDP program", empty_xdp, data_ts, None),
             ("no-rtt build, segment with timestamps", runners["no-rtt"], data_ts, "empty XDP program"),
             ("rtt build, segment with timestamps", runners["rtt"], data_ts, "no-rtt build, segment with timestamps"),
             ("no-rtt build, segment without", runners["no-rtt"], data_plain, "empty XDP program"),
             ("rtt build, segment without", runners["rtt"], data_plain, "no-rtt build, segment without")]
    results, rows = {}, []
    # interleave the builds' runs, so that a noisy neighbour hits both alike
    order = [c for c in cases]
    meds = {name: [] for name, *_ in cases}
    for _ in range(args.runs):
        for name, runner, frame, base in order:
            meds[name].append(runner.run(frame, repeat=args.repeat)[1])
    for name, runner, frame, base in cases:
        med = statistics.median(meds[name])
        results[name] = med
        ratio = med / results[base] if base else 1.0
        rows.append((name, med, min(meds[name]), max(meds[name]), base or "-", ratio,
                     med / results["empty XDP program"]))
    for t in builds.values():
        t.close()
    if args.json:
        import json
        print(json.dumps([dict(zip(("case", "median_ns", "min_ns", "max_ns", "baseline", "ratio",
                                    "vs_empty"), r)) for r in rows]))
        return
    print(f"BPF_PROG_TEST_RUN XDP, repeat={args.repeat}, median of {args.runs} interleaved runs, ns/packet")
    print(f"{'case':<40}{'median':>8}{'min':>7}{'max':>7}{'vs baseline':>13}{'vs empty':>10}  baseline")
    for name, med, lo, hi, base, ratio, ve in rows:
        print(f"{name:<40}{med:>8.1f}{lo:>7.1f}{hi:>7.1f}{ratio:>12.2f}x{ve:>9.2f}x  {base}")


if __name__ == "__main__":
    main()

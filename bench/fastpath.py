#!/usr/bin/python3
"""Per-packet cost of the tracker's paths, measured with BPF_PROG_TEST_RUN (repeat=N) beside an
empty program of the same type in the same run; reports ns/packet (median of runs) and ratios.

    sudo /usr/bin/python3 bench/fastpath.py [--repeat 200000] [--runs 11]

The tracker is the live build (kernel clock, events on, observe policy); flows are set up by
running their handshake through the same program first. The "established" row is the fast path:
one flow-table lookup, the flow's lock, the window checks, counters.
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scapy.layers.inet import ICMP, IP, TCP, UDP  # noqa: E402
from scapy.layers.inet6 import IPv6  # noqa: E402
from scapy.layers.l2 import ARP, Ether  # noqa: E402
from scapy.packet import Raw  # noqa: E402

from ctrack.testrun import TestRunner  # noqa: E402
from ctrack.tracker import Tracker, TrackerConfig  # noqa: E402

OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]


def tcp_frames(l3, src, dst, sport=40000, dport=80):
    e = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    c = lambda **kw: bytes(e / l3(src=src, dst=dst) / TCP(sport=sport, dport=dport, **kw))
    s = lambda **kw: bytes(e / l3(src=dst, dst=src) / TCP(sport=dport, dport=sport, **kw))
    setup = [c(flags="S", seq=1000, options=OPTS), s(flags="SA", seq=5000, ack=1001, options=OPTS),
             c(flags="A", seq=1001, ack=5001)]
    data = bytes(e / l3(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="PA", seq=1001,
                                                 ack=5001, window=512) / Raw(b"x" * 1000))
    return setup, data


def measure(runner, frame, repeat, runs):
    samples = []
    for _ in range(runs):
        _, ns = runner.run(frame, repeat=repeat)
        samples.append(ns)
    return statistics.median(samples), min(samples), max(samples)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=200000)
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import bcc
    empty = bcc.BPF(text="int xdp_empty(struct xdp_md *ctx) { return XDP_PASS; }\n"
                         "int tc_empty(struct __sk_buff *skb) { return 0; }")
    empty_xdp = TestRunner(empty.load_func("xdp_empty", bcc.BPF.XDP).fd)
    empty_tc = TestRunner(empty.load_func("tc_empty", bcc.BPF.SCHED_CLS).fd)
    tr = Tracker(TrackerConfig())
    xdp = TestRunner(tr.fn("ct_xdp").fd)
    tc = TestRunner(tr.fn("ct_tc").fd)

    setup4, data4 = tcp_frames(IP, "10.1.0.1", "10.2.0.2")
    setup6, data6 = tcp_frames(IPv6, "fd00::1", "fd00::2")
    for f in setup4 + setup6:
        xdp.run(f)
    udp = bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / IP(src="10.1.0.1", dst="10.2.0.2") / UDP(sport=5000, dport=53) / Raw(b"q" * 64))
    udp_reply = bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / IP(src="10.2.0.2", dst="10.1.0.1") / UDP(sport=53, dport=5000) / Raw(b"r" * 64))
    xdp.run(udp)
    xdp.run(udp_reply)
    # port unreachable quoting the UDP flow's datagram: the RELATED path (a lookup, no update)
    unreach = bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / IP(src="10.2.0.2", dst="10.1.0.1") / ICMP(type=3, code=3)
                    / Raw(udp[14:14 + 28]))
    arp = bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / ARP())
    nosyn = bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / IP(src="10.9.9.9", dst="10.2.0.2") / TCP(sport=1, dport=2, flags="A", seq=1, ack=1))

    cases = [
        ("empty XDP program", empty_xdp, data4, None),
        ("tracker XDP: TCP established (IPv4)", xdp, data4, "empty XDP program"),
        ("tracker XDP: TCP established (IPv6)", xdp, data6, "empty XDP program"),
        ("tracker XDP: UDP established", xdp, udp, "empty XDP program"),
        ("tracker XDP: TCP without flow (INVALID)", xdp, nosyn, "empty XDP program"),
        ("tracker XDP: ICMP error (RELATED)", xdp, unreach, "empty XDP program"),
        ("tracker XDP: non-IP (ARP)", xdp, arp, "empty XDP program"),
        ("empty TC program", empty_tc, data4, None),
        ("tracker TC: TCP established (IPv4)", tc, data4, "empty TC program"),
    ]
    results = {}
    rows = []
    for name, runner, frame, base in cases:
        med, lo, hi = measure(runner, frame, args.repeat, args.runs)
        results[name] = med
        ratio = f"{med / results[base]:.2f}x" if base else "1.00x"
        extra = f"+{med - results[base]:.0f}" if base else ""
        rows.append((name, med, lo, hi, ratio, extra))
    if args.json:
        import json
        print(json.dumps([dict(zip(("case", "median_ns", "min_ns", "max_ns", "ratio", "over_empty_ns"), r))
                          for r in rows]))
        return
    print(f"BPF_PROG_TEST_RUN, repeat={args.repeat}, median of {args.runs} runs, ns/packet")
    print(f"{'case':<42}{'median':>8}{'min':>7}{'max':>7}{'vs empty':>10}{'added':>8}")
    for name, med, lo, hi, ratio, extra in rows:
        print(f"{name:<42}{med:>8.0f}{lo:>7.0f}{hi:>7.0f}{ratio:>10}{extra:>8}")
    tr.close()


if __name__ == "__main__":
    main()

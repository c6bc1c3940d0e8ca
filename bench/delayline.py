#!/usr/bin/python3
"""Measure the lab's delay line: RTT accuracy from 1 to 100 ms (ping -U across a bridged wire
lab, compared with the configured 2 x delay) and its throughput ceiling (iperf3 through it).
Prints the markdown tables docs/lab.md carries. Needs root; builds its own lab ("bench" by
default) and always takes it down. About a minute."""
import argparse
import json
import statistics
import sys
import time

sys.path.insert(0, __file__.rsplit("/bench/", 1)[0])  # run from a checkout without installing

from ctrack.errors import CtrackError  # noqa: E402
from ctrack.lab.core import Lab  # noqa: E402

DELAYS_MS = (1, 5, 10, 20, 50, 100)
PORT = 5399

# ping prints 3 significant digits (101 ms), too coarse at 50 ms and beyond; this UDP echo
# pair measures each round trip with perf_counter_ns in the client instead.
ECHO_SERVER = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", %d))
s.settimeout(60)
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
"""
ECHO_CLIENT = """
import json, socket, sys, time
dst, port, count, interval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2.0)
rtts = []
for i in range(count):
    t0 = time.perf_counter_ns()
    s.sendto(i.to_bytes(4, "big") + bytes(52), (dst, port))
    try:
        while True:
            data, _ = s.recvfrom(2048)
            if int.from_bytes(data[:4], "big") == i:
                break
        rtts.append((time.perf_counter_ns() - t0) / 1e6)
    except socket.timeout:
        pass
    time.sleep(interval)
print(json.dumps(rtts))
"""


def pct(values, p):
    """Nearest-rank percentile (with 20 samples, p99 is the largest)."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def udp_rtts(lab, count, interval):
    res = lab.exec("ns1", ["/usr/bin/python3", "-c", ECHO_CLIENT, lab.addr("ns2"), str(PORT + 1),
                           str(count), str(interval)], timeout=count * (interval + 2.5) + 10)
    return json.loads(res.stdout)


def accuracy(lab, delays, count, interval):
    rows = []
    echo = lab.spawn("ns2", ["/usr/bin/python3", "-c", ECHO_SERVER % (PORT + 1)])
    try:
        time.sleep(0.3)
        for d in (0,) + tuple(delays):
            lab.set_delay(delay_ms=d)
            lab.ping("ns1", "ns2", count=2, interval=0.05)  # warm: neighbour entries, caches
            r = lab.ping("ns1", "ns2", count=count, interval=interval)["rtt_ms"]
            u = udp_rtts(lab, count, interval)
            late = [s.get("late_us_mean", 0.0) for s in lab.delay_stats()]
            rows.append({"delay_ms": d, "target_ms": 2.0 * d, "n": len(r),
                         "median_ms": statistics.median(r), "p99_ms": pct(r, 99), "min_ms": min(r),
                         "udp_median_ms": statistics.median(u), "udp_p99_ms": pct(u, 99),
                         "late_us_mean": statistics.mean(late) if late else 0.0})
    finally:
        echo.stop()
    return rows


def iperf(lab, seconds, udp=False, length=None, rate=None, flows=1):
    srv = lab.spawn("ns2", ["iperf3", "-s", "-1", "-p", str(PORT)])
    try:
        time.sleep(0.3)
        argv = ["iperf3", "-c", lab.addr("ns2"), "-p", str(PORT), "-t", str(seconds), "-J"]
        if udp:
            argv += ["-u", "-b", rate or "1G"]
        if length:
            argv += ["-l", str(length)]
        if flows > 1:
            argv += ["-P", str(flows)]
        res = lab.exec("ns1", argv, timeout=seconds + 20)
        end = json.loads(res.stdout)["end"]
        if udp:
            s = end.get("sum_received") or end["sum"]
            got = s.get("packets", 0) - s.get("lost_packets", 0)
            return {"gbit_s": s["bits_per_second"] / 1e9, "lost_pct": s.get("lost_percent", 0.0),
                    "pps": got / max(s["seconds"], 1e-9)}
        return {"gbit_s": end["sum_received"]["bits_per_second"] / 1e9,
                "retransmits": end["sum_sent"].get("retransmits", 0)}
    finally:
        srv.stop()


def throughput(lab, seconds):
    rows = []
    cases = [("bridge only, no delay line", None, 1),
             ("delay line, 10 us", 0.01, 1),
             ("delay line, 1 ms", 1, 1),
             ("delay line, 10 ms", 10, 1),
             ("delay line, 50 ms", 50, 1),
             ("delay line, 50 ms, 8 flows (-P 8)", 50, 8)]
    for label, d, flows in cases:
        if d is None:
            lab.set_delay(0, 0, 0)
        else:
            lab.set_delay(delay_ms=d)
        r = iperf(lab, seconds, flows=flows)
        stats = lab.delay_stats()
        r.update(label=label, delay_ms=d or 0, proto="tcp",
                 overflow=sum(s.get("overflow", 0) for s in stats),
                 max_held=max([s.get("max_held", 0) for s in stats] or [0]))
        rows.append(r)
    # Small packets: what the per-packet cost allows (each packet is two netlink messages).
    for label, d in (("bridge only, UDP 64-byte datagrams", None),
                     ("delay line, 10 us, UDP 64-byte datagrams", 0.01)):
        lab.set_delay(0, 0, 0) if d is None else lab.set_delay(delay_ms=d)
        r = iperf(lab, seconds, udp=True, length=64, rate="200M")
        stats = lab.delay_stats()
        r.update(label=label, delay_ms=d or 0, proto="udp64",
                 line_drops=sum(s.get("overflow", 0) + s.get("kernel_user_dropped", 0)
                                + s.get("kernel_queue_dropped", 0) for s in stats))
        rows.append(r)
    lab.set_delay(0, 0, 0)
    return rows


def markdown(acc, thr, count, interval):
    out = []
    if acc:
        out += [f"RTT accuracy ({count} probes {interval} s apart; wire lab, bridged):", "",
                "| delay each way | expected RTT | ping -U median | ping -U p99 | UDP echo median | "
                "UDP echo p99 | UDP median - expected | release late (mean) |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in acc:
        out.append(f"| {r['delay_ms']:g} ms | {r['target_ms']:g} ms | {r['median_ms']:.3g} ms | "
                   f"{r['p99_ms']:.3g} ms | {r['udp_median_ms']:.3f} ms | {r['udp_p99_ms']:.3f} ms | "
                   f"{r['udp_median_ms'] - r['target_ms']:+.3f} ms | {r['late_us_mean']:.0f} us |")
    if thr:
        out += ["", "Throughput (iperf3 -t N, TCP ns1 -> ns2; UDP with -u -b 200M -l 64):", "",
                "| path | throughput | notes |", "|---|---:|---|"]
    for r in thr:
        if r["proto"] == "tcp":
            note = f"retransmits {r['retransmits']}, max held {r.get('max_held', 0)}"
        else:
            note = f"received {r['pps'] / 1e3:.0f} kpps, lost {r['lost_pct']:.1f}%"
            if r.get("line_drops"):
                note += f", {r['line_drops']} dropped by the delay line's queue"
        out.append(f"| {r['label']} | {r['gbit_s']:.2f} Gbit/s | {note} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example:\n  sudo /usr/bin/python3 bench/delayline.py --seconds 5")
    ap.add_argument("--name", default="bench", help="lab name (default: %(default)s)")
    ap.add_argument("--count", type=int, default=20, help="pings per delay (default 20)")
    ap.add_argument("--interval", type=float, default=0.05, help="ping interval, s (default 0.05)")
    ap.add_argument("--seconds", type=int, default=5, help="iperf3 duration (default 5)")
    ap.add_argument("--no-throughput", action="store_true", help="only the RTT accuracy table")
    ap.add_argument("--no-accuracy", action="store_true", help="only the throughput table")
    ap.add_argument("--no-tso", action="store_true", help="build the lab with TSO/GSO off on the hosts")
    ap.add_argument("--json", action="store_true", help="print raw results as JSON")
    args = ap.parse_args()
    lab = Lab(args.name, "wire", bridge=True, no_tso=args.no_tso)
    try:
        lab.up()
        acc = [] if args.no_accuracy else accuracy(lab, DELAYS_MS, args.count, args.interval)
        thr = [] if args.no_throughput else throughput(lab, args.seconds)
    except CtrackError as exc:
        print(f"delayline bench: {exc}", file=sys.stderr)
        return 1
    finally:
        lab.down()
    if args.json:
        print(json.dumps({"accuracy": acc, "throughput": thr}, indent=1))
    else:
        print(markdown(acc, thr, args.count, args.interval))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""ctrack-top's refresh time with a big table: read every entry, compute rates and counts,
filter, sort, and draw one full screen (into a buffer, as a 160x50 terminal would get it).

    sudo /usr/bin/python3 bench/top_refresh.py [--flows 100000] [--refreshes 15] [--json]

A real tracker is loaded and pinned (not attached) and its table filled by writing entries
straight into the map; between refreshes 10% of the flows grow their byte counters, so rates are
non-zero and the rate sort has work to do. Each scenario (sort order, filter) is timed over
--refreshes refreshes after one warm-up; the figure is wall time per refresh (median, max),
split into reading (batch lookups + decoding + rates) and the rest (select, sort, draw), and the
process's CPU time per refresh (less sensitive to other work on the machine than wall time).
"""
import argparse
import io
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tablefill import bench_tracker, fill  # noqa: E402

from ctrack.engine.flowfilter import FlowFilter  # noqa: E402
from ctrack.top.app import Top, build_parser  # noqa: E402

SCENARIOS = (("rate", []), ("bytes", []), ("state", []), ("age", []),
             ("rate", ["-p", "tcp", "--state", "established", "--addr", "10.0.0.0/16"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flows", type=int, default=100_000)
    ap.add_argument("--refreshes", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from rich.console import Console
    import gc
    gc.disable()   # as ctrack-top's main() does (it collects every 30 refreshes)

    n = args.flows
    size = 1 << (n - 1).bit_length()
    out = {"flows": n, "table_size": size, "screen": "160x50", "scenarios": []}
    with bench_tracker(f"btop{os.getpid()}", size) as (meta, sh):
        now = fill(sh, n, udp_every=7)
        step = [0]

        def grow():
            # 10% of the flows move 100 kB more each time, same first_seen: real rates
            step[0] += 1
            fill(sh, n // 10, udp_every=7, now=now, bytes_base=1000 + step[0] * 100_000)

        for sort, extra in SCENARIOS:
            targs = build_parser().parse_args(["--sort", sort, *extra])
            top = Top(targs, meta, sh)
            con = Console(file=io.StringIO(), width=160, height=50, force_terminal=True,
                          color_system="truecolor")
            top.refresh()
            grow()
            times, reads, cpu = [], [], []
            for _ in range(args.refreshes + 1):
                grow()
                c0 = time.process_time()
                t0 = time.perf_counter()
                top.refresh()
                t1 = time.perf_counter()
                frame, _ = top.render(50)
                con.print(frame)
                t2 = time.perf_counter()
                cpu.append(time.process_time() - c0)
                times.append(t2 - t0)
                reads.append(t1 - t0)
                con.file.seek(0)
                con.file.truncate()
            times, reads, cpu = times[1:], reads[1:], cpu[1:]   # the first warms allocations up
            sc = {"sort": sort, "filter": FlowFilter.from_args(targs).describe() or "none",
                  "matching": top.matching,
                  "refresh_ms_median": round(statistics.median(times) * 1000, 1),
                  "refresh_ms_max": round(max(times) * 1000, 1),
                  "read_ms_median": round(statistics.median(reads) * 1000, 1),
                  "cpu_ms_median": round(statistics.median(cpu) * 1000, 1)}
            out["scenarios"].append(sc)
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"ctrack-top refresh, {n:,} flows in a table of {size:,}, one 160x50 screen:")
    for sc in out["scenarios"]:
        print(f"  sort {sc['sort']:<7} filter {sc['filter']:<45} ({sc['matching']:>6,} match): "
              f"{sc['refresh_ms_median']:6.1f} ms median, {sc['refresh_ms_max']:6.1f} ms max "
              f"(reading {sc['read_ms_median']:.1f} ms; CPU {sc['cpu_ms_median']:.1f} ms)")
    print(f"load average during the run: {os.getloadavg()[0]:.2f} (other work slows the wall times)")


if __name__ == "__main__":
    main()

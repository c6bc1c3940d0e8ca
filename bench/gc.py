#!/usr/bin/python3
"""The collector's cost: scan rate on a full table, and CPU at rest with many idle flows.

    sudo /usr/bin/python3 bench/gc.py [--entries 1000000] [--idle 100000] [--seconds 20] [--json]

1. Scan rate: a real tracker (loaded, pinned, not attached) with a table of --entries entries,
   filled by writing entries straight into the map. A collector pass (batch-lookup scan, then
   the XDP compare-and-delete for the expired) is timed with every entry live (the steady
   state), then with half of them expired (each checked under its lock, removed, reported
   DESTROY); medians of --runs. The baseline measured in the same run: merely copying the
   whole table to user space with batch lookups (the scan's floor), so that a noisy or slower
   machine reads as ratios.
2. CPU at rest: --idle live flows with long timeouts in a table sized for them; the collector
   runs its normal schedule (default interval 1 s, backing off while nothing expires) for
   --seconds in a thread; its own CPU time (user + system) over wall time is the figure.
"""
import argparse
import json
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tablefill import bench_tracker, fill  # noqa: E402

from ctrack.live.collector import SCAN_CHUNK, Collector  # noqa: E402
from ctrack.bpf.maps import Batch  # noqa: E402


def scan_rate(n, runs):
    out = {"entries": n}
    with bench_tracker(f"bgc{os.getpid()}", n) as (meta, sh):
        t0 = time.perf_counter()
        fill(sh, n)
        out["fill_s"] = round(time.perf_counter() - t0, 2)
        gc = Collector(sh)
        times = []
        for _ in range(runs):
            r = gc.scan(collect=False)
            assert r.scanned == n and r.removed == 0, r
            times.append(r.duration_s)
        med = statistics.median(times)
        out["all_live"] = {"ms": round(med * 1000, 1), "entries_per_s": int(n / med),
                           "ns_per_entry": round(med * 1e9 / n)}
        copy = []
        # the same chunk size as the collector's scan: like with like
        copier = Batch(sh.flows.map_fd, sh.layout.key_size, sh.layout.entry_size, SCAN_CHUNK)
        for _ in range(runs):
            t0 = time.perf_counter()
            seen = sum(c for c, _, _ in copier.lookup_all())
            copy.append(time.perf_counter() - t0)
            assert seen == n
        med = statistics.median(copy)
        out["batch_copy_only"] = {"ms": round(med * 1000, 1), "entries_per_s": int(n / med)}
        t0 = time.perf_counter()
        out["decode_rows_s"] = None
        rows = sh.rows()
        out["decode_rows_s"] = round(time.perf_counter() - t0, 3)
        del rows
        half = []
        for _ in range(runs):
            fill(sh, n, expired_every=2)
            r = gc.scan(collect=False)
            assert r.scanned == n and r.removed == n // 2, r
            half.append(r.duration_s)
        med = statistics.median(half)
        out["half_expired"] = {"ms": round(med * 1000, 1), "removed": r.removed,
                               "reported": r.reported, "entries_per_s": int(n / med),
                               "ms_range": [round(min(half) * 1000, 1), round(max(half) * 1000, 1)]}
        copy_s = out["batch_copy_only"]["ms"] / 1000
        out["ratio_to_copy"] = {"all_live": round(out["all_live"]["ms"] / 1000 / copy_s, 2),
                                "half_expired": round(med / copy_s, 2)}
    return out


def idle_cpu(n, seconds, interval):
    size = 1 << (n - 1).bit_length()   # the next power of two, as a user would size it
    out = {"idle_flows": n, "table_size": size, "seconds": seconds, "interval_s": interval}
    with bench_tracker(f"bgci{os.getpid()}", size) as (meta, sh):
        fill(sh, n, lifetime_s=86400)
        gc = Collector(sh, interval=interval)
        stop = threading.Event()
        passes, cpu = [], {}

        def body():
            t0 = time.thread_time()
            # as `ctrack run`'s collector: nothing decoded
            gc.run(stop, on_scan=lambda r: passes.append(r.duration_s), owner="bench",
                   collect=False)
            cpu["s"] = time.thread_time() - t0

        th = threading.Thread(target=body)
        w0 = time.monotonic()
        th.start()
        time.sleep(seconds)
        stop.set()
        th.join()
        wall = time.monotonic() - w0
        out["passes"] = len(passes)
        out["pass_ms_median"] = round(statistics.median(passes) * 1000, 1)
        out["cpu_s"] = round(cpu["s"], 3)
        out["cpu_pct_of_one_core"] = round(100 * cpu["s"] / wall, 2)
        # without the back-off: one pass every interval
        out["cpu_pct_every_interval"] = round(100 * statistics.median(passes) / interval, 2)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=1_000_000, help="table for the scan rate")
    ap.add_argument("--idle", type=int, default=100_000, help="idle flows for the CPU figure")
    ap.add_argument("--seconds", type=float, default=20, help="how long the collector runs at rest")
    ap.add_argument("--interval", type=float, default=1.0, help="collector interval")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    # the machine is shared: its load says how far to trust the absolute figures (the ratios
    # to the batch copy measured in the same run travel better)
    load0 = os.getloadavg()[0]
    res = {"scan": scan_rate(args.entries, args.runs),
           "idle": idle_cpu(args.idle, args.seconds, args.interval)}
    res["loadavg_1min"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    if args.json:
        print(json.dumps(res, indent=1))
        return
    s, i = res["scan"], res["idle"]
    print(f"scan of {s['entries']:,} entries, all live:  {s['all_live']['ms']} ms "
          f"= {s['all_live']['entries_per_s']:,} entries/s ({s['all_live']['ns_per_entry']} ns each)")
    print(f"  half expired (removed {s['half_expired']['removed']:,}, reported "
          f"{s['half_expired']['reported']:,}): {s['half_expired']['ms']} ms "
          f"(range {s['half_expired']['ms_range'][0]}-{s['half_expired']['ms_range'][1]}) "
          f"= {s['half_expired']['entries_per_s']:,} entries/s")
    print(f"  baseline, batch copy to user space only: {s['batch_copy_only']['ms']} ms "
          f"= {s['batch_copy_only']['entries_per_s']:,} entries/s; a pass takes "
          f"{s['ratio_to_copy']['all_live']}x that all live, {s['ratio_to_copy']['half_expired']}x "
          f"half expired; decoding those rows as Python tuples: {s['decode_rows_s']} s")
    print(f"at rest, {i['idle_flows']:,} idle flows (table {i['table_size']:,}), interval "
          f"{i['interval_s']} s, {i['seconds']} s: {i['passes']} passes of {i['pass_ms_median']} ms, "
          f"collector CPU {i['cpu_pct_of_one_core']}% of one core "
          f"({i['cpu_pct_every_interval']}% if it scanned every interval)")
    print(f"load average (1 min) at start and end: {res['loadavg_1min'][0]}, {res['loadavg_1min'][1]}")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Overhead of the observers' BPF programs, in nanoseconds per event, measured by the kernel.

Drives a bounded number of loopback TCP connections (connect, request/response rounds, close)
with each program attached, and reads the program's run_time_ns / run_cnt (BPF statistics,
turned on with BPF_ENABLE_STATS for the duration only: the kernel switches them off again when
the fd closes, so kernel.bpf_stats_enabled is never touched). Also times the workload with and
without the program, a noisier end-to-end view.

    /usr/bin/python3 bench/observers.py [--connections 2000] [--rounds 10] [--json]
"""
import argparse
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ctrack.observers import Filters, RttObserver, StateObserver, enable_stats  # noqa: E402


def workload(connections, rounds, drain=None):
    """connections x (connect, rounds of 100 B request / 1 B response, close) on 127.0.0.1."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(64)
        addr = srv.getsockname()
        for i in range(connections):
            cli = socket.create_connection(addr)
            conn, _ = srv.accept()
            for _ in range(rounds):
                cli.sendall(b"q" * 100)
                conn.recv(100)
                conn.sendall(b"r")
                cli.recv(1)
            cli.close()
            conn.close()
            if drain and i % 50 == 0:
                drain()
    return addr[1]


def measure(name, make, connections, rounds):
    obs = make().start()
    try:
        drain = obs.drain if isinstance(obs, StateObserver) else None
        with enable_stats():
            _, t0, c0 = obs.run_stats()
            w0 = time.perf_counter()
            workload(connections, rounds, drain)
            wall = time.perf_counter() - w0
            prog_id, t1, c1 = obs.run_stats()
        if drain:
            drain()
        lost = obs.lost()
    finally:
        obs.close()
    runs = c1 - c0
    return {"program": name, "prog_id": prog_id, "runs": runs, "run_time_ns": t1 - t0,
            "ns_per_event": (t1 - t0) / runs if runs else None, "wall_s": wall, "lost": lost}


CONFIGS = [
    ("tcpstates", lambda: StateObserver()),
    ("tcpstates -L 1 (all filtered out)", lambda: StateObserver(Filters(lports=[1]))),
    ("tcprtt", lambda: RttObserver()),
    ("tcprtt -p 1 (all filtered out)", lambda: RttObserver(Filters(lports=[1]))),
    ("tcprtt -B -e", lambda: RttObserver(per="raddr", extended=True)),
    ("tcprtt --flows", lambda: RttObserver(hist=False, flows=True)),
    ("tcprtt -A 127.0.0.0/8 -b -e --flows", lambda: RttObserver(Filters(raddrs=["127.0.0.0/8"]), per="laddr",
                                                                 extended=True, flows=True)),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not 1 <= args.connections <= 20000 or not 0 <= args.rounds <= 1000:
        ap.error("keep it bounded: 1..20000 connections, 0..1000 rounds")

    workload(50, args.rounds)                         # warm up sockets and caches
    w0 = time.perf_counter()
    workload(args.connections, args.rounds)
    base = time.perf_counter() - w0
    results = [measure(name, make, args.connections, args.rounds) for name, make in CONFIGS]

    if args.json:
        print(json.dumps({"connections": args.connections, "rounds": args.rounds,
                          "baseline_wall_s": base, "results": results}, indent=1))
        return
    print(f"{args.connections} loopback connections x {args.rounds} rounds; "
          f"workload alone: {base:.3f} s ({base / args.connections * 1e6:.1f} us/connection)\n")
    print(f"{'program':40} {'events':>9} {'ns/event':>9} {'wall s':>8} {'+us/conn':>9} {'lost':>5}")
    for r in results:
        extra = (r["wall_s"] - base) / args.connections * 1e6
        nspe = f"{r['ns_per_event']:.0f}" if r["ns_per_event"] else "-"
        print(f"{r['program']:40} {r['runs']:>9} {nspe:>9} {r['wall_s']:>8.3f} {extra:>9.1f} {r['lost']:>5}")
    print("\nevents: program runs counted by the kernel (all TCP on the machine during the run);"
          "\nns/event: run_time_ns / run_cnt; +us/conn: wall-clock difference (noisy).")


if __name__ == "__main__":
    main()

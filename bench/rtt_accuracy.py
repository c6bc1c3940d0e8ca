#!/usr/bin/python3
"""The tracker's passive RTT against ping and the endpoints' kernels across the lab's delay line
(issue 11: within 10% of `ping -U` and of the kernels' srtt at 1, 10 and 50 ms each way).

    sudo /usr/bin/python3 bench/rtt_accuracy.py [DELAY_MS ...] [--json]

A wire lab with `ctrack run` on its wire; per delay: ping -U (median of 20), then three
workloads on new connections, each closed normally before the tracker's flow is read (the value
its DESTROY event carries):
  rr      40 rounds (15 at 50 ms) of a 100-byte request and answer, TCP_NODELAY, no pause;
  bulk    iperf3 -t 3 (ns1 sends);
  think   ctrack-report's `rr:20` (the client sleeps 20 ms between requests).
The kernels' srtt is tcprtt's last value per socket (RttObserver on tcp:tcp_probe): the opener's
(ns1) and the responder's (ns2). Needs root; builds its own lab and always takes it down; about
three minutes.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time

ROOT = __file__.rsplit("/bench/", 1)[0]
sys.path.insert(0, ROOT)  # run from a checkout without installing

from ctrack.lab.core import Lab  # noqa: E402
from ctrack.observers import Filters, RttObserver  # noqa: E402

PY = "/usr/bin/python3"
PEER = os.path.join(ROOT, "ctrack", "report", "peer.py")
CTRACK = [PY, os.path.join(ROOT, "tools", "ctrack")]
ENV = dict(os.environ, PYTHONPATH=ROOT)
PORT = 7600

SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); s.settimeout(30)
    c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1); c.settimeout(30)
    for _ in range(int(sys.argv[2])):
        got = 0
        while got < 100:
            d = c.recv(100 - got)
            if not d:
                sys.exit(1)
            got += len(d)
        c.sendall(b"r" * 100)
    c.recv(1); c.close()
""")
CLIENT = textwrap.dedent("""
    import socket, sys
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(int(sys.argv[3])):
        c.sendall(b"q" * 100)
        got = 0
        while got < 100:
            got += len(c.recv(100 - got))
    c.shutdown(socket.SHUT_WR); c.recv(1); c.close()
""")


def run_workload(lab, kind, port, delay_ms):
    if kind == "rr":
        rounds = 40 if delay_ms < 50 else 15
        srv = lab.spawn("ns2", [PY, "-c", SERVER, str(port), str(rounds)])
        time.sleep(0.5)
        lab.exec("ns1", [PY, "-c", CLIENT, lab.addr("ns2"), str(port), str(rounds)], timeout=60)
        srv.wait(10)
    elif kind == "bulk":
        srv = lab.spawn("ns2", ["iperf3", "-s", "-1", "-p", str(port)])
        time.sleep(0.5)
        lab.exec("ns1", ["iperf3", "-c", lab.addr("ns2"), "-p", str(port), "-t", "3"], timeout=60)
        srv.wait(10)
    else:
        srv = lab.spawn("ns2", [PY, PEER, "server", str(port)], stdout=subprocess.PIPE, text=True)
        srv.stdout.readline()
        lab.exec("ns1", [PY, PEER, "client", lab.addr("ns2"), str(port), "rr:20"], timeout=60)
        time.sleep(0.2)
        srv.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("delays", nargs="*", type=int, default=[1, 10, 50], metavar="DELAY_MS")
    ap.add_argument("--json", action="store_true", help="one JSON object a line")
    args = ap.parse_args()
    tag = os.getpid() % 10000
    lab, name = Lab(f"ra{tag}", delay_ms=1), f"ra-{tag}"
    lab.down()
    lab.up()
    tracker = None
    rows = []
    try:
        v1, v2 = lab.tracker_ifaces
        tracker = subprocess.Popen(CTRACK + ["run", "-1", v1, "-2", v2, "--name", name, "-l", "0",
                                             "--duration", "900"], env=ENV, text=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while "Tracking" not in (line := tracker.stderr.readline()):
            if not line:
                sys.exit(f"rtt_accuracy.py: ctrack run did not start: {tracker.stderr.read()[-300:]}")
        time.sleep(1)
        lab.flush_neighbours()
        for i, d in enumerate(args.delays):
            lab.set_delay(delay_ms=d)
            time.sleep(0.3)
            ping = statistics.median(lab.ping("ns1", "ns2", count=20, interval=0.05)["rtt_ms"])
            for j, kind in enumerate(("rr", "bulk", "think")):
                port = PORT + 10 * i + j
                opener = RttObserver(Filters(rports=[port]), flows=True)
                responder = RttObserver(Filters(lports=[port]), flows=True)
                with opener, responder:
                    run_workload(lab, kind, port, d)
                    time.sleep(0.3 + 4 * d / 1000)   # the last ACKs
                    ko = max(opener.flows(), key=lambda f: f.count)
                    kr = max(responder.flows(), key=lambda f: f.count)
                out = subprocess.run(CTRACK + ["list", "--json", "--name", name, "-p", "tcp", "--dport",
                                               str(port)], env=ENV, capture_output=True, text=True)
                flow = max(json.loads(out.stdout), key=lambda f: sum(f["bytes"]))
                srtt = flow["rtt"]["srtt_us"] / 1000
                row = {"delay_ms": d, "workload": kind, "ping_ms": ping,
                       "opener_kernel_ms": ko.last_us / 1000, "responder_kernel_ms": kr.last_us / 1000,
                       "tracker_ms": srtt, "tracker_min_ms": flow["rtt"]["min_us"] / 1000,
                       "samples": flow["rtt"]["samples"],
                       "vs_ping": round(srtt / ping, 3), "vs_opener": round(srtt / (ko.last_us / 1000), 3),
                       "vs_responder": round(srtt / (kr.last_us / 1000), 3)}
                rows.append(row)
                if args.json:
                    print(json.dumps(row), flush=True)
    finally:
        if tracker is not None and tracker.poll() is None:
            tracker.send_signal(signal.SIGINT)
            try:
                tracker.wait(20)
            except subprocess.TimeoutExpired:
                tracker.kill()
            from ctrack.live import pins
            pins.remove(name)   # nothing left if the tracker was killed
        lab.down()
    if not args.json:
        print("| each way | workload | ping -U | opener's kernel srtt | responder's kernel srtt | "
              "tracker srtt | tracker / ping | tracker / opener's | tracker / responder's |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in rows:
            print(f"| {r['delay_ms']} ms | {r['workload']} | {r['ping_ms']:.2f} | {r['opener_kernel_ms']:.2f} | "
                  f"{r['responder_kernel_ms']:.2f} | {r['tracker_ms']:.2f} | {r['vs_ping']:.2f} | "
                  f"{r['vs_opener']:.2f} | {r['vs_responder']:.2f} |")


if __name__ == "__main__":
    main()

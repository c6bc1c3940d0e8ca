"""Passive RTT at a live tracker across the lab's delay line, against ping's RTT (`ping -U`) and
the endpoints' own smoothed RTT (the kernels' srtt, as ctrack-tcprtt's RttObserver reads it).

A wire lab (tracker between veth1 and veth2, `ctrack run -1 -2`) whose delay lines hold every
packet D on arrival at each host: 2*D round trip. For D = 1, 10 and 50 ms, a client in ns1 and a
server in ns2 make ROUNDS rounds of a 100-byte request and a 1-byte answer (bounded: at most
ROUNDS * 2D + setup), then ping makes PINGS echo requests. The tracker's srtt for the connection
(`ctrack list --json`: the sum of its two halves) must be within 10% of ping's average and of
the client kernel's average srtt over the connection.
"""
import json
import os
import re
import subprocess
import textwrap
import time

import pytest

from ctrack.lab import Lab
from ctrack.observers import Filters, RttObserver
from live_helpers import TAG, LiveTracker

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and BPF: needs root")

LAB = f"rl{TAG}"[:10]
ROUNDS = 40
PINGS = 10
PY = "/usr/bin/python3"

SERVER = textwrap.dedent("""
    import socket, sys
    port, rounds = int(sys.argv[1]), int(sys.argv[2])
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(1)
    s.settimeout(30)
    c, _ = s.accept()
    c.settimeout(10)
    for _ in range(rounds):
        got = 0
        while got < 100:
            d = c.recv(100 - got)
            if not d:
                sys.exit(1)
            got += len(d)
        c.sendall(b"r")
    c.recv(1)
    c.close()
""")

CLIENT = textwrap.dedent("""
    import socket, sys
    addr, port, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    c = socket.create_connection((addr, port), timeout=10)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(rounds):
        c.sendall(b"q" * 100)
        if c.recv(1) != b"r":
            sys.exit(1)
    c.close()
""")


@pytest.fixture(scope="module")
def wire():
    lab = Lab(LAB, delay_ms=1)
    lab.down()
    lab.up()
    tracker = None
    try:
        tracker = LiveTracker(lab, f"rl-{TAG}", ("-l", "0"), duration=300)
        yield lab, tracker
    finally:
        if tracker is not None:
            tracker.stop()
            from ctrack import pins
            pins.remove(tracker.name)
            try:
                os.unlink(tracker.out.name)
            except OSError:
                pass
        lab.down()


def exchange(lab, port):
    srv = lab.spawn("ns2", [PY, "-c", SERVER, str(port), str(ROUNDS)])
    try:
        deadline = time.monotonic() + 5
        while not lab.exec("ns2", ["ss", "-Hltn", f"sport = :{port}"], check=False).stdout.strip():
            assert time.monotonic() < deadline, "the server did not listen"
            time.sleep(0.05)
        lab.exec("ns1", [PY, "-c", CLIENT, lab.addr("ns2"), str(port), str(ROUNDS)], timeout=60)
        assert srv.wait(10) == 0
    finally:
        srv.stop()


def ping_avg_ms(lab):
    out = lab.exec("ns1", ["ping", "-U", "-q", "-n", "-c", str(PINGS), "-i", "0.2",
                           lab.addr("ns2")], timeout=60).stdout
    m = re.search(r"= [\d.]+/([\d.]+)/", out)
    assert m, out
    return float(m.group(1))


@pytest.mark.parametrize("delay_ms", [1, 10, 50])
def test_tracker_srtt_matches_ping_and_the_kernels(wire, delay_ms):
    lab, tracker = wire
    lab.set_delay(delay_ms=delay_ms)
    port = 7300 + delay_ms + TAG % 100 * 2
    ping_ms = ping_avg_ms(lab)
    client = RttObserver(Filters(rports=[port]), flows=True)
    with client:
        exchange(lab, port)
        kflows = client.flows()
    flows = tracker.flows("-p", "tcp", "--dport", str(port))
    assert len(flows) == 1, flows
    rtt = flows[0]["rtt"]
    assert len(kflows) == 1
    kernel_ms = kflows[0].avg_us / 1000
    ours_ms = rtt["srtt_us"] / 1000
    note = (f"delay {delay_ms} ms each way: tracker srtt {ours_ms:.3f} ms (min "
            f"{rtt['min_us'] / 1000:.3f}, {rtt['samples']} samples, handshake "
            f"{rtt['handshake_us']} us), ping {ping_ms:.3f} ms, kernel srtt {kernel_ms:.3f} ms")
    print(note)
    # every round is a round trip each way (request echoed by the answer, answer by the next
    # request): about ROUNDS samples per half
    assert rtt["orig"]["samples"] >= ROUNDS // 2 and rtt["reply"]["samples"] >= ROUNDS // 2, rtt
    assert rtt["handshake_us"] is not None
    assert abs(ours_ms - ping_ms) <= 0.10 * ping_ms, note
    assert abs(ours_ms - kernel_ms) <= 0.10 * kernel_ms, note
    # both halves see the same delay line
    half = [rtt[s]["srtt_us"] / 1000 for s in ("orig", "reply")]
    assert all(delay_ms * 0.9 <= h <= delay_ms * 1.5 + 0.5 for h in half), (half, note)

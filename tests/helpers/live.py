"""Fixtures for tests against a real `ctrack run` in a real namespace lab: labs and trackers with
unique names, traffic between the lab's hosts (10.0.0.1 in ns1, 10.0.0.2 in ns2), the installed
tools run as subprocesses. Everything is torn down even when a test fails: trackers stopped
(SIGTERM, then SIGKILL), their pins removed, labs taken down, tmux sessions killed.

Traffic stays inside the lab's namespaces and is bounded in count and time.
"""
import json
import os
import signal
import socket
import subprocess
import textwrap
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from ctrack.live import pins  # noqa: E402
from ctrack.lab.core import Lab  # noqa: E402

PY = "/usr/bin/python3"
TAG = os.getpid() % 10000


def lab_name(prefix):
    """A lab name unique to this test session: letters/digits, at most 10 characters."""
    return f"{prefix}{TAG}"[:10]


@pytest.fixture(scope="module")
def make_lab():
    """Factory: make_lab(prefix) -> a Lab that is up; all are taken down at module end."""
    labs = []

    def make(prefix):
        lab = Lab(lab_name(prefix))
        lab.down()
        lab.up()
        labs.append(lab)
        return lab

    try:
        yield make
    finally:
        for lab in labs:
            lab.down()


class LiveTracker:
    """One `ctrack run` on a lab's wire, as a subprocess."""

    def __init__(self, lab, name, args=(), duration=120):
        self.lab, self.name = lab, name
        v1, v2 = lab.tracker_ifaces
        self.argv = ["ctrack", "run", "-1", v1, "-2", v2, "--name", name, "-l", "2", "--json",
                     "--duration", str(duration), *args]
        self.out = open(f"/tmp/ctrack-test-{name}.out", "w+")
        self.proc = subprocess.Popen(self.argv, stdout=self.out, stderr=subprocess.PIPE, text=True)
        # "Tracking ..." comes once everything is up. Lines before it are notices (the metrics'
        # address, leftovers of a killed tracker being removed); only the end of output is a failure.
        self.stderr_head = []
        while True:
            line = self.proc.stderr.readline()
            self.stderr_head.append(line)
            if "Tracking" in line:
                break
            if not line:
                self.proc.kill()
                rest = self.proc.communicate()[1]
                raise AssertionError(f"ctrack run did not start: {''.join(self.stderr_head)}{rest}")
        # the collector's first status file follows its first pass
        deadline = time.monotonic() + 10
        from ctrack.live.eventbus import sock_path
        from ctrack.live.collector import status_path
        while time.monotonic() < deadline and not (
                os.path.exists(sock_path(name))
                and ("--no-gc" in args or os.path.exists(status_path(name)))):
            time.sleep(0.05)
        if "--metrics" in args:
            assert "Metrics on" in self.stderr_head[0], self.stderr_head
        lab.flush_neighbours()

    def ctrack(self, *args, check=True, timeout=30):
        res = subprocess.run(["ctrack", *args, "--name", self.name], capture_output=True,
                             text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"ctrack {' '.join(args)} failed ({res.returncode}): {res.stderr}")
        return res

    def flows(self, *args):
        """`ctrack list --json` with extra filters: the flow objects."""
        return json.loads(self.ctrack("list", "--json", *args).stdout)

    def stop(self, sig=signal.SIGTERM):
        """Stop the tracker; returns (returncode, stdout text, stderr text)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        self.out.seek(0)
        out = self.out.read()
        self.out.close()
        return self.proc.returncode, out, err

    def events_printed(self):
        """The JSON events ctrack run printed so far."""
        self.out.flush()
        with open(self.out.name) as f:
            return [json.loads(x) for x in f if x.startswith("{") and '"type"' in x]


@pytest.fixture(scope="module")
def trackers():
    """Factory: trackers(lab, name, args) -> a LiveTracker; all stopped (and their pins
    removed) at module end. Name is suffixed with the session's tag."""
    started = []

    def start(lab, name, args=(), duration=120):
        t = LiveTracker(lab, f"{name}-{TAG}", args, duration)
        started.append(t)
        return t

    try:
        yield start
    finally:
        for t in started:
            if not t.out.closed:
                t.stop()
            pins.remove(t.name)
            try:
                os.unlink(t.out.name)
            except OSError:
                pass


# ---- traffic (scripts run by /usr/bin/python3 inside the lab's hosts) --------------------

UDP_ECHO = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(float(sys.argv[2]))
try:
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)
except socket.timeout:
    pass
"""

UDP_SEND = """
import socket, sys, time
dst, dport, count, gap, sport, nflows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
rto = float(sys.argv[7])
socks = []
for i in range(nflows):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", sport + i if sport else 0))
    s.settimeout(rto)
    socks.append(s)
got = 0
for n in range(count):
    for s in socks:
        s.sendto(b"x" * 20, (dst, dport))
    for s in socks:
        try:
            s.recvfrom(2048)
            got += 1
        except socket.timeout:
            pass
    time.sleep(gap)
print(got)
"""

TCP_SERVER = """
import socket, sys, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1]))); srv.listen(4); srv.settimeout(float(sys.argv[2]))
conn, _ = srv.accept(); conn.settimeout(float(sys.argv[2]))
while True:
    data = conn.recv(65536)
    if not data:
        break
    conn.sendall(data)
conn.close()
"""

TCP_CLIENT = """
import socket, sys, time
for attempt in range(50):   # the server may still be starting
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
        break
    except ConnectionRefusedError:
        time.sleep(0.1)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for i in range(int(sys.argv[3])):
    c.sendall(b"hello" * 20)
    got = 0
    while got < 100:
        got += len(c.recv(100 - got))
time.sleep(float(sys.argv[4]))
c.close()
time.sleep(0.2)
"""


def udp_echo(lab, port, lifetime=10.0):
    """A UDP echo server in ns2 (stops after `lifetime` seconds without a datagram)."""
    p = lab.spawn("ns2", [PY, "-c", UDP_ECHO, str(port), str(lifetime)])
    time.sleep(0.2)
    return p


def udp_send(lab, dport, count=1, gap=0.0, sport=0, nflows=1, wait=True, echo=True):
    """Send `count` rounds of one datagram per flow from ns1 to ns2:dport (flows from sport,
    sport+1, ...), `gap` seconds apart, reading echoes (echo=False: none expected, no wait).
    Returns echoes received (wait=True) or the HostProcess."""
    argv = [PY, "-c", UDP_SEND, lab.addr("ns2"), str(dport), str(count), str(gap), str(sport),
            str(nflows), "0.5" if echo else "0.001"]
    if not wait:
        return lab.spawn("ns1", argv, stdout=subprocess.PIPE)
    res = lab.exec("ns1", argv, timeout=count * (gap + 1) + 10)
    return int(res.stdout.strip() or 0)


class TcpConnection:
    """A TCP connection ns1 -> ns2:port: `rounds` echo exchanges, then held open for `hold`
    seconds, then closed by the client."""

    def __init__(self, lab, port, rounds=3, hold=5.0):
        self.server = lab.spawn("ns2", [PY, "-c", TCP_SERVER, str(port), str(hold + 10)])
        time.sleep(0.1)
        self.client = lab.spawn("ns1", [PY, "-c", TCP_CLIENT, lab.addr("ns2"), str(port),
                                        str(rounds), str(hold)])

    def wait(self, timeout=30):
        self.client.wait(timeout)
        self.server.wait(timeout)

    def stop(self):
        self.client.stop()
        self.server.stop()


def wait_for(predicate, timeout=10.0, step=0.1):
    """Poll predicate() until it returns something true; returns it (or the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A request/response server for RTT tests: ROUNDS rounds of a 100-byte request answered by one
# byte, then waits for the client's close. argv: port rounds.
RR_SERVER = textwrap.dedent("""
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
    c.recv(1)    # the client's close
    c.close()
""")

"""Helpers for the observers' tests: real TCP traffic on loopback and between two network
namespaces the tests create (and always remove), plus running the installed tools.

Traffic goes only to loopback or between the test's own namespaces (10.77.0.0/24), and every
exchange is bounded in count and time."""
import contextlib
import os
import socket
import subprocess
import time

NS_NET = "10.77.0"
PY = "/usr/bin/python3"

# ---- loopback -----------------------------------------------------------------------------


def free_port(host="127.0.0.1"):
    """A port nothing listens on now (for tests that must name it before traffic starts)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def tcp_exchange(host="127.0.0.1", rounds=1, payload=100, server_closes_first=False, port=0):
    """One connection on loopback: connect, `rounds` request/response pairs, close (client first
    unless server_closes_first). Returns (client local port, server port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((host, port))
        srv.listen(8)
        port = srv.getsockname()[1]
        cli = socket.socket(family, socket.SOCK_STREAM)
        cli.settimeout(5)
        cli.connect((host, port))
        conn, _ = srv.accept()
        conn.settimeout(5)
        for _ in range(rounds):
            cli.sendall(b"q" * payload)
            got = 0
            while got < payload:
                got += len(conn.recv(payload - got))
            conn.sendall(b"r")
            cli.recv(1)
        cport = cli.getsockname()[1]
        first, second = (conn, cli) if server_closes_first else (cli, conn)
        first.close()
        time.sleep(0.02)   # let the FIN exchange run before the other side closes
        second.close()
        time.sleep(0.02)
    return cport, port


# ---- network namespaces -------------------------------------------------------------------

class NetnsPair:
    """Two namespaces joined by a veth pair: A has 10.77.0.1, B has 10.77.0.2 (lo up in both)."""

    def __init__(self, tag=None):
        tag = tag or str(os.getpid() % 100000)
        self.a, self.b = f"ctobs-a-{tag}", f"ctobs-b-{tag}"
        self.va, self.vb = f"ctobs-va{tag}", f"ctobs-vb{tag}"   # interface names: 15 chars at most
        self.addr_a, self.addr_b = f"{NS_NET}.1", f"{NS_NET}.2"

    def __enter__(self):
        from pyroute2 import IPRoute, NetNS, netns
        try:
            for ns in (self.a, self.b):
                netns.create(ns)
            with IPRoute() as ipr:
                ipr.link("add", ifname=self.va, kind="veth", peer=self.vb)
                for ifname, ns in ((self.va, self.a), (self.vb, self.b)):
                    idx = ipr.link_lookup(ifname=ifname)[0]
                    ipr.link("set", index=idx, net_ns_fd=ns)
            for ns, ifname, addr in ((self.a, self.va, self.addr_a), (self.b, self.vb, self.addr_b)):
                with NetNS(ns) as nsr:
                    for name in ("lo", ifname):
                        idx = nsr.link_lookup(ifname=name)[0]
                        nsr.link("set", index=idx, state="up")
                    idx = nsr.link_lookup(ifname=ifname)[0]
                    nsr.addr("add", index=idx, address=addr, prefixlen=24)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        # Removing a namespace removes its end of the veth, and so the pair.
        from pyroute2 import netns
        for ns in (self.a, self.b):
            with contextlib.suppress(Exception):
                netns.remove(ns)
        with contextlib.suppress(Exception):
            from pyroute2 import IPRoute
            with IPRoute() as ipr:
                for idx in ipr.link_lookup(ifname=self.va) + ipr.link_lookup(ifname=self.vb):
                    ipr.link("del", index=idx)
        return False

    def run(self, ns, code, timeout=20):
        """Run Python code inside namespace ns; returns its stdout (raises on failure)."""
        out = subprocess.run(["ip", "netns", "exec", ns, PY, "-c", code], capture_output=True,
                             text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"in {ns}: {out.stderr.strip()}")
        return out.stdout

    def start(self, ns, code):
        return subprocess.Popen(["ip", "netns", "exec", ns, PY, "-c", code], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)


# A server for namespaces: accepts `n` connections on `port`, answers each request with one
# byte until its client closes, then closes too. Prints "ready" once listening.
SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(({addr!r}, {port})); s.listen(8); s.settimeout(15)
print("ready", flush=True)
for _ in range({n}):
    c, _ = s.accept(); c.settimeout(10)
    while True:
        d = c.recv(4096)
        if not d:
            break
        c.sendall(b"r")
    c.close()
s.close()
"""

# A client for namespaces: `n` connections to addr:port, `rounds` request/response pairs each,
# `gap` seconds apart. Prints the local port of each connection.
CLIENT = """
import socket, time
for _ in range({n}):
    c = socket.create_connection(({addr!r}, {port}), timeout=10)
    print(c.getsockname()[1], flush=True)
    for _ in range({rounds}):
        c.sendall(b"q" * 100); c.recv(1); time.sleep({gap})
    c.close(); time.sleep(0.05)
"""


def ns_exchange(pair, server_ns, client_ns, server_addr, port, n=1, rounds=5, gap=0.0):
    """n connections from client_ns to server_addr:port in server_ns. Returns client ports."""
    srv = pair.start(server_ns, SERVER.format(addr=server_addr, port=port, n=n))
    try:
        line = srv.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"server did not start: {srv.stderr.read()}")
        out = pair.run(client_ns, CLIENT.format(addr=server_addr, port=port, n=n, rounds=rounds, gap=gap))
        srv.wait(timeout=15)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
    return [int(x) for x in out.split()]


# ---- running the installed tools ----------------------------------------------------------

class Tool:
    """An installed tool as a subprocess: started, waited on until it says it is tracing,
    stopped with SIGINT (Ctrl-C) or left to end by -d."""

    def __init__(self, *argv):
        self.proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr_lines = []
        # Wait for the "Tracing ..." line, which comes once the program is attached.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.stderr_lines.append(line)
            if line.startswith("Tracing"):
                return
        self.proc.kill()
        out, err = self.proc.communicate()
        raise RuntimeError(f"{argv[0]} did not start: {''.join(self.stderr_lines)}{err}")

    def stop(self, sig=2, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.finish(timeout)

    def finish(self, timeout=30):
        out, err = self.proc.communicate(timeout=timeout)
        self.stdout = out
        self.stderr = "".join(self.stderr_lines) + err
        return self.proc.returncode


def run_tool(*argv, timeout=60):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)

"""ctrack-tcpstates and StateObserver against real connections in the real kernel: loopback and
two network namespaces made here. Other traffic may run on this machine at the same time, so
each test picks out its own sockets by port or address."""
import json
import os
import signal
import subprocess
import threading

import pytest

from ctrack.observers import Filters, StateObserver, TCP_STATES
from helpers.observers import NetnsPair, Tool, free_port, ns_exchange, run_tool, tcp_exchange

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loads BPF programs: needs root")

CLIENT = ["CLOSE>SYN_SENT", "SYN_SENT>ESTABLISHED", "ESTABLISHED>FIN_WAIT1", "FIN_WAIT1>FIN_WAIT2",
          "FIN_WAIT2>CLOSE"]
SERVER = ["LISTEN>SYN_RECV", "SYN_RECV>ESTABLISHED", "ESTABLISHED>CLOSE_WAIT", "CLOSE_WAIT>LAST_ACK",
          "LAST_ACK>CLOSE"]
LISTENER = ["CLOSE>LISTEN", "LISTEN>CLOSE"]


def by_socket(events, port):
    """Transitions per socket (skaddr) of the sockets using port, in order."""
    socks = {}
    for ev in events:
        if port in (ev.lport, ev.rport):
            socks.setdefault(ev.skaddr, []).append(ev)
    return socks


def roles(socks, port):
    """Split sockets into client / server / listener by their first transition."""
    out = {}
    for evs in socks.values():
        first = f"{evs[0].oldstate}>{evs[0].newstate}"
        role = {"CLOSE>SYN_SENT": "client", "LISTEN>SYN_RECV": "server", "CLOSE>LISTEN": "listener"}.get(first)
        assert role, f"unexpected first transition {first}"
        out[role] = evs
    return out


@pytest.mark.parametrize("host,family", [("127.0.0.1", 4), ("::1", 6)])
def test_transitions_in_order_for_client_server_and_listener(host, family):
    with StateObserver() as obs:
        cport, port = tcp_exchange(host, rounds=3)
        events = list(obs.events(duration=0.3))
        assert obs.lost() == 0
    socks = roles(by_socket(events, port), port)
    seq = {r: [f"{e.oldstate}>{e.newstate}" for e in evs] for r, evs in socks.items()}
    assert seq["client"] == CLIENT
    assert seq["server"] == SERVER
    assert seq["listener"] == LISTENER
    for evs in socks.values():
        # Time in the old state: unknown at a socket's first sight, then measured and ordered.
        assert evs[0].ms is None
        assert all(e.ms is not None and 0 <= e.ms < 5000 for e in evs[1:])
        assert [e.mono_ns for e in evs] == sorted(e.mono_ns for e in evs)
        assert all(e.family == family and e.laddr == host for e in evs)
        # The owner is this process even for transitions run in softirq (handshake, FIN).
        assert all(e.pid == os.getpid() for e in evs), [(e.newstate, e.pid, e.comm) for e in evs]
    client = socks["client"]
    assert client[0].lport == 0 and client[0].rport == port      # port not chosen yet at connect()
    assert all(e.lport == cport and e.rport == port for e in client[1:])
    assert all(e.lport == port and e.rport == cport for e in socks["server"])


def test_state_names_come_from_the_header():
    assert TCP_STATES[1] == "ESTABLISHED" and TCP_STATES[12] == "NEW_SYN_RECV"
    assert sorted(TCP_STATES) == list(range(1, 13))


def test_between_namespaces_with_address_filters():
    """Client in B connects to the server in A over a veth pair; -A/-a select each side."""
    with NetnsPair() as pair:
        port = 7001
        remote_a = StateObserver(Filters(raddrs=[pair.addr_a])).start()     # B's client socket
        local_a = StateObserver(Filters(laddrs=["10.77.0.0/31"])).start()     # A's sockets (.1)
        try:
            cports = ns_exchange(pair, pair.a, pair.b, pair.addr_a, port, n=1, rounds=3)
            rem = list(remote_a.events(duration=0.3))
            loc = list(local_a.events(duration=0.1))
        finally:
            remote_a.close()
            local_a.close()
    assert rem and all(e.raddr == pair.addr_a for e in rem)
    client = [f"{e.oldstate}>{e.newstate}" for e in rem if e.rport == port]
    assert client == CLIENT
    assert all(e.comm == "python3" and e.pid for e in rem)
    assert loc and all(e.laddr == pair.addr_a for e in loc)
    server = [f"{e.oldstate}>{e.newstate}" for e in loc if e.lport == port and e.rport == cports[0]]
    assert server == SERVER


def test_tool_port_and_family_filters(tmp_path):
    """The installed command: -D keeps one remote port, -4 drops the IPv6 connection."""
    port = free_port()
    tool = Tool("ctrack-tcpstates", "--json", "-4", "-D", str(port))
    try:
        tcp_exchange("127.0.0.1", port=port)
        tcp_exchange("::1", port=free_port("::1"))     # IPv6: filtered out
        tcp_exchange("127.0.0.1")                       # another port: filtered out
    finally:
        rc = tool.stop()
    assert rc == 0, tool.stderr
    lines = [json.loads(x) for x in tool.stdout.splitlines()]
    assert lines, tool.stderr
    assert all(d["rport"] == port and d["family"] == 4 for d in lines)
    assert [f"{d['oldstate']}>{d['newstate']}" for d in lines] == CLIENT
    assert "state changes, 0 lost" in tool.stderr


def test_tool_local_port_filter_text_output():
    port = free_port()
    tool = Tool("ctrack-tcpstates", "-T", "-L", str(port))
    try:
        cport, _ = tcp_exchange("127.0.0.1", port=port)
    finally:
        rc = tool.stop()
    assert rc == 0
    out = tool.stdout.splitlines()
    assert out[0].split()[:3] == ["TIME", "SKADDR", "PID"]
    body = [line.split() for line in out[1:]]
    # Listener and server sockets only (local port = port); states as Linux names them.
    transitions = [f"{cols[8]}>{cols[10]}" for cols in body]
    assert transitions.count("CLOSE>LISTEN") == 1 and "LISTEN>SYN_RECV" in transitions
    assert "CLOSE>SYN_SENT" not in transitions
    assert all(cols[5] == str(port) for cols in body)


JSON_FIELDS = {"ts", "skaddr", "pid", "comm", "family", "laddr", "lport", "raddr", "rport",
               "oldstate", "newstate", "ms"}


def test_tool_json_fields_and_duration():
    port = free_port()
    proc = subprocess.Popen(["ctrack-tcpstates", "--json", "-d", "4", "-L", str(port), "-D", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # -L and -D together mean both: no socket here has port as local and remote port.
        line = proc.stderr.readline()
        assert line.startswith("Tracing"), line
        tcp_exchange("127.0.0.1", port=port)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert out == ""          # no socket has both ports = port
    # And now a run that sees events: every record has every field.
    port = free_port()
    tool = Tool("ctrack-tcpstates", "--json", "-L", str(port))
    try:
        tcp_exchange("127.0.0.1", port=port)
    finally:
        tool.stop()
    recs = [json.loads(x) for x in tool.stdout.splitlines()]
    assert recs and all(JSON_FIELDS <= set(r) for r in recs)
    r = recs[-1]
    assert r["skaddr"].startswith("0x") and isinstance(r["ts"], float) and r["newstate"] == "CLOSE"


def test_lost_events_are_counted():
    """A one-page ring buffer left unread overflows; the loss must show in lost()."""
    n = 60
    with StateObserver(ringbuf_pages=1) as obs:
        port = free_port()
        for _ in range(n):
            tcp_exchange("127.0.0.1", port=port)
        lost = obs.lost()
        got = [e for e in obs.drain() if port in (e.lport, e.rport)]
    # Each connection makes 12 transitions of its own; far more than one page holds.
    assert lost > 0
    assert len(got) < 12 * n


def test_ebpf_and_help():
    out = run_tool("ctrack-tcpstates", "--ebpf", "-6", "-L", "80,443", "-A", "fd00::/8")
    assert out.returncode == 0
    assert "#define OBS_FAMILY 10" in out.stdout
    assert "#define OBS_LPORT_OK(p) ((p) == 80 || (p) == 443)" in out.stdout
    assert "OBS_RADDR_OK" in out.stdout and "TRACEPOINT_PROBE(sock, inet_sock_set_state)" in out.stdout
    plain = run_tool("ctrack-tcpstates", "--ebpf").stdout
    assert "#define OBS_" not in plain.split("*/", 1)[1].split("/* tcpstates.c")[0]
    h = run_tool("ctrack-tcpstates", "-h").stdout
    assert "examples:" in h and "network namespaces:" in h and "bpf_get_netns_cookie" in h


def test_one_line_errors():
    bad = run_tool("ctrack-tcpstates", "-L", "http")
    assert bad.returncode == 1 and bad.stderr.strip() == "ctrack-tcpstates: bad local port 'http': want a number 0-65535 (lists: 80,443)"
    noroot = run_tool("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                      "ctrack-tcpstates", "-d", "1")
    assert noroot.returncode == 1
    assert noroot.stderr.count("\n") == 1 and "must run as root" in noroot.stderr


def test_sigterm_exits_cleanly_with_summary():
    tool = Tool("ctrack-tcpstates")
    rc = tool.stop(sig=signal.SIGTERM)
    assert rc == 0 and "state changes," in tool.stderr and "Traceback" not in tool.stderr

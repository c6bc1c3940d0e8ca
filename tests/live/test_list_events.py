"""ctrack list / events / flush / delete against a real `ctrack run` in a real lab, and a killed
tracker's stale pins."""
import json
import os
import signal
import subprocess
import time

import pytest

from helpers.live import (TcpConnection, make_lab, trackers, udp_echo, udp_send,  # noqa: F401
                          wait_for)

from ctrack.live import pins


@pytest.fixture(scope="module")
def live(make_lab, trackers):  # noqa: F811
    lab = make_lab("tl")
    t = trackers(lab, "tl", ["--timeout", "UDP_NEW=60"])
    return lab, t


def _flow(flows, dport, proto="tcp"):
    return [f for f in flows if f["proto"] == proto and f["orig"]["dport"] == dport]


def test_tcp_flow_listed_with_states_and_counters(live):
    lab, t = live
    conn = TcpConnection(lab, 7101, rounds=3, hold=12.0)
    try:
        flows = wait_for(lambda: [f for f in _flow(t.flows(), 7101)
                                  if f["state"] == "ESTABLISHED" and f["packets"][1] >= 4], 5)
        assert flows, t.flows()
        [f] = flows
        assert f["family"] == 4
        assert f["orig"]["src"] == "10.0.0.1" and f["orig"]["dst"] == "10.0.0.2"
        assert (f["orig_state"], f["reply_state"]) == ("ESTABLISHED", "ESTABLISHED")
        # three 100-byte requests and answers, plus the handshake: the IP-layer bytes say so
        assert f["bytes"][0] >= 3 * 100 + 3 * 52 and f["bytes"][1] >= 3 * 100 + 2 * 52
        assert set(f) == {"proto", "family", "orig", "state", "orig_state", "reply_state",
                          "packets", "bytes", "rtt", "tcp_options", "conn_state",
                          "history"}   # `ctrack replay --json`'s
        # passive RTT of a live connection (three rounds and the handshake) and its SYNs' options
        assert f["rtt"]["handshake_us"] is not None and f["rtt"]["samples"] >= 4, f["rtt"]
        assert f["rtt"]["srtt_us"] > 0
        assert "mss" in f["tcp_options"]["orig"]["options"]
        assert "mss" in f["tcp_options"]["reply"]["options"]
        # Zeek's view of a live connection: handshake, data both ways, not closed
        assert (f["conn_state"], f["history"][:4]) == ("S1", "ShAD"), f
        sport = f["orig"]["sport"]

        # filters, conntrack's way
        assert len(t.flows("-p", "tcp", "--dport", "7101")) == 1
        assert len(t.flows("-s", "10.0.0.1", "-d", "10.0.0.0/24", "--sport", str(sport))) == 1
        assert _flow(t.flows("--state", "est"), 7101)
        assert t.flows("--dport", "7101", "-p", "udp") == []
        assert t.flows("-s", "10.0.0.2", "--dport", "7101") == []   # not the original direction
        assert len(t.flows("--addr", "10.0.0.2", "--port", "7101")) == 1
        assert t.ctrack("list", "--count", "--dport", "7101").stdout.strip() == "1"

        ct = t.ctrack("list", "-o", "conntrack", "--dport", "7101").stdout.strip().splitlines()
        assert len(ct) == 1
        line = ct[0]
        assert line.startswith("tcp      6 ")
        assert (f"ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport={sport} dport=7101 packets=" in line)
        assert f"src=10.0.0.2 dst=10.0.0.1 sport=7101 dport={sport} packets=" in line
        assert line.endswith("[ASSURED]") and "[UNREPLIED]" not in line
        timeout_left = int(line.split()[2])
        assert 431000 < timeout_left <= 432000   # ESTABLISHED: 5 days, as netfilter

        table = t.ctrack("list", "--dport", "7101").stdout.splitlines()
        assert table[0].split()[:4] == ["PROTO", "STATE", "ORIGINAL", "ENDPOINTS"]
        assert "ESTABLISHED/ESTABLISHED" in table[1] and f"10.0.0.1:{sport} -> 10.0.0.2:7101" in table[1]
        assert table[0].split()[-1] == "ZEEK" and " S1 ShAD" in table[1]
    finally:
        conn.client.stop()   # its process ends: the kernel closes the socket with a FIN
        conn.server.wait(15)
        conn.server.stop()
    # after the client's close the flow ends orderly
    closed = wait_for(lambda: [f for f in _flow(t.flows(), 7101) if f["state"] == "TIME_WAIT"], 5)
    assert closed


def test_udp_unreplied_in_conntrack_form(live):
    lab, t = live
    udp_send(lab, 7202, sport=40202, echo=False)   # nobody answers
    lines = wait_for(lambda: t.ctrack("list", "-o", "conntrack", "-p", "udp", "--dport", "7202")
                     .stdout.strip().splitlines(), 3)
    assert len(lines) == 1
    assert lines[0].startswith("udp      17 ")
    assert "src=10.0.0.1 dst=10.0.0.2 sport=40202 dport=7202 packets=1 bytes=48 [UNREPLIED] " \
           "src=10.0.0.2 dst=10.0.0.1 sport=7202 dport=40202 packets=0 bytes=0" in lines[0]
    assert "[ASSURED]" not in lines[0]
    [f] = t.flows("-p", "udp", "--dport", "7202")
    assert f["state"] == "NEW" and f["packets"] == [1, 0]


def test_events_stream_like_conntrack_E(live):
    lab, t = live
    # --history: what came before a slow start is not missed (the filter keeps this test's)
    allev = subprocess.Popen(["ctrack", "events", "--name", t.name, "--json", "--dport", "7303",
                              "--history", "512", "--duration", "15"], stdout=subprocess.PIPE,
                             text=True)
    destroy = subprocess.Popen(["ctrack", "events", "--name", t.name, "-e", "destroy", "-t",
                                "--dport", "7303", "-c", "1", "--duration", "15"],
                               stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)   # both subscribed
        conn = TcpConnection(lab, 7303, rounds=1, hold=0.2)
        conn.wait()
        # conntrack's vocabulary: the connection's end (FIN, TIME_WAIT) is an UPDATE and the
        # entry stays; DESTROY comes when the entry leaves the table (here: deleted)
        assert wait_for(lambda: [e for e in t.events_printed() if e["type"] == "closed"
                                 and e["orig"]["dport"] == 7303], 5)
        assert [f["state"] for f in t.flows("--dport", "7303")] == ["TIME_WAIT"]
        time.sleep(0.3)
        assert destroy.poll() is None   # nothing for `-e destroy` yet
        t.ctrack("delete", "-p", "tcp", "--dport", "7303", "-q")
        out, _ = destroy.communicate(timeout=15)
        assert destroy.returncode == 0
        lines = out.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("[") and "[DESTROY] tcp TIME_WAIT" in lines[0]
        assert "dport=7303" in lines[0] and "reason=flushed" in lines[0]
        assert "conn_state=SF history=ShAD" in lines[0]
        stamp = float(lines[0][1:lines[0].index("]")])
        assert abs(stamp - time.time()) < 30
        time.sleep(0.5)
    finally:
        allev.send_signal(signal.SIGINT)
        out, _ = allev.communicate(timeout=15)
        destroy.kill()
    evs = [json.loads(x) for x in out.splitlines()]
    types = [e["type"] for e in evs]
    assert types[0] == "new" and evs[0]["state"] == "SYN_SENT"
    assert "state" in types and types[-2:] == ["closed", "destroy"]
    assert (evs[-2]["event"], evs[-2]["reason"]) == ("UPDATE", "fin")
    assert (evs[-1]["event"], evs[-1]["reason"]) == ("DESTROY", "flushed")
    # the end events carry Zeek's view of the whole connection: both FINs, an orderly end
    for e in evs[-2:]:
        h = e["history"]
        assert e["conn_state"] == "SF" and h.startswith("ShAD") and "F" in h and "f" in h, e
    assert evs[0]["history"] == "S"   # NEW: the SYN alone
    assert all(e["orig"]["dport"] == 7303 for e in evs)
    # the tracker printed the same events: nobody took them from it
    printed = [e for e in t.events_printed() if e["orig"]["dport"] == 7303]
    assert [e["type"] for e in printed] == types


def test_delete_and_flush(live):
    lab, t = live
    echo = udp_echo(lab, 7404, lifetime=5)
    try:
        assert udp_send(lab, 7404, sport=40404, nflows=3) == 3
    finally:
        echo.stop()
    assert len(t.flows("-p", "udp", "--dport", "7404")) == 3

    res = t.ctrack("delete", check=False)
    assert res.returncode == 1 and "needs a filter" in res.stderr and len(res.stderr.splitlines()) == 1

    res = t.ctrack("delete", "-p", "udp", "--sport", "40405", "--json")
    [ev] = json.loads(res.stdout)
    assert (ev["type"], ev["event"], ev["reason"]) == ("destroy", "DESTROY", "flushed")
    assert ev["orig"]["sport"] == 40405 and ev["packets"] == [1, 1]
    left = sorted(f["orig"]["sport"] for f in t.flows("-p", "udp", "--dport", "7404"))
    assert left == [40404, 40406]

    res = t.ctrack("delete", "--dport", "7404")
    assert res.stdout.count("[DESTROY] udp") == 2 and "reason=flushed" in res.stdout
    assert "2 flow entries have been deleted" in res.stderr
    assert t.flows("--dport", "7404") == []
    # reported through the event stream, like any end of a flow
    ends = wait_for(lambda: [e for e in t.events_printed()
                             if e["type"] == "destroy" and e["orig"]["dport"] == 7404], 3)
    assert sorted(e["orig"]["sport"] for e in ends) == [40404, 40405, 40406]
    assert {e["reason"] for e in ends} == {"flushed"}

    udp_send(lab, 7405, echo=False)
    assert t.flows("--dport", "7405")
    res = t.ctrack("flush", "-q")
    assert int(res.stdout) >= 1
    assert t.flows() == []


def test_no_tracker_is_one_line(live):
    res = subprocess.run(["ctrack", "list", "--name", "nosuch-tracker"], capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr.strip() == "ctrack: no running tracker named 'nosuch-tracker' found (start one with `ctrack run`)"


def test_killed_tracker_stale_pins(make_lab, trackers):  # noqa: F811
    lab = make_lab("tk")
    t = trackers(lab, "tk")
    t.proc.send_signal(signal.SIGKILL)
    t.proc.wait(10)
    assert os.path.isdir(os.path.join(pins.PIN_ROOT, t.name))   # left behind
    res = subprocess.run(["ctrack", "list", "--name", t.name], capture_output=True, text=True)
    assert res.returncode == 1 and "no running tracker" in res.stderr
    assert not os.path.exists(os.path.join(pins.PIN_ROOT, t.name))   # cleaned
    for suffix in ("events", "top"):
        assert subprocess.run(["ctrack" if suffix == "events" else "ctrack-top",
                               *(["events"] if suffix == "events" else ["--once"]),
                               "--name", t.name], capture_output=True, text=True).returncode == 1
    # the killed tracker's TC programs are still on the wire (nobody detached them): clear the
    # hooks, then a new tracker of the same name starts and works
    for v in lab.tracker_ifaces:
        subprocess.run(["tc", "qdisc", "del", "dev", v, "clsact"], capture_output=True)
    t2 = trackers(lab, "tk")
    assert t2.name == t.name
    udp_send(lab, 7506, echo=False)
    assert len(t2.flows("--dport", "7506")) == 1
    rc, _, err = t2.stop()
    assert rc == 0, err


def _wait_zombie(pid, timeout=10):
    """Wait until `pid` (our child, killed, never waited for) is a zombie: its /proc state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rpartition(")")[2].split()[0] == "Z":
                return True
        time.sleep(0.02)
    return False


def test_zombie_is_not_alive():
    p = subprocess.Popen(["sleep", "30"])
    try:
        assert pins.pid_alive(p.pid)
        p.send_signal(signal.SIGKILL)
        assert _wait_zombie(p.pid)
        os.kill(p.pid, 0)              # what the old check asked: a zombie still "exists"
        assert not pins.pid_alive(p.pid)
    finally:
        p.kill()
        p.wait()
    assert not pins.pid_alive(p.pid)


def test_killed_tracker_not_yet_reaped_is_dead(make_lab, trackers):  # noqa: F811
    """A SIGKILLed tracker its parent has not reaped yet (a zombie) is dead: ctrack list does
    not read its table, and its filters, still attached, are removed."""
    lab = make_lab("tz")
    t = trackers(lab, "tz")
    v1, v2 = lab.tracker_ifaces
    assert t.name in subprocess.run(["tc", "filter", "show", "dev", v1, "ingress"],
                                    capture_output=True, text=True).stdout
    t.proc.send_signal(signal.SIGKILL)
    assert _wait_zombie(t.proc.pid)     # not waited for: a zombie until the fixture reaps it
    res = subprocess.run(["ctrack", "list", "--name", t.name], capture_output=True, text=True)
    assert res.returncode == 1 and "no running tracker" in res.stderr, res.stderr
    assert "had died without detaching" in res.stderr
    assert not os.path.exists(os.path.join(pins.PIN_ROOT, t.name))
    for v in (v1, v2):
        for hook in ("ingress", "egress"):
            assert subprocess.run(["tc", "filter", "show", "dev", v, hook], capture_output=True,
                                  text=True).stdout.strip() == ""
    assert _wait_zombie(t.proc.pid, timeout=0.1)   # all of it happened while it was a zombie


def test_counts_agree_with_their_number(live):
    """One flow: "1 flow shown", "1 flow entry has been shown" (not "1 flows")."""
    lab, t = live
    udp_send(lab, 7606, echo=False)
    res = t.ctrack("list", "--dport", "7606")
    assert "ctrack: 1 flow shown; table " in res.stderr, res.stderr
    res = t.ctrack("list", "-o", "conntrack", "--dport", "7606")
    assert "ctrack: 1 flow entry has been shown." in res.stderr, res.stderr


def test_one_connections_events_have_distinct_increasing_times(live):
    """ts_ns comes from the precise clock at emission: the handshake's and the close's events,
    microseconds apart, no longer share a jiffy; `ctrack events -t` shows them apart too."""
    lab, t = live
    ev = subprocess.Popen(["ctrack", "events", "--name", t.name, "-t", "--dport", "7707",
                           "--duration", "15", "-c", "6"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        conn = TcpConnection(lab, 7707, rounds=1, hold=0.2)
        conn.wait()
        out, _ = ev.communicate(timeout=20)
    finally:
        ev.kill()
    printed = wait_for(lambda: [e for e in t.events_printed() if e["orig"]["dport"] == 7707
                                and e["type"] == "closed"] and
                       [e for e in t.events_printed() if e["orig"]["dport"] == 7707], 5)
    ts = [e["ts_ns"] for e in printed]
    assert len(ts) >= 6, printed
    assert all(a < b for a, b in zip(ts, ts[1:])), ts
    stamps = [float(x[1:x.index("]")]) for x in out.splitlines()]
    assert len(stamps) == 6 and all(a < b for a, b in zip(stamps, stamps[1:])), out
    assert abs(stamps[-1] - time.time()) < 30

"""ctrack-top against a real `ctrack run` in a real lab: one frame (--once), plain frames without
a terminal, and the full-screen view driven in tmux (keys for sort, filter, scroll, quit; the
terminal restored after q and after Ctrl-C)."""
import shlex
import subprocess

import pytest

from helpers.live import TAG, TcpConnection, make_lab, trackers, udp_send, wait_for  # noqa: F401

SESSION = f"ctrack-top-test-{TAG}"


@pytest.fixture(scope="module")
def live(make_lab, trackers):  # noqa: F811
    lab = make_lab("tt")
    t = trackers(lab, "tt", ["--timeout", "UDP_NEW=300"])
    return lab, t


@pytest.fixture
def conn(live):
    lab, t = live
    t.ctrack("flush", "-q")   # earlier tests' flows (TIME_WAIT for 2 minutes) out of the way
    c = TcpConnection(lab, 7951, rounds=3, hold=30)
    assert wait_for(lambda: [f for f in t.flows("--dport", "7951") if f["state"] == "ESTABLISHED"], 8)
    udp_send(lab, 7952, sport=40952, echo=False)
    try:
        yield c
    finally:
        c.stop()


def top(*args, timeout=20):
    return subprocess.run(["ctrack-top", *args], capture_output=True, text=True, timeout=timeout)


def test_once_shows_flows_and_header(live, conn):
    lab, t = live
    res = top("--once", "--name", t.name, "-n", "0", "--width", "220")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    lines = out.splitlines()
    v1, v2 = lab.tracker_ifaces
    # observe picks up by default
    assert f"tracker {t.name!r} on {v1} <-> {v2} (tc, observe, pickup)" in lines[0]
    assert "tcp ESTABLISHED 1" in lines[1] and "udp NEW 1" in lines[1]
    assert "table 2/65,536" in lines[1]
    assert lines[2].startswith("packets/s new ") and "tracked" in lines[2]
    assert lines[3].startswith("bits/s    new ") and "untracked" in lines[3]
    assert lines[4] == "invalid none"
    assert lines[5].startswith("collector ctrack run every 1s")
    assert lines[6].startswith("rtt       samples ") and "syn options mss 1/1" in lines[6]
    assert "sort rate" in lines[7] and "showing 1-2 of 2" in lines[7]
    flows = [x for x in lines if x.startswith(("tcp ", "udp "))]
    assert len(flows) == 2
    tcp = [x for x in flows if "10.0.0.2:7951" in x][0].split()
    assert tcp[:2] == ["tcp", "ESTABLISHED"] and tcp[2].startswith("10.0.0.1:")
    assert tcp[4:6] == ["ESTABLISHED", "ESTABLISHED"]
    assert tcp[9].count("/") == 1 and int(tcp[9].split("/")[0]) >= 5   # packets each way
    udp = [x for x in flows if "10.0.0.2:7952" in x][0].split()
    assert udp[:3] == ["udp", "NEW", "10.0.0.1:40952"] and udp[4:6] == ["-", "-"]
    assert udp[9] == "1/0"
    # the recent-events pane: the flows' NEW events
    assert "recent events" in out and "NEW" in out and "10.0.0.2:7951" in out

    # command-line filters and sort
    res = top("--once", "--name", t.name, "-p", "udp", "--sort", "bytes", "--no-events")
    assert "filter udp" in res.stdout and "showing 1-1 of 1" in res.stdout
    assert "recent events" not in res.stdout
    assert [x for x in res.stdout.splitlines() if x.startswith("tcp ")] == []
    res = top("--once", "--name", t.name, "--state", "bogus")
    assert res.returncode == 1 and res.stderr.startswith("ctrack-top: bad state 'bogus'")


def test_collector_line_agrees_with_ctrack_gc(live, make_lab, trackers):  # noqa: F811
    """ctrack-top's collector line and `ctrack gc` tell the same story: a collector runs (and
    `ctrack gc` refuses to start a second one), or none runs (and `ctrack gc` collects), or
    one could not run (its reason shown; `ctrack gc` is not told "already has a collector")."""
    lab, t = live
    res = top("--once", "--name", t.name, "-n", "0", "--width", "220", "--no-events")
    assert "collector ctrack run every 1s" in res.stdout
    res = t.ctrack("gc", check=False)
    assert res.returncode == 1 and "already has a collector" in res.stderr and "ctrack run" in res.stderr

    lab2 = make_lab("tu")
    t2 = trackers(lab2, "tu", ["--no-gc"])
    res = top("--once", "--name", t2.name, "-n", "0", "--width", "220", "--no-events")
    line = [x for x in res.stdout.splitlines() if x.startswith("collector ")][0]
    assert line.startswith("collector not running")
    res = t2.ctrack("gc", "--once")
    assert res.returncode == 0 and res.stdout.startswith("scanned ")
    # a collector that could not run, as `ctrack run` records it (runextras): top shows why
    import json
    import os
    from ctrack.live.collector import status_path
    with open(status_path(t2.name), "w") as f:
        json.dump({"pid": t2.proc.pid, "owner": "ctrack run", "interval_s": 1.0,
                   "error": "the kernel refused the collector's XDP program (EPERM): no collector, "
                            "idle flows stay until a packet of the same flow comes"}, f)
    try:
        res = top("--once", "--name", t2.name, "-n", "0", "--width", "250", "--no-events")
        line = [x for x in res.stdout.splitlines() if x.startswith("collector ")][0]
        assert line.startswith("collector not running (the kernel refused the collector's XDP program")
        res = t2.ctrack("gc", "--once")
        assert res.returncode == 0 and "already has a collector" not in res.stderr
    finally:
        os.unlink(status_path(t2.name))


def test_once_shows_ipv6_endpoints(live, conn):
    """fd00::/8 and fe80::/10 addresses in brackets look like rich markup tags: shown whole."""
    lab, t = live
    send6 = ("import socket, sys; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); "
             "s.bind(('', 40953)); s.sendto(b'x', (sys.argv[1], 7953))")
    lab.exec("ns1", ["/usr/bin/python3", "-c", send6, lab.addr("ns2", 6)])
    assert wait_for(lambda: t.flows("--dport", "7953"), 5)
    res = top("--once", "--name", t.name, "-n", "0", "--width", "220", "--no-events")
    row = [x for x in res.stdout.splitlines() if ":7953" in x]
    assert len(row) == 1, res.stdout
    assert row[0].split()[2:4] == [f"[{lab.addr('ns1', 6)}]:40953", f"[{lab.addr('ns2', 6)}]:7953"]


def test_plain_frames_without_a_terminal(live, conn):
    lab, t = live
    res = top("--name", t.name, "-c", "2", "-i", "0.3", "--no-events")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("ctrack-top tracker") == 2
    # the second frame has rates: the TCP connection is quiet (0b/s), not unknown
    second = res.stdout.split("ctrack-top tracker")[2]
    assert "0b/s" in second


def _tmux(*args):
    return subprocess.run(["tmux", *args], capture_output=True, text=True)


def _screen():
    return _tmux("capture-pane", "-p", "-t", SESSION).stdout


def _wait_screen(pred, timeout=8.0):
    return wait_for(lambda: (lambda s: s if pred(s) else None)(_screen()), timeout, 0.1)


@pytest.fixture
def tmux():
    _tmux("kill-session", "-t", SESSION)
    try:
        yield
    finally:
        _tmux("kill-session", "-t", SESSION)


def _start(t, extra=""):
    # after ctrack-top exits, the shell prints its status and the terminal's modes
    cmd = (f"ctrack-top --name {shlex.quote(t.name)} -i 0.5 {extra}; echo EXITED $?; "
           f"stty -a | tr ' ;' '\\n\\n' | grep -Ex -- '-?(icanon|echo)' | tr '\\n' ' '; "
           f"echo; sleep 60")
    r = _tmux("new-session", "-d", "-s", SESSION, "-x", "170", "-y", "40", "sleep 0.3; " + cmd)
    assert r.returncode == 0, r.stderr
    # a detached session may be sized by the tmux server's other clients: insist
    _tmux("set-option", "-t", SESSION, "window-size", "manual")
    _tmux("resize-window", "-t", SESSION, "-x", "170", "-y", "40")
    assert _wait_screen(lambda s: "ctrack-top tracker" in s and "showing" in s), _screen()


def test_screen_keys_sort_filter_quit(live, conn, tmux):
    lab, t = live
    _start(t)
    s = _screen()
    lines = s.splitlines()
    assert lines[0].startswith("ctrack-top tracker")
    assert "sort rate" in s and "filter none" in s and "q quit" in s
    assert "10.0.0.2:7951" in s and "10.0.0.2:7952" in s

    _tmux("send-keys", "-t", SESSION, "s")
    assert _wait_screen(lambda s: "sort bytes" in s), _screen()
    _tmux("send-keys", "-t", SESSION, "r")
    assert _wait_screen(lambda s: "sort bytes \u2191" in s), _screen()
    # (each check waits for a whole matching screen: a capture can catch a redraw half done)
    _tmux("send-keys", "-t", SESSION, "p")   # protocol: tcp
    assert _wait_screen(lambda s: "filter tcp" in s and "showing 1-1 of 1" in s
                        and "10.0.0.2:7951" in s and "10.0.0.2:7952" not in s), _screen()
    _tmux("send-keys", "-t", SESSION, "p")   # udp
    assert _wait_screen(lambda s: "filter udp" in s and "10.0.0.2:7952" in s
                        and "10.0.0.2:7951" not in s), _screen()
    _tmux("send-keys", "-t", SESSION, "c")
    assert _wait_screen(lambda s: "filter none" in s and "showing 1-2 of 2" in s), _screen()

    # the filter prompt
    _tmux("send-keys", "-t", SESSION, "/")
    assert _wait_screen(lambda s: "filter: " in s and "Enter apply" in s), _screen()
    _tmux("send-keys", "-t", SESSION, "-l", "dport=7951")
    assert _wait_screen(lambda s: "filter: dport=7951" in s), _screen()
    _tmux("send-keys", "-t", SESSION, "Enter")
    assert _wait_screen(lambda s: "filter dport=7951" in s and "showing 1-1 of 1" in s
                        and "10.0.0.2:7952" not in s), _screen()
    _tmux("send-keys", "-t", SESSION, "/")
    _tmux("send-keys", "-t", SESSION, "-l", "state=nosuch")
    _tmux("send-keys", "-t", SESSION, "Enter")
    assert _wait_screen(lambda s: "bad state 'nosuch'" in s), _screen()
    _tmux("send-keys", "-t", SESSION, "t")   # state: the first present (ESTABLISHED or NEW)
    assert _wait_screen(lambda s: "filter state=" in s), _screen()
    _tmux("send-keys", "-t", SESSION, "c", "Down", "Up", "NPage", "Home", " ")
    assert _wait_screen(lambda s: "PAUSED" in s), _screen()

    _tmux("send-keys", "-t", SESSION, "q")
    # the stty line comes after EXITED: wait for it too (it says icanon or -icanon)
    s = _wait_screen(lambda s: "EXITED" in s and "icanon" in s)
    assert s and "EXITED 0" in s, _screen()
    assert "ctrack-top tracker" not in s   # the alternate screen is gone
    assert "icanon" in s.split() and "echo" in s.split(), s   # and the terminal modes are back


def test_screen_ctrl_c_restores_terminal(live, tmux):
    lab, t = live
    _start(t, "--no-events")
    assert "recent events" not in _screen()
    _tmux("send-keys", "-t", SESSION, "C-c")
    # the stty line comes after EXITED: wait for it too (it says icanon or -icanon)
    s = _wait_screen(lambda s: "EXITED" in s and "icanon" in s)
    assert s and "EXITED 0" in s and "icanon" in s.split() and "echo" in s.split(), _screen()

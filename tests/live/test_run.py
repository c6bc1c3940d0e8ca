"""`ctrack run` live in a namespace lab: forwarding as a bump in the wire (TC and XDP), events,
refusal to replace programs, clean detach on SIGINT/SIGTERM, one-line errors."""
import json
import os
import signal
import subprocess
import time

import pytest

from ctrack.lab.core import Lab
from ctrack.live import pins
from helpers import REPO

LAB = f"tr{os.getpid() % 10000}"


@pytest.fixture(scope="module")
def lab():
    lab = Lab(LAB)
    lab.down()
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


def start(args, name):
    p = subprocess.Popen(["ctrack", "run", "--name", name, *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    # notices (a killed tracker's leftovers removed) may come before "Tracking"
    head = []
    while not head or "Tracking" not in head[-1]:
        line = p.stderr.readline()
        if not line:
            p.kill()
            out, err = p.communicate()
            raise AssertionError(f"ctrack run did not start: {''.join(head)}{err}")
        head.append(line)
    return p


def stop(p, sig=signal.SIGINT):
    p.send_signal(sig)
    out, err = p.communicate(timeout=20)
    return p.returncode, out, err


def attached(ifname):
    """Text of what is attached to an interface: XDP id and TC filters."""
    link = subprocess.run(["ip", "-d", "link", "show", ifname], capture_output=True, text=True).stdout
    tc = subprocess.run(["tc", "filter", "show", "dev", ifname, "ingress"], capture_output=True, text=True).stdout
    q = subprocess.run(["tc", "qdisc", "show", "dev", ifname], capture_output=True, text=True).stdout
    return ("prog/xdp" in link, tc.strip(), "clsact" in q)


def tcp_exchange(lab, port=7001):
    srv = lab.spawn("ns2", ["socat", "-T3", f"TCP-LISTEN:{port},reuseaddr", "EXEC:cat"])
    time.sleep(0.3)
    try:
        res = lab.exec("ns1", ["socat", "-T2", "-", f"TCP:{lab.addr('ns2')}:{port}"], input="ping\n")
        return res.stdout
    finally:
        srv.stop()


def test_tc_bump_in_the_wire(lab):
    v1, v2 = lab.tracker_ifaces
    assert lab.ping("ns1", "ns2", count=1, timeout=2)["received"] == 0   # nothing joins them
    p = start(["-1", v1, "-2", v2, "-l", "2", "--duration", "30"], LAB)
    try:
        assert lab.ping("ns1", "ns2", count=2)["received"] == 2
        assert tcp_exchange(lab) == "ping\n"
        assert os.path.exists(os.path.join(pins.PIN_ROOT, LAB, "flows"))
        assert pins.find(LAB)["interfaces"] == [v1, v2]
    finally:
        rc, out, err = stop(p)
    assert rc == 0, err
    assert "[NEW] tcp SYN_SENT" in out and "dport=7001" in out
    assert "reason=fin" in out
    assert "packets=" in out.splitlines()[-1] or "invalid:" in out.splitlines()[-1]
    for v in (v1, v2):
        assert attached(v) == (False, "", False)
    assert not os.path.exists(os.path.join(pins.PIN_ROOT, LAB))
    assert lab.ping("ns1", "ns2", count=1, timeout=2)["received"] == 0


def test_event_times_are_precise_and_printed_with_T(lab):
    """Events carry the precise clock read when each is emitted (the coarse per-packet clock
    ticks once a jiffy and gave a whole handshake one time): one connection's events have
    distinct, increasing times, which `ctrack run -T` prints as the time of day and --json
    as ts_ns."""
    import re
    v1, v2 = lab.tracker_ifaces
    p = start(["-1", v1, "-2", v2, "-l", "2", "-T", "--duration", "30"], LAB)
    try:
        assert tcp_exchange(lab, 7009) == "ping\n"
        time.sleep(0.3)
    finally:
        rc, out, err = stop(p)
    assert rc == 0, err
    lines = [x for x in out.splitlines() if "dport=7009" in x]
    assert len(lines) >= 6, out   # NEW, SYN_RECV, ESTABLISHED, then the close's steps
    stamps, counts = [], []
    for line in lines:
        counts.append(re.search(r"packets=(\d+/\d+)", line).group(1))
        m = re.match(r"(\d\d):(\d\d):(\d\d)\.(\d{6}) +\[", line)
        assert m, line
        h, mi, sec, us = map(int, m.groups())
        stamps.append(((h * 60 + mi) * 60 + sec) * 1000000 + us)
    # two events of one packet (its last state change and the end) may share a microsecond
    assert all(a < b or (a == b and ca == cb) for a, b, ca, cb in
               zip(stamps, stamps[1:], counts, counts[1:])), "\n".join(lines)
    assert len(set(stamps)) >= len(set(counts)) >= 5
    assert stamps[-1] - stamps[0] < 30 * 1000000
    now = time.localtime()
    assert abs(stamps[-1] / 1e6 - (now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec)) < 30


def test_second_tracker_is_refused(lab):
    v1, v2 = lab.tracker_ifaces
    p = start(["-1", v1, "-2", v2, "-l", "0", "--duration", "30"], LAB)
    try:
        res = subprocess.run(["ctrack", "run", "-i", v1, "--name", LAB + "b", "--duration", "2"],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 1
        assert "already has a TC" in res.stderr and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
        # same name, other interfaces: the name is taken
        res = subprocess.run(["ctrack", "run", "-i", "lo", "--name", LAB, "--duration", "2"],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 1 and "already running" in res.stderr
        # the first tracker still forwards
        assert lab.ping("ns1", "ns2", count=1)["received"] == 1
    finally:
        rc, _, _ = stop(p, signal.SIGTERM)
    assert rc == 0
    assert attached(v1) == (False, "", False)


def test_enforce_drops_midstream_packet(lab):
    v1, v2 = lab.tracker_ifaces
    p = start(["-1", v1, "-2", v2, "--policy", "enforce", "-l", "0", "--duration", "30"], LAB)
    try:
        # an ACK for no connection never reaches ns2: hping3 sees no RST back
        res = lab.exec("ns1", ["hping3", "-A", "-c", "2", "-i", "u200000", "-p", "9", lab.addr("ns2")],
                       check=False, timeout=15)
        assert "flags=R" not in res.stdout
        assert tcp_exchange(lab, 7002) == "ping\n"   # real connections pass
    finally:
        rc, out, _ = stop(p)
    assert "tcp_no_flow=2" in out


def test_icmp_error_is_related_and_passes_enforce(lab):
    """A UDP datagram to a closed port: ns2's kernel answers port unreachable, which the
    enforcing tracker classes RELATED and lets through, so the sender's socket hears
    ECONNREFUSED. A forged error about a flow never seen is dropped."""
    v1, v2 = lab.tracker_ifaces
    p = start(["-1", v1, "-2", v2, "--policy", "enforce", "-l", "0", "--duration", "30"], LAB)
    probe = ("import socket\n"
             "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)\n"
             f"s.connect(('{lab.addr('ns2')}', 9)); s.send(b'x')\n"
             "try:\n    s.recv(10); print('answer')\n"
             "except ConnectionRefusedError:\n    print('refused')\n"
             "except socket.timeout:\n    print('timeout')\n")
    forged = ("from scapy.all import IP, ICMP, UDP, send\n"
              f"send(IP(dst='{lab.addr('ns1')}')/ICMP(type=3, code=3)/IP(src='{lab.addr('ns1')}', "
              f"dst='{lab.addr('ns2')}')/UDP(sport=4444, dport=53), verbose=0)\n")
    try:
        res = lab.exec("ns1", ["/usr/bin/python3", "-c", probe], timeout=15)
        assert res.stdout.strip() == "refused"
        lab.exec("ns2", ["/usr/bin/python3", "-c", forged], timeout=30)
    finally:
        rc, out, _ = stop(p)
    assert rc == 0
    assert "class.related=1" in out and "icmp_no_flow=1" in out


def test_xdp_refused_until_hosts_are_ready(lab):
    v1, v2 = lab.tracker_ifaces
    res = subprocess.run(["ctrack", "run", "-1", v1, "-2", v2, "--mode", "xdp", "--name", LAB, "--duration", "2"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "tx off gro on" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert attached(v1) == (False, "", False)
    for h in ("ns1", "ns2"):
        lab.exec(h, ["ethtool", "-K", "eth0", "tx", "off", "gro", "on"])
    try:
        p = start(["-1", v1, "-2", v2, "--mode", "xdp", "-l", "1", "--duration", "30"], LAB)
        try:
            assert attached(v1)[0] and attached(v2)[0]
            assert lab.ping("ns1", "ns2", count=2)["received"] == 2
            assert tcp_exchange(lab, 7003) == "ping\n"
        finally:
            rc, out, _ = stop(p)
        assert rc == 0 and "dport=7003" in out
        assert attached(v1) == (False, "", False) and attached(v2) == (False, "", False)
    finally:
        for h in ("ns1", "ns2"):
            lab.exec(h, ["ethtool", "-K", "eth0", "tx", "on", "gro", "off"], check=False)


def test_killed_trackers_leftovers_are_removed(lab):
    """SIGKILL leaves a tracker no chance to detach: its filters stay, redirecting with nobody
    watching. The next ctrack (any command that looks for trackers) removes exactly those."""
    v1, v2 = lab.tracker_ifaces
    for then in ("run", "list"):
        p = start(["-1", v1, "-2", v2, "-l", "0", "--duration", "60"], LAB)
        p.kill()
        p.communicate()
        assert attached(v1)[1] and attached(v2)[2]   # filters and clsact outlived it
        if then == "list":
            res = subprocess.run(["ctrack", "list", "--name", LAB], capture_output=True, text=True)
            assert res.returncode == 1 and "no running tracker" in res.stderr
        else:
            # another tracker on the same interfaces: the dead one's filters are not in its way
            p = subprocess.Popen(["ctrack", "run", "--name", LAB + "b", "-1", v1, "-2", v2, "-l",
                                  "0", "--duration", "30"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            notice = p.stderr.readline()
            assert "Tracking" in p.stderr.readline()
            assert lab.ping("ns1", "ns2", count=1)["received"] == 1
            rc, _, _ = stop(p)
            assert rc == 0
            res = subprocess.CompletedProcess([], 0, "", notice)
        assert f"tracker {LAB!r}" in res.stderr and "died without detaching" in res.stderr
        assert "TC ingress filter on " + v1 in res.stderr and "clsact qdisc on " + v2 in res.stderr
        for v in (v1, v2):
            assert attached(v) == (False, "", False)
        assert not os.path.exists(os.path.join(pins.PIN_ROOT, LAB))


def test_observer_on_one_interface(lab):
    v1, _ = lab.tracker_ifaces
    lab.set_bridge(True)
    try:
        p = start(["-i", v1, "-l", "1", "--duration", "30"], LAB)
        try:
            assert tcp_exchange(lab, 7004) == "ping\n"
        finally:
            rc, out, _ = stop(p)
        # ingress and egress seen: the whole connection, closed by FIN
        assert "dport=7004" in out and "reason=fin" in out
    finally:
        lab.set_bridge(False)


def _tracker_in(lab, host, args, name):
    """`ctrack run ARGS` inside HOST's namespace (its own lo), started and announced."""
    p = lab.spawn(host, ["ctrack", "run", "--name", name, "--json", "--duration", "60", *args],
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    head = []
    while not head or "Tracking" not in head[-1]:
        line = p.stderr.readline()
        if not line:
            p.stop()
            raise AssertionError(f"ctrack run did not start: {''.join(head)}{p.stderr.read()}")
        head.append(line)
    return p, "".join(head)


def _capture(lab, host, iface, path):
    """tshark writing what IFACE in HOST carries to PATH; returns once it captures."""
    cap = lab.spawn(host, ["tshark", "-q", "-i", iface, "-w", str(path), "-a", "duration:60"],
                    stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    err = ""
    while "Capturing on" not in err and time.monotonic() < deadline:
        err += cap.stderr.readline()
    assert "Capturing on" in err, err
    return cap


def _tshark_count(path, display_filter=None):
    argv = ["tshark", "-r", str(path)] + (["-Y", display_filter] if display_filter else [])
    return len(subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.splitlines())


@pytest.mark.parametrize("mode", ["tc", "xdp"])
def test_observer_on_loopback_counts_each_packet_once(lab, tmp_path, mode):
    """On lo every packet is sent and then received: it crosses egress and ingress. The tracker
    (here inside ns1, whose lo carries only this test's traffic) must count, judge and track
    each packet once: as many as tshark captures on lo, per flow and in the summary."""
    name = f"{LAB}lo{mode}"
    port = 7020 if mode == "tc" else 7021
    cap = _capture(lab, "ns1", "lo", tmp_path / "lo.pcapng")
    try:
        p, head = _tracker_in(lab, "ns1", ["-i", "lo", "--mode", mode, "-l", "0"], name)
        try:
            assert "Loopback: each packet is seen once" in head, head
            srv = lab.spawn("ns1", ["socat", "-T3", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr",
                                    "EXEC:cat"])
            time.sleep(0.3)
            try:
                res = lab.exec("ns1", ["socat", "-T2", "-", f"TCP:127.0.0.1:{port}"],
                               input="ping\n")
                assert res.stdout == "ping\n"
            finally:
                srv.stop()
            time.sleep(0.3)
            listed = subprocess.run(["ctrack", "list", "--name", name, "--json", "--dport", str(port)],
                                    capture_output=True, text=True, timeout=30)
            [flow] = json.loads(listed.stdout)
        finally:
            p.stop(timeout=20, sig=signal.SIGINT)
            out = p.stdout.read()
    finally:
        cap.stop(timeout=10, sig=signal.SIGINT)
    summary = [json.loads(x)["summary"] for x in out.splitlines() if '"summary"' in x][-1]
    seen = _tshark_count(tmp_path / "lo.pcapng", f"tcp.port == {port}")
    total = _tshark_count(tmp_path / "lo.pcapng")
    print(f"\n{mode} on lo: tshark {seen} packets of the connection ({total} on lo); ctrack: flow "
          f"{flow['packets']} = {sum(flow['packets'])}, summary packets={summary['packets']}, "
          f"invalid={summary['class.invalid']}")
    assert seen >= 8   # handshake, data, echo, close
    assert sum(flow["packets"]) == seen, (flow, seen)
    assert summary["packets"] == total and summary["class.invalid"] == 0, (summary, total)
    assert flow["state"] == "TIME_WAIT" and flow["orig_state"] == "TIME_WAIT", flow
    assert not os.path.exists(os.path.join(pins.PIN_ROOT, name))


def test_observer_skips_the_hosts_own_looped_multicast(lab, tmp_path):
    """A host's multicast to a group it belongs to (IP_MULTICAST_LOOP, the default) is looped
    back to the ingress of the interface it left by (without its Ethernet header): the observer
    took it at egress and must not count it a second time. tshark sees it once."""
    name = f"{LAB}mc"
    cap = _capture(lab, "ns1", "eth0", tmp_path / "eth0.pcapng")
    p, _ = _tracker_in(lab, "ns1", ["-i", "eth0", "-l", "0"], name)
    try:
        res = lab.exec("ns1", ["/usr/bin/python3", "-c", """
import socket, struct
me = socket.inet_aton("10.0.0.1")
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r.bind(("239.7.7.7", 7022))
r.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton("239.7.7.7") + me)
r.settimeout(2)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, me)
for i in range(3):
    s.sendto(b"x", ("239.7.7.7", 7022))
print(sum(1 for i in range(3) if r.recv(10)))
"""])
        assert res.stdout.strip() == "3"   # each came back to the host: looped
        time.sleep(0.3)
        listed = subprocess.run(["ctrack", "list", "--name", name, "--json", "--dport", "7022"],
                                capture_output=True, text=True, timeout=30)
        [flow] = json.loads(listed.stdout)
    finally:
        p.stop(timeout=20, sig=signal.SIGINT)
        out = p.stdout.read()
        cap.stop(timeout=10, sig=signal.SIGINT)
    summary = [json.loads(x)["summary"] for x in out.splitlines() if '"summary"' in x][-1]
    total = _tshark_count(tmp_path / "eth0.pcapng")
    assert flow["packets"] == [3, 0], flow
    # the 3 datagrams and the group's reports (IGMP): each once, so never more than tshark saw
    # (which keeps capturing a little before and after the tracker: a report repeated late)
    assert summary["packets"] <= total and summary["class.invalid"] == 0, (summary, total)
    assert summary["class.new"] + summary["class.established"] == 3, summary


@pytest.mark.parametrize("argv,needle", [
    (["-i", "nonexistent0"], "no interface named 'nonexistent0'"),
    (["-1", "lo"], "say where to run"),
    (["-1", "lo", "-2", "lo"], "two different interfaces"),
    (["-i", "lo", "--timeout", "BOGUS=3"], "unknown state BOGUS"),
])
def test_one_line_errors(argv, needle):
    res = subprocess.run(["ctrack", "run", "--name", LAB + "e", *argv], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 1, res.stderr
    assert needle in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_d_means_destination_in_every_ctrack_command():
    """-d is conntrack's destination address in list/events/flush/delete; `ctrack run` takes its
    run time as --duration and says so to whoever types the old -d."""
    for cmd in ("list", "events", "flush", "delete"):
        h = subprocess.run(["ctrack", cmd, "-h"], capture_output=True, text=True).stdout
        assert "-d ADDR[/LEN], --dst ADDR[/LEN]" in h, (cmd, h)
    h = subprocess.run(["ctrack", "run", "-h"], capture_output=True, text=True).stdout
    assert "--duration SECONDS" in h and "-d," not in h and "-d " not in h
    res = subprocess.run(["ctrack", "run", "-i", "lo", "-d", "5"], capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        "ctrack run: -d is a destination address in ctrack's other commands (conntrack's -s/-d); "
        "the run time is --duration SECONDS (try `ctrack run -h`)"]


def test_run_help_says_how_each_mode_hooks():
    h = " ".join(subprocess.run(["ctrack", "run", "-h"], capture_output=True, text=True).stdout.split())
    assert "-1/-2 take the TC ingress of both interfaces" in h
    assert "-i takes the TC ingress and egress of IFACE" in h
    assert "on a loopback device (lo), where every packet is sent and then received, ingress only" in h
    assert "XDP (--mode xdp) hooks only what IFACE receives" in h


def test_readme_synopsis_lists_every_run_option():
    import re
    readme = open(os.path.join(REPO, "README.md")).read()
    section = readme[readme.index("## `ctrack run`"):]
    synopsis = section[section.index("```") + 3:]
    synopsis = synopsis[:synopsis.index("```")]
    h = subprocess.run(["ctrack", "run", "-h"], capture_output=True, text=True).stdout
    options = set(re.findall(r"--[a-z][a-z-]*", h.split("\n\n")[0])) - {"--help", "--interface",
                                                                      "--log-level"}
    missing = sorted(o for o in options if o not in synopsis)
    assert not missing, f"README's ctrack run synopsis lacks {missing}"
    for short in ("-1", "-2", "-i", "-l", "-t", "-T"):
        assert short in synopsis, short


def test_bad_flag_is_usage_error():
    res = subprocess.run(["ctrack", "run", "--frobnicate"], capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr == "ctrack run: unrecognized arguments: --frobnicate (try `ctrack run -h`)\n"


def test_not_root():
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          "ctrack", "run", "-i", "lo"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "root" in res.stderr and "Traceback" not in res.stderr



@pytest.mark.parametrize("tool", ["ctrack", "ctrack-lab", "ctrack-report", "ctrack-tcprtt",
                                  "ctrack-tcpstates", "ctrack-top"])
def test_a_signal_while_the_tool_loads_exits_quietly(tool):
    # Ctrl-C or a SIGTERM that lands while the modules are still importing (BCC's import alone
    # takes a second on a busy machine): nothing exists yet to clean up, so the tool leaves as
    # it does later (130), with no traceback. `-h` may also be over by then (0), or Python may
    # be finalising, when a signal ends it silently (-signal): all fine, a traceback is not.
    script = os.path.join(REPO, "tools", tool)
    for sig in (signal.SIGINT, signal.SIGTERM):
        for wait in (0.1, 0.2, 0.3):
            p = subprocess.Popen(["/usr/bin/python3", script, "-h"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
            time.sleep(wait)
            p.send_signal(sig)
            _, err = p.communicate(timeout=30)
            assert p.returncode in (0, 130, -sig), (tool, sig, wait, p.returncode, err)
            assert "Traceback" not in err, (tool, sig, wait, err)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_before_the_observer_starts_exits_130(sig):
    # ctrack-tcpstates runs until stopped; signalled before its program is attached (importing,
    # or in BCC's compile), it exits as it does once running: 130, nothing printed
    p = subprocess.Popen(["/usr/bin/python3", os.path.join(REPO, "tools", "ctrack-tcpstates")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.1)
    p.send_signal(sig)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130, (p.returncode, err)
    assert "Traceback" not in err, err

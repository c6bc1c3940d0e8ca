"""ctrack-report end to end: real labs, the real tracker, tcpstates/tcprtt, netfilter's conntrack,
a capture, and the HTML opened in Debian's chromium (headless).

One run of the standard scenarios (basic, simclose, routed, delay-10; about 40 s) is shared by
the module; the broken tracker build (-DCT_TEST_SKIP_CLOSING, kernel/tracker.c) gets a run of
its own (about 10 s)."""
import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from helpers import REPO

PY = "/usr/bin/python3"
PEER = os.path.join(REPO, "ctrack", "report", "peer.py")
STANDARD = ["basic", "simclose", "routed", "delay-10"]
# the kernels' srtt (opener's socket, request/response) against ping -U's median at 10 ms each
# way: 5.3% and 0.1% (50 ms) measured; delayed ACKs and the delay line's wake-ups stay well inside
KERNEL_VS_PING_TOL_PCT = 15.0
# issue 11's promise for the tracker's passive srtt, once it reports one
TRACKER_RTT_TOL_PCT = 10.0

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ctrack-report needs root (labs, BPF)")


def run_report(args, timeout=300):
    return subprocess.run(["ctrack-report", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def standard(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    res = run_report([*STANDARD, "--out", str(out), "--check", "-q"])
    with open(out / "report.json") as f:
        report = json.load(f)
    return res, report, out


def test_standard_scenarios_reach_full_agreement(standard):
    res, report, _ = standard
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    sc = report["scenarios"]
    assert sorted(sc) == sorted(STANDARD)
    for name, s in sc.items():
        assert s["disagreements"] == [], name
        assert s["state_agreement_pct"] == 100.0, name
        assert s["compared"] == s["connections"] > 0, name
        assert s["ctrack_overall_consistent_pct"] == 100.0, name
    # every kind of connection of `basic` was seen, each endpoint with its kernel's view
    assert sc["basic"]["connections"] == 6 and len(sc["basic"]["udp_flows"]) == 1
    assert {"timewait-takeover", "listener-clone", "connect-port-0"} <= set(sc["basic"]["mapping_rules"])
    # the FINs crossed at least once: CLOSING on both kernels, the tracker's provisional CLOSE_WAIT named
    closing = [c for c in sc["simclose"]["connections_detail"]
               if "CLOSING" in c["endpoints"]["opener"]["kernel"] and "CLOSING" in c["endpoints"]["responder"]["kernel"]]
    assert closing, "no simultaneous close happened (the FINs did not cross)"
    assert {"self-transition", "crossed-fin"} <= set(sc["simclose"]["mapping_rules"])
    assert all("CLOSING" in c["endpoints"]["opener"]["tracker"] for c in closing)
    # netfilter beside ctrack in the routed topology only
    assert sc["routed"]["netfilter_consistent_pct"] is not None
    assert all(c.get("netfilter") for c in sc["routed"]["connections_detail"])
    assert sc["basic"]["netfilter_consistent_pct"] is None
    ov = report["overall"]
    assert ov["connections"] == sum(s["connections"] for s in sc.values())
    assert ov["state_agreement_pct"] == 100.0 and ov["disagreements"] == []


def test_transitions_are_timed(standard):
    _, report, _ = standard
    sc = report["scenarios"]
    # at 10 ms each way the receiving kernel changes state about 10 ms after the tracker passed
    # the packet; a sending kernel, before the tracker sees the packet
    recv = [t["ms"] for t in sc["simclose"]["timing"] if t["state"] == "CLOSING"]
    assert recv and all(8.0 <= ms <= 40.0 for ms in recv), recv
    sent = [t["ms"] for t in sc["simclose"]["timing"] if t["state"] == "SYN_SENT"]
    assert sent and all(-20.0 <= ms <= 1.0 for ms in sent), sent
    assert sc["basic"]["tracker_events_dated_by_capture"] > 0


def test_rtt_under_the_delay_line(standard):
    _, report, _ = standard
    s = report["scenarios"]["delay-10"]
    assert 19.5 <= s["ping_ms"] <= 25.0
    assert s["kernel_vs_ping_median_error_pct"] is not None
    assert s["kernel_vs_ping_median_error_pct"] <= KERNEL_VS_PING_TOL_PCT
    if s["rtt_median_error_pct"] is None:
        # this tracker build reports no passive RTT yet: the report says so and shows n/a
        assert any("no passive RTT" in n for n in report["notes"])
        assert all(r["tracker_srtt_us"] is None for r in s["rtt"])
    else:
        # the tracker's path RTT (its minimum: sums of the two halves' minima) against the
        # kernels'. Its srtt is read when the flow ends and can carry the close's samples (an
        # answer that waits on the application); rtt_median_error_pct reports that difference,
        # measured, and tests/live/test_rtt_live.py checks the srtt of an open connection.
        rows = [r for r in s["rtt"] if r["tracker_min_us"] and r["kernel_min_us"]]
        assert rows
        for r in rows:
            assert abs(r["tracker_min_us"] - r["kernel_min_us"]) <= \
                TRACKER_RTT_TOL_PCT / 100 * r["kernel_min_us"], r


def test_broken_tracker_build_is_caught(tmp_path):
    """A tracker compiled with -DCT_TEST_SKIP_CLOSING never takes a FIN_WAIT1 endpoint to
    CLOSING: the report must disagree with the kernels, and --check must fail."""
    res = run_report(["simclose", "--tracker-define", "CT_TEST_SKIP_CLOSING", "--out", str(tmp_path),
                      "--check", "-q"])
    assert res.returncode == 1, res.stdout[-2000:] + res.stderr[-2000:]
    assert "disagreement" in res.stderr
    with open(tmp_path / "report.json") as f:
        report = json.load(f)
    dis = report["overall"]["disagreements"]
    assert dis and all(d["scenario"] == "simclose" for d in dis)
    assert any("CLOSING" in d["kernel_rest"] and "CLOSING" not in d["tracker_rest"] for d in dis)
    assert all(d["packets"] for d in dis)
    assert any("TEST BUILD" in n for n in report["notes"])


def _png_pixels(path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.image
    return matplotlib.image.imread(str(path))


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed")
def test_html_opens_in_headless_chromium(standard, tmp_path):
    _, report, out = standard
    page = (out / "report.html").as_uri()
    base = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}"]
    # the page's own script marks the body once every figure decoded and every table has rows
    dom = subprocess.run(base + ["--virtual-time-budget=5000", "--dump-dom", page], capture_output=True,
                         text=True, timeout=90).stdout
    assert 'data-report-ready="yes"' in dom, dom[:500]
    import re
    loaded, total = map(int, re.search(r'data-figures-loaded="(\d+)/(\d+)"', dom).groups())
    assert loaded == total >= 4     # agreement, timing, divergence, RTT (delay-10 has ping)
    assert "http://" not in dom.replace("http://www.w3.org", "") and "https://" not in dom
    shot = tmp_path / "shot.png"
    subprocess.run(base + ["--window-size=1280,1600", f"--screenshot={shot}", page], capture_output=True,
                   timeout=90)
    px = _png_pixels(shot)[..., :3]
    non_white = (px.sum(axis=2) < 2.9).mean()
    assert px.std() > 0.05 and non_white > 0.02, (px.std(), non_white)


def test_host_mode_on_loopback(tmp_path):
    """--host -i lo: the tracker on the loopback interface and this host's sockets: both ends
    of a loopback connection are local, so both kernels are compared."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = open(tmp_path / "err", "w+")
    rep = subprocess.Popen(["ctrack-report", "--host", "-i", "lo", "-d", "3", "--out", str(tmp_path),
                            "--no-html"], stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        end = time.monotonic() + 90
        while time.monotonic() < end and "recording" not in open(tmp_path / "err").read():
            assert rep.poll() is None, open(tmp_path / "err").read()
            time.sleep(0.1)
        srv = subprocess.Popen([PY, PEER, "server", str(port)], stdout=subprocess.PIPE, text=True)
        try:
            assert "listening" in srv.stdout.readline()
            subprocess.run([PY, PEER, "client", "127.0.0.1", str(port), "short", "srvfirst", "abort"],
                           capture_output=True, timeout=30, check=True)
        finally:
            srv.kill()
            srv.wait()
        rep.communicate(timeout=60)
    finally:
        if rep.poll() is None:
            rep.terminate()
            rep.wait(10)
    assert rep.returncode == 0, open(tmp_path / "err").read()
    with open(tmp_path / "report.json") as f:
        report = json.load(f)
    (s,) = report["scenarios"].values()
    mine = [c for c in s["connections_detail"] if c["id"][4] == port]
    assert len(mine) == 3
    assert all(c["agree"] for c in mine), [c["endpoints"] for c in mine]
    assert all(e["kernel"] for c in mine for e in c["endpoints"].values())
    assert any("--host" in n for n in report["notes"])


def test_bad_usage_is_one_line():
    for args, rc, text in ((["nosuch"], 1, "no scenario 'nosuch'"), ([], 1, "name a scenario"),
                           (["--host"], 1, "-i IF"), (["--host", "-i", "nosuch0"], 1, "no interface"),
                           (["basic", "--bogus"], 2, "unrecognized arguments")):
        res = run_report(args, timeout=30)
        assert res.returncode == rc, (args, res.stderr)
        assert text in res.stderr and len(res.stderr.strip().splitlines()) == 1, (args, res.stderr)
        assert "Traceback" not in res.stderr


def test_interrupted_run_leaves_nothing(tmp_path):
    """SIGTERM (as Ctrl-C) in the middle of a scenario: one line, exit 130, the lab, the tracker,
    the capture and the test server gone."""
    import re
    import signal
    err = open(tmp_path / "err", "w+")
    rep = subprocess.Popen(["ctrack-report", "basic", "--out", str(tmp_path)], stdout=subprocess.DEVNULL,
                           stderr=err, text=True)
    try:
        end = time.monotonic() + 90
        while time.monotonic() < end and "scenario basic" not in open(tmp_path / "err").read():
            assert rep.poll() is None, open(tmp_path / "err").read()
            time.sleep(0.1)
        time.sleep(1.0)
        rep.send_signal(signal.SIGTERM)
        rep.wait(60)
    finally:
        if rep.poll() is None:
            rep.kill()
            rep.wait()
    text = open(tmp_path / "err").read()
    assert rep.returncode == 130, text
    assert text.strip().splitlines()[-1].startswith("ctrack-report: interrupted")
    lab = re.search(r"lab (\S+) \(wire\) up", text).group(1)
    netns = subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout
    assert f"{lab}-ns1" not in netns and f"{lab}-ns2" not in netns
    procs = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"rep-{lab}" not in procs and f"{lab}-v1" not in procs
    assert not os.path.exists(f"/sys/fs/bpf/ctrack/rep-{lab}")
    assert not (tmp_path / "report.json").exists()

"""`ctrack-lab run`: every validation scenario end to end (real namespaces, real traffic, a real
tracker), each bounded in time; a scenario passes only when all its checks agree with the
tracker. Also: the list, one-line errors, a disagreeing scenario exits 1, and nothing is left
behind (labs, trackers' pins), whatever happened."""
import json
import os
import subprocess

import pytest

from ctrack.live import pins
from ctrack.lab.core import Lab
from ctrack.lab.scenario import scenario_files

SCENARIOS = ["iperf3-tcp", "socat-tcp", "socat-udp", "hping3-rst", "scapy-simclose", "idle-timeout", "enforce",
             "tcp-options"]
PID = os.getpid() % 1000


def run_scenario(name, lab, *extra, env=None, timeout=120):
    res = subprocess.run(["ctrack-lab", "run", name, "--name", lab, "--json", *extra], capture_output=True,
                         text=True, timeout=timeout, env=env)
    results = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    return res, results


def assert_clean(lab):
    assert lab not in Lab.names()
    assert not os.path.exists(f"/run/netns/{lab}-ns1")
    assert not os.path.exists(os.path.join(pins.PIN_ROOT, f"sc-{lab}"))
    # tcp-options' cgroup for its sock_ops program (ctrack/lab/sockops.py)
    assert not any(os.path.exists(f"{root}/ctrack-{lab}") for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"))


def failures(result):
    return "\n".join(f"{c['check']}: expected {c['expected']}, seen {c['seen']}"
                     for c in result["checks"] if not c["ok"])


def test_all_scenarios_are_listed():
    res = subprocess.run(["ctrack-lab", "run", "--list"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    listed = [line.split()[0] for line in res.stdout.splitlines() if line.strip()]
    assert sorted(listed) == sorted(SCENARIOS) == sorted(scenario_files())
    assert all(len(line.split(None, 1)) == 2 for line in res.stdout.splitlines())   # each described


@pytest.mark.parametrize("index,name", list(enumerate(SCENARIOS)))
def test_scenario(index, name):
    lab = f"ts{PID}{index}"
    try:
        res, results = run_scenario(name, lab)
        assert len(results) == 1, res.stderr
        r = results[0]
        assert r["passed"] and res.returncode == 0, failures(r) + res.stderr
        assert len(r["checks"]) >= 5
    finally:
        Lab(lab).down()
    assert_clean(lab)


@pytest.mark.parametrize("name", ["socat-tcp", "hping3-rst"])
def test_scenario_with_xdp_tracker(name):
    lab = f"tx{PID}{SCENARIOS.index(name)}"
    try:
        res, results = run_scenario(name, lab, "--mode", "xdp")
        assert results and results[0]["passed"] and res.returncode == 0, \
            failures(results[0]) if results else res.stderr
        assert results[0]["mode"] == "xdp"
    finally:
        Lab(lab).down()
    assert_clean(lab)


def test_disagreement_exits_1_and_cleans_up(tmp_path):
    """A scenario whose expectation is wrong, and one that crashes half-way: verdict ✗, exit 1,
    and the lab, the tracker and the scenario's iptables rule are gone."""
    (tmp_path / "wrong.py").write_text(
        '"""expects a FIN where there is none"""\n'
        'CODE = "wr"\n'
        'def run(s):\n'
        '    s.iptables("ns2", ["INPUT", "-p", "tcp", "--dport", "9", "-j", "DROP"])\n'
        '    s.check("closed by fin", 1, s.stop_tracker()["closed_fin"])\n')
    (tmp_path / "crash.py").write_text(
        '"""raises half-way"""\n'
        'CODE = "cr"\n'
        'def run(s):\n'
        '    s.check("reached", 1, 1)\n'
        '    raise RuntimeError("boom")\n')
    env = dict(os.environ, CTRACK_SCENARIO_DIR=str(tmp_path))
    lab = f"tw{PID}"
    try:
        res, results = run_scenario("wrong", lab, env=env)
        assert res.returncode == 1 and not results[0]["passed"]
        assert results[0]["checks"][0] == {"check": "closed by fin", "expected": "1", "seen": "0", "ok": False}
        assert_clean(lab)
        res = subprocess.run(["ctrack-lab", "run", "crash", "--name", lab], capture_output=True, text=True,
                             timeout=120, env=env)
        assert res.returncode == 1
        assert "\u2717 scenario ran to the end" in res.stdout and "RuntimeError: boom" in res.stdout
        assert "\u2713 reached" in res.stdout and "Traceback" not in res.stdout + res.stderr
    finally:
        Lab(lab).down()
    assert_clean(lab)


def test_scenario_that_cannot_run_as_designed_exits_2(tmp_path):
    """A scenario needing the collector, on a tracker that has none (here --no-gc stands for a
    kernel that refuses it): not a disagreement -- other words, exit status 2 -- and nothing
    left behind. Before, a missing collector read as THE TRACKER DISAGREES, exit 1."""
    (tmp_path / "needsgc.py").write_text(
        '"""expects an idle flow removed by the collector"""\n'
        'CODE = "ng"\n'
        'TRACKER = {"extra": ["--no-gc"]}\n'
        'NEEDS = ("collector",)\n'
        'def run(s):\n'
        '    s.check("removed by the collector", 1, 0)\n')
    env = dict(os.environ, CTRACK_SCENARIO_DIR=str(tmp_path))
    lab = f"tn{PID}"
    try:
        res, results = run_scenario("needsgc", lab, env=env)
        assert res.returncode == 2, res.stdout + res.stderr
        r = results[0]
        assert not r["passed"] and "collector" in r["unavailable"] and "--no-gc" in r["unavailable"]
        assert [c["check"] for c in r["checks"]] == ["could run as designed"]   # run() never ran
        res = subprocess.run(["ctrack-lab", "run", "needsgc", "--name", lab], capture_output=True,
                             text=True, timeout=120, env=env)
        assert res.returncode == 2
        assert "COULD NOT RUN AS DESIGNED" in res.stdout and "DISAGREES" not in res.stdout
        assert "Traceback" not in res.stdout + res.stderr
    finally:
        Lab(lab).down()
    assert_clean(lab)


@pytest.mark.parametrize("argv,needle", [
    (["run", "nosuch"], "no scenario 'nosuch'"),
    (["run"], "name a scenario"),
])
def test_one_line_errors(argv, needle):
    res = subprocess.run(["ctrack-lab", *argv], capture_output=True, text=True, timeout=30)
    assert res.returncode == 1 and needle in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr

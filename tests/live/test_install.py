"""A non-editable install works without the checkout.

The project is installed with pip into a scratch directory (not editable: files copied, the C
programs, scenarios and delay line carried inside the package as ctrack/_data), then its tools
run from a directory outside the checkout with only that install on the path: `ctrack replay`
compiles kernel/tracker.c from the installed copy and judges a real capture, `ctrack-tcpstates`
loads its tracepoint program, and `ctrack-lab run --list` finds the scenarios.
"""
import json
import os
import subprocess
import sys

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from helpers import REPO

PY = "/usr/bin/python3"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("prefix")
    res = subprocess.run([PY, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                          "--break-system-packages", "--no-warn-script-location", "--target",
                          str(target), REPO], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return target


def run(installed, cwd, *argv, timeout=120):
    # Only the scratch install and Debian's dist-packages (BCC, scapy): the editable install of
    # the checkout, if any, stands behind PYTHONPATH and must not be the one imported.
    env = dict(os.environ, PYTHONPATH=str(installed), PATH=f"{installed}/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    for var in ("CTRACK_KERNEL_DIR", "CTRACK_SCENARIO_DIR", "CTRACK_LAB_BIN"):
        env.pop(var, None)
    return subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_package_carries_its_runtime_files(installed, tmp_path):
    res = run(installed, tmp_path, PY, "-c", "import ctrack, ctrack.resources as r; "
              "print(ctrack.__file__); print(r.KERNEL_DIR); print(r.SCENARIO_DIR); print(r.LAB_BIN)")
    assert res.returncode == 0, res.stderr
    module, kernel, scenarios, labbin = res.stdout.split()
    for path in (module, kernel, scenarios, labbin):
        assert path.startswith(str(installed) + "/"), (path, installed)
    # every program and header of the checkout's kernel/ (tcp_states.h, which ctrack.h and
    # observers.h both include, among them)
    ours = {f for f in os.listdir(os.path.join(REPO, "kernel")) if f.endswith((".c", ".h"))}
    assert {"tracker.c", "ctrack.h", "collector.c", "tcpstates.c", "tcp_states.h"} <= ours
    assert ours <= set(os.listdir(kernel)), ours - set(os.listdir(kernel))
    # tracker.c includes "lib/x.h": every header of the checkout's kernel/lib/ is carried
    assert set(os.listdir(os.path.join(kernel, "lib"))) == set(os.listdir(os.path.join(REPO, "kernel", "lib")))
    assert os.access(os.path.join(labbin, "delayline"), os.X_OK)


def test_replay_from_outside_the_checkout(installed, tmp_path):
    a, b = "10.9.0.1", "10.9.0.2"
    pkts = [Ether() / IP(src=a, dst=b) / TCP(sport=40000, dport=80, flags="S", seq=100),
            Ether() / IP(src=b, dst=a) / TCP(sport=80, dport=40000, flags="SA", seq=500, ack=101),
            Ether() / IP(src=a, dst=b) / TCP(sport=40000, dport=80, flags="A", seq=101, ack=501)]
    for i, p in enumerate(pkts):
        p.time = 1.0 + i / 1000
    wrpcap(str(tmp_path / "hs.pcap"), pkts)
    res = run(installed, tmp_path, str(installed / "bin" / "ctrack"), "replay", "--json", "hs.pcap")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert [p["flow"]["state"] for p in out["packets"]] == ["SYN_SENT", "SYN_RECV", "ESTABLISHED"]


def test_observer_and_lab_from_outside_the_checkout(installed, tmp_path):
    res = run(installed, tmp_path, str(installed / "bin" / "ctrack-tcpstates"), "-d", "1")
    assert res.returncode == 0, res.stderr
    # its tracepoint program loaded and ran: the header, then the closing count
    assert res.stdout.splitlines()[0].split()[:2] == ["SKADDR", "PID"], res.stdout
    assert "state change" in res.stderr, res.stderr
    res = run(installed, tmp_path, str(installed / "bin" / "ctrack-lab"), "run", "--list")
    assert res.returncode == 0, res.stderr
    assert "iperf3-tcp" in res.stdout and "socat-udp" in res.stdout

"""A tool on a machine that lacks something prints one line saying what and how to fix it, and
exits non-zero, without a traceback. Each lack is made real for one process only: a private
mount namespace hides the header tree or tracefs, setpriv drops BPF capabilities."""
import os
import platform
import subprocess

import pytest


CAP = "/tmp/ctrack-preflight.pcap"


@pytest.fixture(scope="module", autouse=True)
def capture():
    from scapy.all import Ether, IP, TCP, wrpcap
    wrpcap(CAP, [Ether() / IP(src="10.1.0.1", dst="10.2.0.2") / TCP(flags="S")])
    yield
    os.unlink(CAP)


def one_line_failure(res, needle):
    assert res.returncode != 0
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln]
    assert len(lines) == 1, res.stderr
    assert needle in lines[0], lines[0]


def in_private_mounts(script):
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60)


def test_no_header_tree():
    kdir = f"/lib/modules/{platform.release()}"
    res = in_private_mounts(f"mount -t tmpfs none {kdir} && ctrack replay {CAP}")
    one_line_failure(res, "no kernel header tree")
    assert "make setup" in res.stderr


def test_no_bpf_permission():
    res = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-bpf,-sys_admin,-perfmon,-net_admin",
                          "ctrack", "replay", CAP], capture_output=True, text=True, timeout=60)
    one_line_failure(res, "bpf(2) is not permitted")


def test_not_root():
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          "ctrack", "replay", CAP], capture_output=True, text=True, timeout=60)
    one_line_failure(res, "must run as root")


def test_no_tracefs():
    res = in_private_mounts("mount -t tmpfs none /sys/kernel/tracing; "
                            "mount -t tmpfs none /sys/kernel/debug; ctrack-tcpstates -d 1")
    one_line_failure(res, "tracefs")

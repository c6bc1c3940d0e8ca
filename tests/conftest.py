"""The suite's layout, the BPF marker, and shared fixtures.

Tests are grouped by what they test:
  unit/     no root, no BPF: header parsing, the pcap reader, the report's alignment, ...
  tracker/  the tracker's programs through BPF_PROG_TEST_RUN, by topic (TCP states, parsing,
            ICMP, captures, properties, builds, the TC entry, ...)
  live/     running trackers and tools: `ctrack run`, the collector, list/events, top, metrics,
            the observers, ctrack-report, preflight, the non-editable install
  lab/      the namespace labs, their scenarios and delay line
Helpers shared by the groups are the `helpers` package (tests/helpers/).

Every test under tracker/, live/ and lab/ carries the `bpf` marker (so does any test marked
@pytest.mark.bpf elsewhere). Where BPF cannot be used (not root, no bpf(2), BCC missing: probed
once with ctrack.bpf.preflight) those tests are skipped with the preflight's reason instead of
erroring; `-m "not bpf"` selects the rest.

Fixtures: real trackers compiled once per configuration per test session and reset between
tests (helpers/replayers.py), and a scapy-based conversation builder (helpers/wire.py)."""
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ctrack.bpf import preflight  # noqa: E402
from ctrack.errors import CtrackError  # noqa: E402
from helpers.replayers import close_all, get_replayer  # noqa: E402

BPF_GROUPS = ("tracker", "live", "lab")
_TESTS = os.path.dirname(os.path.abspath(__file__))
_bpf_unavailable = []     # [reason] once probed, [] when BPF is usable


def bpf_unavailable():
    """Why this process cannot load BPF programs, or None; probed once (the same checks every
    ctrack tool runs first: root, bpf(2), BCC, a header tree)."""
    if not _bpf_unavailable:
        try:
            preflight.require_root()
            preflight.require_bpf_syscall()
            preflight.require_bcc()
            preflight.require_headers()
            _bpf_unavailable.append(None)
        except CtrackError as exc:
            _bpf_unavailable.append(f"BPF unavailable: {exc}")
    return _bpf_unavailable[0]


def pytest_configure(config):
    config.addinivalue_line("markers", "bpf: loads BPF programs (needs root and bpf(2)); skipped "
                            "with the reason where BPF is unavailable")


def pytest_collection_modifyitems(config, items):
    for item in items:
        rel = os.path.relpath(str(item.fspath), _TESTS)
        if rel.split(os.sep)[0] in BPF_GROUPS:
            item.add_marker(pytest.mark.bpf)
    reason = bpf_unavailable() if any(item.get_closest_marker("bpf") for item in items) else None
    if reason:
        skip = pytest.mark.skip(reason=reason)
        for item in items:
            if item.get_closest_marker("bpf"):
                item.add_marker(skip)


@pytest.fixture
def replayer():
    """Factory fixture: replayer(policy="enforce", pickup=True, ...)."""
    return get_replayer


@pytest.fixture
def rp():
    """The default tracker: observe, no pickup, default timeouts."""
    return get_replayer()


# Names the suite gives its labs: t/rt, an optional letter, digits from the pytest pid.
TEST_LAB_NAME = re.compile(r"^(t[a-z]?|rt)(\d{1,6})$")


def _running_pytest_tags():
    """The name tags (the pid modulo a power of ten) of the other pytest sessions alive now."""
    tags = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"pytest" not in f.read():
                    continue
        except OSError:
            continue
        # the suite's names carry pid % 1000, 10000 or 100000 (then maybe a counter)
        tags.update(str(int(pid) % 10 ** k) for k in (3, 4, 5))
    return tags


def pytest_sessionstart(session):
    """Clear what an interrupted earlier run (killed, so its finalizers never ran) left behind:
    its labs, by the suite's naming, and its trackers' pins and filters. ctrack itself removes
    a dead tracker's leftovers at the next start, with a notice; doing it once here keeps that
    notice out of some test's output. (Nothing to clear, and no right to, without BPF.)"""
    if bpf_unavailable():
        return
    from ctrack.lab import state
    from ctrack.live import pins
    from ctrack.lab.core import Lab
    running = _running_pytest_tags()
    for name in state.list_names():
        m = TEST_LAB_NAME.match(name)
        # another pytest session running at the same time (a second checkout) owns its labs
        if m and not any(m.group(2).startswith(t) for t in running):
            print(f"conftest: removing lab {name!r} left by an earlier run", file=sys.stderr)
            Lab.attach(name).down()
    try:
        pins.running()
    except OSError:
        pass


def pytest_sessionfinish(session, exitstatus):
    close_all()

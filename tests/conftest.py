"""Shared fixtures: real trackers compiled once per configuration per test session, maps reset
between tests, and a scapy-based conversation builder (tests/wire.py)."""
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ctrack.engine.tracker import Tracker, TrackerConfig  # noqa: E402
from ctrack.engine.replay import Replayer  # noqa: E402

_trackers = {}


def get_replayer(entry="ct_xdp", **cfg):
    """A Replayer on a tracker built with these TrackerConfig fields (replay=True), compiled
    once per session and reset (empty table, zero statistics) on every call. entry: ct_xdp or
    ct_tc, the entry point the frames run through."""
    cfg.setdefault("replay", True)
    if "timeouts" in cfg and isinstance(cfg["timeouts"], dict):
        cfg["timeouts"] = tuple(sorted(cfg["timeouts"].items()))
    config = TrackerConfig(**cfg)
    if config not in _trackers:
        _trackers[config] = Replayer(Tracker(config))
    if entry != "ct_xdp":
        key = (config, entry)
        if key not in _trackers:
            _trackers[key] = Replayer(_trackers[config].tracker, entry)
        config = key
    rp = _trackers[config]
    rp.tracker.reset()
    rp.now_ns = 0
    rp.ended = []
    return rp


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
    notice out of some test's output."""
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
    for r in {id(r.tracker): r for r in _trackers.values()}.values():
        r.tracker.close()
    _trackers.clear()

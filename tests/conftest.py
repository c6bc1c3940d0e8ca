"""Shared fixtures: real trackers compiled once per configuration per test session, maps reset
between tests, and a scapy-based conversation builder (tests/wire.py)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ctrack.tracker import Tracker, TrackerConfig  # noqa: E402
from ctrack.replay import Replayer  # noqa: E402

_trackers = {}


def get_replayer(**cfg):
    """A Replayer on a tracker built with these TrackerConfig fields (replay=True), compiled
    once per session and reset (empty table, zero statistics) on every call."""
    cfg.setdefault("replay", True)
    if "timeouts" in cfg and isinstance(cfg["timeouts"], dict):
        cfg["timeouts"] = tuple(sorted(cfg["timeouts"].items()))
    config = TrackerConfig(**cfg)
    if config not in _trackers:
        tracker = Tracker(config)
        _trackers[config] = Replayer(tracker)
    rp = _trackers[config]
    rp.tracker.reset()
    rp.now_ns = 0
    return rp


@pytest.fixture
def replayer():
    """Factory fixture: replayer(policy="enforce", pickup=True, ...)."""
    return get_replayer


@pytest.fixture
def rp():
    """The default tracker: observe, no pickup, default timeouts."""
    return get_replayer()


def pytest_sessionfinish(session, exitstatus):
    for r in _trackers.values():
        r.tracker.close()
    _trackers.clear()

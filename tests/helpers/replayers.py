"""Real trackers for BPF_PROG_TEST_RUN tests: compiled once per configuration per test session
(BCC compiles cost seconds), reset (empty table, zero statistics) for every test."""
from ctrack.engine.replay import Replayer
from ctrack.engine.tracker import Tracker, TrackerConfig

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


def close_all():
    for r in {id(r.tracker): r for r in _trackers.values()}.values():
        r.tracker.close()
    _trackers.clear()

"""Every build of the tracker loads: each -D flag combination a command line can produce.

The kernel verifies the tracker path by path, up to 1,000,000 processed instructions, and the
count moves chaotically with small changes (a flag that removes code can add paths elsewhere).
The replay and live tests load only the builds they use; this loads the others too, so a change
that pushes one configuration past the limit fails here, by name, instead of in a user's hands.
"""
import pytest

from ctrack.engine.tracker import Tracker, TrackerConfig

BUILDS = {
    "replay": dict(replay=True),
    "replay-enforce-pickup": dict(replay=True, policy="enforce", pickup=True),
    "replay-no-rtt-no-synopts": dict(replay=True, rtt=False, synopts=False),
    "replay-no-zeek": dict(replay=True, zeek=False),
    "replay-no-rtt-no-zeek": dict(replay=True, rtt=False, zeek=False),
    "live-observe": dict(),
    "live-enforce-wire": dict(policy="enforce", redirect=(1, 2)),
    "live-enforce-wire-no-zeek": dict(policy="enforce", redirect=(1, 2), zeek=False),
    "live-no-rtt-no-zeek": dict(rtt=False, zeek=False),
    "live-xdp-frags-enforce-pickup": dict(xdp_frags=True, policy="enforce", pickup=True),
    "live-xdp-frags-no-zeek": dict(xdp_frags=True, zeek=False),
    "live-tc-egress-no-events": dict(tc_egress=True, events=False),
    "live-tc-egress-no-zeek": dict(tc_egress=True, zeek=False),
}


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_build_loads_in_both_hooks(name):
    with Tracker(TrackerConfig(**BUILDS[name])) as t:
        assert t.fn("ct_xdp").fd >= 0
        assert t.fn("ct_tc").fd >= 0


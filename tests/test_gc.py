"""The collector against a real `ctrack run` in a real lab: idle flows leave without a packet,
live flows are never removed (traffic racing a collector that runs 20 times a second),
`ctrack gc` on its own and once, one collector per tracker."""
import json
import subprocess
import time

import pytest

from live_helpers import make_lab, trackers, udp_echo, udp_send, wait_for  # noqa: F401

from ctrack.shared import Shared


@pytest.fixture(scope="module")
def lab(make_lab):  # noqa: F811
    return make_lab("tg")


def gc_totals(name):
    with Shared.open(name) as sh:
        return sh.gc_totals(), sh.stats()


def test_idle_flow_removed_without_a_packet(lab, trackers):  # noqa: F811
    t = trackers(lab, "tg1", ["--timeout", "UDP_NEW=2", "--timeout", "UDP_ESTABLISHED=3",
                              "--gc-interval", "0.3"])
    try:
        echo = udp_echo(lab, 7601, lifetime=3)
        try:
            assert udp_send(lab, 7601, sport=40601) == 1    # answered: ESTABLISHED, 3 s
        finally:
            echo.stop()
        last_est = time.monotonic()                          # its last packet was before this
        udp_send(lab, 7602, sport=40602, echo=False)         # unanswered: NEW, 2 s
        last_new = time.monotonic()
        both = t.flows("-p", "udp")
        assert sorted(f["state"] for f in both) == ["ESTABLISHED", "NEW"]
        # no packet of either flow after this: the collector alone must remove them, not
        # before their timeouts, and soon after (a collector interval, plus `list`'s own time)
        gone_new = wait_for(lambda: not t.flows("--dport", "7602", "--all"), 6, 0.05)
        t_new = time.monotonic() - last_new
        gone_est = wait_for(lambda: not t.flows("--dport", "7601", "--all"), 6, 0.05)
        t_est = time.monotonic() - last_est
        assert gone_new and gone_est
        assert 1.8 < t_new < 4.0 and 2.8 < t_est < 5.5, (t_new, t_est)
        ends = wait_for(lambda: [e for e in t.events_printed() if e["type"] == "closed"
                                 and e["orig"]["dport"] in (7601, 7602)], 2)
        assert sorted((e["orig"]["dport"], e["reason"], e["state"]) for e in ends) == \
            [(7601, "timeout", "ESTABLISHED"), (7602, "timeout", "NEW")]
        assert [e["packets"] for e in ends if e["orig"]["dport"] == 7601] == [[1, 1]]
        g, st = gc_totals(t.name)
        assert g["removed"] >= 2 and g["timeouts"] >= 2 and g["revived"] == 0
        assert st["closed_timeout"] >= 2   # counted in the tracker's own statistics
        # a second collector for the same tracker is refused, in one line
        res = t.ctrack("gc", check=False, timeout=10)
        assert res.returncode == 1 and "already has a collector" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    finally:
        rc, out, err = t.stop()
    assert rc == 0, err


def test_collector_never_removes_a_live_flow(lab, trackers):  # noqa: F811
    """20 UDP flows, a datagram each way every ~0.7 s for 5 s, against a 1 s timeout and a
    collector asked for 20 passes a second: each entry spends a third of its life within 0.3 s
    of expiring while the collector looks at it again and again. Every flow keeps one entry
    from its first packet to its last (exact packet counts, one NEW, no CLOSED while alive),
    then leaves by timeout."""
    t = trackers(lab, "tg2", ["--timeout", "UDP_NEW=1", "--timeout", "UDP_ESTABLISHED=1",
                              "--gc-interval", "0.05"])
    try:
        rounds, nflows = 8, 20
        echo = udp_echo(lab, 7701, lifetime=4)
        try:
            got = udp_send(lab, 7701, count=rounds, gap=0.7, sport=41000, nflows=nflows)
        finally:
            echo.stop()
        assert got == rounds * nflows   # every echo came back: the tracker passed everything
        g, _ = gc_totals(t.name)
        assert g["scans"] > 25   # the collector really raced the traffic

        def closed():
            ends = [e for e in t.events_printed() if e["orig"]["dport"] == 7701
                    and e["type"] == "closed"]
            return ends if len(ends) >= nflows else None
        ends = wait_for(closed, 5)
        assert ends, t.events_printed()[-5:]
        evs = [e for e in t.events_printed() if e["orig"]["dport"] == 7701]
        # per flow: one NEW, then one CLOSED (timeout, after the traffic) carrying every packet
        # of the flow -- a removal while it was alive would show as a second NEW and a CLOSED
        # with fewer packets
        for i in range(nflows):
            mine = [e["type"] for e in evs if e["orig"]["sport"] == 41000 + i and e["type"] != "state"]
            assert mine == ["new", "closed"], (i, mine)
        assert {e["reason"] for e in ends} == {"timeout"}
        assert all(e["packets"] == [rounds, rounds] for e in ends), [e["packets"] for e in ends]
        g, _ = gc_totals(t.name)
        assert g["revived"] == 0
    finally:
        rc, out, err = t.stop()
    assert rc == 0, err


def test_gc_command_with_no_gc_tracker(lab, trackers):  # noqa: F811
    t = trackers(lab, "tg3", ["--timeout", "UDP_NEW=2", "--no-gc"])
    try:
        udp_send(lab, 7801, sport=40801, nflows=3, echo=False)
        sent = time.monotonic()
        assert len(t.flows("--dport", "7801")) == 3
        time.sleep(max(0.0, 2.3 - (time.monotonic() - sent)))
        # expired: absent for `list`, still in the table (no collector, no packet)
        assert t.flows("--dport", "7801") == []
        assert len(t.flows("--dport", "7801", "--all")) == 3
        res = t.ctrack("gc", "--once", "--json", "-v")
        r = json.loads(res.stdout)
        assert r["removed"] == 3 and r["reported"] == 3
        assert sorted(f["orig"]["sport"] for f in r["flows"]) == [40801, 40802, 40803]
        assert all(f["reason"] == "timeout" and f["reported"] for f in r["flows"])
        assert t.flows("--dport", "7801", "--all") == []
        # the standalone collector: runs, removes, stops with Ctrl-C
        gc = subprocess.Popen(["ctrack", "gc", "--name", t.name, "--interval", "0.2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.0)
            udp_send(lab, 7802, sport=40810, echo=False)
            assert wait_for(lambda: not t.flows("--dport", "7802", "--all"), 5, 0.1)
        finally:
            gc.send_signal(2)
            out, err = gc.communicate(timeout=10)
        assert gc.returncode == 0, err
        assert "removed 1 expired (1 reported closed: timeout)" in out
    finally:
        rc, out, err = t.stop()
    assert rc == 0, err

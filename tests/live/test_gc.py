"""The collector against a real `ctrack run` in a real lab: idle flows leave without a packet,
live flows are never removed (traffic racing a collector that runs 20 times a second),
`ctrack gc` on its own and once, one collector per tracker. And its compare-and-delete step on
a pinned tracker fed crafted frames: a flow a packet revalidated between the scan and the
removal survives, an entry another remover claimed is left to it, each entry's DESTROY once.

The collector uses only program types the tracker itself needs (batch lookups, an XDP program
run with BPF_PROG_TEST_RUN): these tests run as they are on kernels that refuse tracing programs."""
import contextlib
import json
import os
import subprocess
import time

import pytest

from helpers.live import make_lab, trackers, udp_echo, udp_send, wait_for  # noqa: F401
from helpers.wire import Clock, TcpConv, udp_frame

from ctrack.live import pins
from ctrack.engine.events import EventReader
from ctrack.live.collector import Collector
from ctrack.live.maps import Shared
from ctrack.engine.tracker import kernel_now_ns


@pytest.fixture(scope="module")
def lab(make_lab):  # noqa: F811
    return make_lab("tg")


def gc_totals(name):
    with Shared.open(name) as sh:
        return sh.gc_totals(), sh.stats()


def test_idle_flow_removed_without_a_packet(lab, trackers):  # noqa: F811
    t = trackers(lab, "tg1", ["--timeout", "UDP_NEW=4", "--timeout", "UDP_ESTABLISHED=5",
                              "--gc-interval", "0.3"])
    try:
        # the banner says that a collector runs, and how
        assert "collector every 0.3 s at most (batch-lookup scan + XDP compare-and-delete)" \
            in t.stderr_head[-1], t.stderr_head
        echo = udp_echo(lab, 7601, lifetime=3)
        try:
            assert udp_send(lab, 7601, sport=40601) == 1    # answered: ESTABLISHED, 5 s
        finally:
            echo.stop()
        udp_send(lab, 7602, sport=40602, echo=False)         # unanswered: NEW, 4 s
        both = t.flows("-p", "udp")
        assert sorted(f["state"] for f in both) == ["ESTABLISHED", "NEW"]
        # no packet of either flow after this: the collector alone must remove them, not
        # before their timeouts, and soon after
        assert wait_for(lambda: not t.flows("--dport", "7602", "--all"), 12, 0.05)
        assert wait_for(lambda: not t.flows("--dport", "7601", "--all"), 12, 0.05)
        ends = wait_for(lambda: [e for e in t.events_printed() if e["type"] == "destroy"
                                 and e["orig"]["dport"] in (7601, 7602)], 2)
        assert sorted((e["orig"]["dport"], e["reason"], e["state"]) for e in ends) == \
            [(7601, "timeout", "ESTABLISHED"), (7602, "timeout", "NEW")]
        # idle time of each, on the tracker's clock (events carry it): from the flow's last
        # packet (NEW's event; the reply's, ESTABLISHED) to its DESTROY. At least the timeout,
        # less a jiffy of the coarse clock the tracker stamps entries with; at most the timeout
        # plus the collector's longest wait when quiet (4 x 0.3 s) and the pass itself.
        evs = t.events_printed()
        last = {7602: [e for e in evs if e["orig"]["dport"] == 7602 and e["type"] == "new"][-1],
                7601: [e for e in evs if e["orig"]["dport"] == 7601 and e["state"] == "ESTABLISHED"
                       and e["type"] == "state"][-1]}
        for e in ends:
            port, timeout = e["orig"]["dport"], {7602: 4, 7601: 5}[e["orig"]["dport"]]
            idle = (e["ts_ns"] - last[port]["ts_ns"]) / 1e9
            assert timeout - 0.02 < idle < timeout + 1.5, (port, idle)
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
                    and e["type"] == "destroy"]
            return ends if len(ends) >= nflows else None
        ends = wait_for(closed, 5)
        assert ends, t.events_printed()[-5:]
        evs = [e for e in t.events_printed() if e["orig"]["dport"] == 7701]
        # per flow: one NEW, then one DESTROY (timeout, after the traffic) carrying every packet
        # of the flow -- a removal while it was alive would show as a second NEW and a DESTROY
        # with fewer packets
        for i in range(nflows):
            mine = [e["type"] for e in evs if e["orig"]["sport"] == 41000 + i and e["type"] != "state"]
            assert mine == ["new", "destroy"], (i, mine)
        assert {e["reason"] for e in ends} == {"timeout"}
        assert all(e["packets"] == [rounds, rounds] for e in ends), [e["packets"] for e in ends]
        g, _ = gc_totals(t.name)
        assert g["revived"] == 0
    finally:
        rc, out, err = t.stop()
    assert rc == 0, err


def test_gc_command_with_no_gc_tracker(lab, trackers):  # noqa: F811
    t = trackers(lab, "tg3", ["--timeout", "UDP_NEW=5", "--no-gc"])
    try:
        assert "no collector (--no-gc)" in t.stderr_head[-1], t.stderr_head
        udp_send(lab, 7801, sport=40801, nflows=3, echo=False)
        sent = time.monotonic()
        assert len(t.flows("--dport", "7801")) == 3
        time.sleep(max(0.0, 5.3 - (time.monotonic() - sent)))
        # expired: absent for `list`, still in the table (no collector, no packet)
        assert t.flows("--dport", "7801") == []
        assert len(t.flows("--dport", "7801", "--all")) == 3
        res = t.ctrack("gc", "--once", "--json", "-v")
        r = json.loads(res.stdout)
        assert r["removed"] == 3 and r["reported"] == 3 and r["ended"] == 3
        assert sorted(f["orig"]["sport"] for f in r["flows"]) == [40801, 40802, 40803]
        assert all((f["type"], f["event"], f["reason"]) == ("destroy", "DESTROY", "timeout")
                   and f["reported"] for f in r["flows"])
        assert res.stderr == ""
        assert t.flows("--dport", "7801", "--all") == []
        res = t.ctrack("gc", "--once", "-v")   # -v says how it collects, on stderr
        assert res.stderr == "collector: batch-lookup scan + XDP compare-and-delete\n"
        assert res.stdout.startswith("scanned 0 entries")
        # the standalone collector: runs, removes, stops with Ctrl-C
        gc = subprocess.Popen(["ctrack", "gc", "--name", t.name, "--interval", "0.2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.0)
            udp_send(lab, 7802, sport=40810, echo=False)
            # expiry takes 5 s and each `ctrack list` opens the pins (BCC compiles: seconds under load)
            assert wait_for(lambda: not t.flows("--dport", "7802", "--all"), 20, 0.1)
        finally:
            gc.send_signal(2)
            out, err = gc.communicate(timeout=10)
        assert gc.returncode == 0, err
        assert "removed 1 expired (1 ended by timeout, 0 closed before)" in out
    finally:
        rc, out, err = t.stop()
    assert rc == 0, err


# ---- the compare-and-delete step, on a pinned tracker fed crafted frames ---------------------------

@contextlib.contextmanager
def pinned(replayer, name, **cfg):
    """A replay tracker (frames through BPF_PROG_TEST_RUN, on a clock we choose) pinned like
    `ctrack run` pins it, and a Shared view of it: what the collector works on."""
    rp = replayer(**cfg)
    pins.claim(name)
    sh = None
    try:
        meta = pins.publish(name, rp.tracker, {"interfaces": [], "wire": False, "mode": "test",
                                               "policy": "observe", "pickup": False, "timeouts": {},
                                               "table_size": 65536})
        sh = Shared(meta)
        yield rp, sh
    finally:
        if sh is not None:
            sh.close()
        pins.remove(name)


def tracker_clock(ago_s):
    """A frame clock that started ago_s seconds ago on the tracker's own clock (the collector
    compares with CLOCK_MONOTONIC_COARSE)."""
    return Clock(kernel_now_ns() - int(ago_s * 1e9))


def test_closed_flow_removed_by_timeout_is_destroyed_once(replayer):
    """A TCP connection closed by FIN: [UPDATE] reason=fin when it reaches TIME_WAIT; once its
    TIME_WAIT timeout passes, the collector removes the entry and reports [DESTROY]
    reason=timeout (before, the removal was silent). closed_fin counts the end, closed_timeout
    does not count it again; a second pass finds nothing."""
    with pinned(replayer, f"tgc{os.getpid() % 10000}a", timeouts={"TIME_WAIT": 5}) as (rp, sh):
        reader = EventReader(rp.tracker.bpf)
        reader.poll()
        clock = tracker_clock(30)
        conv = TcpConv(rp, clock=clock)
        conv.handshake()
        conv.c("FA"); conv.s("FA"); conv.c("A")          # TIME_WAIT, 30 s ago: expired
        live = TcpConv(rp, client=("10.1.0.9", 999), clock=Clock(kernel_now_ns()))
        live.handshake()                                 # this one is live
        assert "new" in [e["type"] for e in reader.poll()]
        gc = Collector(sh)
        r = gc.scan()
        assert (r.scanned, r.removed, r.reported, r.ended, r.live) == (2, 1, 1, 0, 1)
        evs = reader.poll()
        assert [(e["type"], e["event"], e["reason"], e["state"]) for e in evs] == \
            [("destroy", "DESTROY", "timeout", "TIME_WAIT")]
        assert evs[0]["packets"] == [4, 2] and r.flows[0]["packets"] == [4, 2]
        st, g = sh.stats(), sh.gc_totals()
        assert (st["closed_fin"], st["closed_timeout"]) == (1, 0)
        assert (g["scans"], g["scanned"], g["removed"], g["timeouts"]) == (1, 2, 1, 0)
        r = gc.scan()
        assert (r.removed, r.live) == (0, 1) and reader.poll() == []
        assert live.flow()["state"] == "ESTABLISHED"


def test_flow_revalidated_between_scan_and_removal_survives(replayer):
    """The scan sees an expired UDP flow; before the removal runs, a datagram of the same
    5-tuple reopens the entry as a new flow. The removal, checking under the lock that the
    entry is still the flow the scan saw (first_seen), leaves it: the new flow stays, and the
    old flow's DESTROY is reported once (by the packet, which reused the entry)."""
    with pinned(replayer, f"tgc{os.getpid() % 10000}b", timeouts={"UDP_NEW": 5}) as (rp, sh):
        reader = EventReader(rp.tracker.bpf)
        reader.poll()
        old = tracker_clock(30)
        rp.run(udp_frame("10.1.0.1", 4000, "10.2.0.2", 53), old.advance(0))
        gc = Collector(sh)
        now = kernel_now_ns()
        t = {}
        [(keys, firsts)] = [(k.copy(), f.copy()) for k, f in gc.candidates(now, totals=t)]
        assert t["scanned"] == 1 and t["live"] == 0 and len(keys) == 1   # a candidate
        rp.run(udp_frame("10.1.0.1", 4000, "10.2.0.2", 53), kernel_now_ns())   # revalidated
        res, _ = gc._remove(keys, firsts, gc.mode_gc, now)
        assert int(res[0]) == 0                                     # left alone
        assert len(sh.rows()) == 1 and sh.rows()[0][sh.layout.PKTS0] == 1   # the new flow
        evs = [(e["type"], e["reason"]) for e in reader.poll()]
        assert evs == [("new", None), ("destroy", "timeout"), ("new", None)]
        assert sh.gc_totals()["removed"] == 0


def test_entry_claimed_by_another_remover_is_left_to_it(replayer):
    """Two removers at once (a second collector, a flush): the entry's DYING flag, set under its
    lock by the first, makes the second leave it; and removing the same candidates twice
    reports each entry's DESTROY once."""
    # a tracker configuration of its own: one ring-buffer reader per tracker
    with pinned(replayer, f"tgc{os.getpid() % 10000}c", timeouts={"UDP_NEW": 6}) as (rp, sh):
        reader = EventReader(rp.tracker.bpf)
        clock = tracker_clock(30)
        for port in (4001, 4002):
            rp.run(udp_frame("10.1.0.1", port, "10.2.0.2", 53), clock.advance(0.001))
        reader.poll()
        a, b = Collector(sh), Collector(sh)
        now = kernel_now_ns()
        [(keys, firsts)] = [(k.copy(), f.copy()) for k, f in a.candidates(now)]
        assert len(keys) == 2
        # another remover's claim on the first entry, as its program leaves it between its
        # check and its delete
        k0 = sh.Key.from_buffer_copy(bytes(keys[0]))
        e0 = sh.flows[k0]
        e0.flags |= sh.defs.macros["CT_F_DYING"]
        sh.flows[k0] = e0
        res, _ = a._remove(keys, firsts, a.mode_gc, now)
        assert sorted(int(x) for x in res) == [0, a.R_REMOVED | a.R_ENDED]
        res, _ = b._remove(keys, firsts, b.mode_gc, now)    # the same candidates again
        assert [int(x) for x in res] == [0, 0]
        res, _ = b._remove(keys, firsts * 0, b.mode_flush, now)   # a flush of both
        assert sorted(int(x) for x in res) == [0, 0]               # claimed / already gone
        assert [e["type"] for e in reader.poll()] == ["destroy"]
        assert sh.gc_totals()["removed"] == 1


def test_candidates_beyond_what_one_run_handles_are_sent_again(replayer):
    """The XDP program says how many candidates of a test run it handled; more than that (a
    kernel whose test packet is smaller than assumed keeps the rest where the program does not
    look) are sent again, none silently left in the table."""
    with pinned(replayer, f"tgc{os.getpid() % 10000}d", timeouts={"UDP_NEW": 7}) as (rp, sh):
        clock = tracker_clock(30)
        for port in range(5000, 5100):
            rp.run(udp_frame("10.1.0.1", port, "10.2.0.2", 53), clock.advance(0.001))
        gc = Collector(sh)
        most = gc.per_run
        gc.per_run = 3 * most      # more than the program takes per run
        r = gc.scan(collect=False)
        assert (r.scanned, r.removed) == (100, 100) and sh.rows() == []
        assert gc.per_run == most


def test_timeout_destroy_carries_the_flow_rtt(replayer):
    """A TCP connection whose handshake the tracker timed (SYN -> SYN/ACK 3 ms, SYN/ACK -> ACK
    2 ms: both halves sampled), idle past its ESTABLISHED timeout: the collector's DESTROY
    reports the flow's RTT summary as the tracker's own end events do (kernel/rtt.h), in the
    ring buffer and in what `ctrack gc -v` prints. Before, the collector's DESTROY carried no RTT."""
    no_ts = [("MSS", 1460), ("SAckOK", b""), ("NOP", None), ("WScale", 7)]
    with pinned(replayer, f"tgc{os.getpid() % 10000}e", timeouts={"ESTABLISHED": 5}) as (rp, sh):
        reader = EventReader(rp.tracker.bpf)
        conv = TcpConv(rp, clock=tracker_clock(30))
        conv.c("S", options=no_ts, wait=0)
        conv.s("SA", options=no_ts, wait=0.003)
        conv.c("A", wait=0.002)
        rtt = conv.flow()["rtt"]
        want = {"handshake_us": 5000, "srtt_us": 5000, "min_us": 5000, "samples": 2}
        assert {k: rtt[k] for k in want} == want
        reader.poll()
        r = Collector(sh).scan()
        assert (r.removed, r.ended) == (1, 1)
        [ev] = reader.poll()
        assert (ev["type"], ev["reason"]) == ("destroy", "timeout")
        assert ev["rtt"] == want
        assert r.flows[0]["rtt"] == want


def test_flush_of_a_flow_without_rtt_reports_none(replayer):
    """A tracker built without passive RTT (CT_NO_RTT: the entry's rtt stays zero): the
    collector's DESTROY says no RTT, as the tracker's own end events would."""
    with pinned(replayer, f"tgc{os.getpid() % 10000}f", rtt=False) as (rp, sh):
        reader = EventReader(rp.tracker.bpf)
        conv = TcpConv(rp, clock=Clock(kernel_now_ns()))
        conv.handshake()
        reader.poll()
        r = Collector(sh).flush()
        [ev] = reader.poll()
        assert (ev["type"], ev["reason"]) == ("destroy", "flushed")
        none = {"handshake_us": None, "srtt_us": None, "min_us": None, "samples": 0}
        assert ev["rtt"] == none and r.flows[0]["rtt"] == none

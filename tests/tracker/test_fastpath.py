"""The established fast path (kernel/lib/fastpath.h) changes the cost, nothing else.

The same conversations run through two builds of the tracker, with the fast path and without it
(-DCT_NO_FASTPATH: every packet takes the general path), and after every packet the verdict,
the reason, the flow as the replay reports it and every byte of the flow table must be the same;
at the end, the statistics (but the fast path's own counter) and the records of ended flows.

The conversations are drawn by hypothesis: after a handshake (or none, picked up mid-stream),
segments of every kind the fast path must either take exactly as the general path does or leave
to it -- new data, pure ACKs, retransmissions, holes and what fills them, segments and ACKs
outside the windows, zero windows and window updates, FINs, RSTs in and out of the window, a
SYN inside the connection, idle gaps past the timeouts -- with TCP timestamps in the layouts
stacks use (Linux's NOP, NOP, TS; TS first; after SACK blocks; none), sequence numbers that
wrap. Each run also counts the packets the fast path took, so that a fast path that never ran
(and so could not differ) fails here too.

The replay builds read timestamps through the option walk only (lib/tcpopts.h); the live build's
in-place read of the common layout is checked against the walk at the end of this file.
"""
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ctrack.bpf.testrun import TestRunner as Runner
from ctrack.engine.defs import defs
from ctrack.engine.tracker import Tracker, TrackerConfig

from helpers.replayers import get_replayer
from helpers.wire import Clock, TcpConv, table

pytestmark = pytest.mark.bpf


class Recorder:
    """A Replayer stand-in for TcpConv that only records (frame, timestamp)."""

    def __init__(self):
        self.frames = []

    def run(self, frame, ts_ns, *a, **kw):
        self.frames.append((bytes(frame), ts_ns))


def ts_options(layout, tsval, tsecr):
    """A segment's options carrying timestamps in one of the layouts stacks send."""
    ts = ("Timestamp", (tsval & 0xFFFFFFFF, tsecr & 0xFFFFFFFF))
    return {"none": [],
            "linux": [("NOP", None), ("NOP", None), ts],                 # Linux, the BSDs
            "first": [ts, ("NOP", None), ("NOP", None)],                 # TS at offset 0
            "sack": [("NOP", None), ("NOP", None), ("SAck", (100, 200)),
                     ("NOP", None), ("NOP", None), ts]}[layout]


STEPS = st.sampled_from(["data", "data", "data", "ack", "ack", "rexmit", "hole", "far_seq",
                         "old_ack", "ahead_ack", "zero_win", "win_update", "fin", "rst_in",
                         "rst_out", "syn", "idle"])
LAYOUTS = st.sampled_from(["none", "linux", "linux", "first", "sack"])


@st.composite
def conversations(draw):
    """(frames, pickup): a conversation's frames with their times, and whether it needs pickup."""
    rec = Recorder()
    wrap = draw(st.booleans())
    conv = TcpConv(rec, cisn=(2**32 - 700) if wrap else 1000, sisn=5000, clock=Clock())
    tsclock = {conv.cli: 100, conv.srv: 9000}
    last_seen_ts = {conv.cli: 0, conv.srv: 0}
    pickup = draw(st.booleans())
    if pickup:
        # mid-stream: the segments before the capture started are not seen
        conv.cli.nxt += 10_000
        conv.srv.nxt += 20_000
    else:
        conv.handshake()
    for _ in range(draw(st.integers(3, 30))):
        sender = conv.cli if draw(st.booleans()) else conv.srv
        peer = conv.srv if sender is conv.cli else conv.cli
        step = draw(STEPS)
        if draw(st.integers(0, 3)):           # the TS clock ticks now and then
            tsclock[sender] += draw(st.integers(0, 3))
        opts = ts_options(draw(LAYOUTS), tsclock[sender], last_seen_ts[sender])
        last_seen_ts[peer] = tsclock[sender]
        n = draw(st.sampled_from([1, 100, 1400]))
        kw = dict(options=opts)
        if step == "data":
            conv.send(sender, "PA", b"d" * n, **kw)
        elif step == "ack":
            conv.send(sender, "A", **kw)
        elif step == "rexmit":
            back = draw(st.sampled_from([1, 100, 1400, 3000]))
            conv.send(sender, "PA", b"r" * n, seq=sender.nxt - back, advance=False, **kw)
        elif step == "hole":
            conv.send(sender, "PA", b"h" * n, seq=sender.nxt + 1000, **kw)
        elif step == "far_seq":
            conv.send(sender, "PA", b"f" * n, seq=sender.nxt + 50_000_000, advance=False, **kw)
        elif step == "old_ack":
            conv.send(sender, "A", ack=peer.nxt - 200_000, advance=False, **kw)
        elif step == "ahead_ack":
            conv.send(sender, "A", ack=peer.nxt + draw(st.sampled_from([10, 5000])), advance=False, **kw)
        elif step == "zero_win":
            conv.send(sender, "A", win=0, **kw)
        elif step == "win_update":
            conv.send(sender, "A", win=draw(st.sampled_from([1, 512, 65535])), **kw)
        elif step == "fin":
            conv.send(sender, "FA", **kw)
        elif step == "rst_in":
            conv.send(sender, "RA", advance=False)
        elif step == "rst_out":
            conv.send(sender, "R", seq=sender.nxt + 50_000_000, advance=False)
        elif step == "syn":
            conv.send(sender, "S", seq=sender.nxt + 77_777, advance=False)
        elif step == "idle":
            # past the UNACK timeout (300 s) or past SYN_SENT's and the closing states'
            conv.send(sender, "A", wait=draw(st.sampled_from([310.0, 130.0])), **kw)
    return rec.frames, pickup


def run_both(frames, **cfg):
    """Runs frames through the fast and the general build alike; returns the fast path's count."""
    fast = get_replayer(**cfg)
    slow = get_replayer(fastpath=False, **cfg)
    for i, (frame, ts) in enumerate(frames):
        a, b = fast.run(frame, ts), slow.run(frame, ts)
        assert (a.klass, a.reason, a.verdict, a.flow) == (b.klass, b.reason, b.verdict, b.flow), \
            f"packet {i}: the fast path judged it otherwise"
        assert table(fast) == table(slow), f"packet {i}: the fast path left another table"
    sa, sb = fast.tracker.stats(), slow.tracker.stats()
    took = sa.pop("fastpath")
    assert sb.pop("fastpath") == 0
    assert sa == sb
    assert [bytes(e) for e in fast.ended] == [bytes(e) for e in slow.ended]
    return took


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations())
def test_fast_path_changes_nothing(conv):
    frames, pickup = conv
    run_both(frames, pickup=pickup)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations())
def test_fast_path_changes_nothing_in_enforce_through_tc(conv):
    frames, pickup = conv
    run_both(frames, policy="enforce", pickup=pickup, entry="ct_tc")


def test_fast_path_takes_the_steady_segments():
    """A transfer in order, both ways, with timestamps: after the handshake and each side's first
    data and ACK (their first letters in Zeek's history), the fast path takes every segment, a
    retransmission too (Zeek's T counted there); a zero window and a FIN it leaves to the general
    path; and the results match the general build's."""
    rec = Recorder()
    conv = TcpConv(rec)
    conv.handshake()                                 # general path: 3
    opts = ts_options("linux", 7, 3)
    conv.c("PA", b"x" * 100, options=opts)           # the client's first D: general
    conv.s("A", options=opts)                        # the server's first A: general
    for _ in range(5):
        conv.c("PA", b"x" * 1000, options=opts)      # fast
        conv.s("A", options=opts)                    # fast
    conv.s("PA", b"y" * 10)                          # the server's first D: general
    conv.c("A")                                      # fast (the client's A was its third ACK)
    conv.c("PA", b"x" * 10, seq=conv.cli.nxt - 10, advance=False)   # T: fast (scaled letter)
    conv.s("A", win=0)                               # W: general
    conv.c("FA")                                     # general
    took = run_both(rec.frames)
    assert took == 10 + 1 + 1
    rp = get_replayer()
    for frame, ts in rec.frames:
        rp.run(frame, ts)
    (flow,) = rp.flows()
    assert flow["history"] == "ShADadTwF"


# ---- the in-place read of the timestamps, in every build ------------------------------------------

@pytest.mark.parametrize("layout", ["linux", "first", "sack"])
@pytest.mark.parametrize("build", ["live", "xdp-frags"])
def test_every_build_reads_the_timestamps_of_every_layout(layout, build):
    """NOP, NOP, TS is read in place and every other layout through the walk, in the default
    build and in `--mode xdp`'s multi-buffer one: each segment's TSval becomes the newest its
    side sent (ct_rtt.ts_max), whichever way it was read."""
    rec = Recorder()
    conv = TcpConv(rec)
    conv.handshake()
    for tsval in (1000, 1001, 1005):
        conv.c("PA", b"z" * 100, options=ts_options(layout, tsval, 1))
    with Tracker(TrackerConfig(xdp_frags=build == "xdp-frags")) as tr:
        xdp = Runner(tr.fn("ct_xdp").fd)
        for frame, _ in rec.frames:
            xdp.run(frame)
        (entry,) = tr.flows.values()
        orig = entry.rtt[0]   # the opener's side (enum ct_dir_index)
        assert orig.ts_max == 1005
        assert orig.flags & defs().macros["CT_RTT_F_TSVAL"]

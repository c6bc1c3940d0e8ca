"""Timeouts on the capture clock, UDP flows, the full-table policy and the event stream."""
import os
import signal

import pytest

from ctrack.engine.events import EventReader, format_event
from ctrack.live.stopsignal import StopOnSignal
from helpers.wire import Clock, TcpConv, states, udp_frame


def run_udp(rp, clock, src, dst, wait, payload=b"x"):
    return rp.run(udp_frame(src[0], src[1], dst[0], dst[1], payload), clock.advance(wait))


def test_established_flow_expires(replayer):
    rp = replayer(timeouts={"ESTABLISHED": 30})
    conv = TcpConv(rp)
    conv.handshake()
    assert conv.c("PA", b"x", wait=29).klass == "ESTABLISHED"
    conv.s("A", wait=1)
    r = conv.c("PA", b"late", wait=31)
    assert (r.klass, r.reason, r.flow) == ("INVALID", "tcp_no_flow", None)
    assert conv.flow() is None
    assert rp.tracker.stats()["closed_timeout"] == 1
    # an expired flow counts as absent: a new SYN starts over
    r = TcpConv(rp, cisn=7, clock=conv.clock).c("S")
    assert r.klass == "NEW"


def test_syn_sent_timeout_default_120s(rp):
    conv = TcpConv(rp)
    conv.c("S")
    assert conv.s("SA", wait=119).klass == "ESTABLISHED"


def test_syn_sent_expires_after_120s(rp):
    conv = TcpConv(rp)
    conv.c("S")
    r = conv.s("SA", wait=121)
    assert (r.klass, r.reason) == ("INVALID", "tcp_no_flow")


def test_time_wait_lasts_120s(rp):
    conv = TcpConv(rp)
    conv.handshake()
    conv.c("FA"); conv.s("FA"); conv.c("A")
    rp.now_ns = conv.clock.advance(119)
    assert conv.flow()["state"] == "TIME_WAIT"
    rp.now_ns = conv.clock.advance(2)
    assert conv.flow() is None


def test_unacknowledged_data_shortens_the_timeout(replayer):
    rp = replayer(timeouts={"UNACK": 10})
    conv = TcpConv(rp)
    conv.handshake()
    conv.c("PA", b"never acknowledged")
    r = conv.c("PA", b"again", wait=11)
    assert r.reason == "tcp_no_flow"
    # acknowledged data does not shorten it
    conv2 = TcpConv(rp, client=("10.1.0.9", 999), clock=conv.clock)
    conv2.handshake()
    conv2.c("PA", b"data")
    conv2.s("A")
    assert conv2.c("PA", b"later", wait=20).klass == "ESTABLISHED"


def test_udp_new_then_established(rp):
    clock = Clock()
    a, b = ("10.1.0.1", 5353), ("10.2.0.2", 53)
    r = run_udp(rp, clock, a, b, 0)
    assert (r.klass, r.flow) == ("NEW", {"state": "NEW", "orig_state": None, "reply_state": None})
    r = run_udp(rp, clock, a, b, 0.1)
    assert r.klass == "ESTABLISHED" and r.flow["state"] == "NEW"
    r = run_udp(rp, clock, b, a, 0.1, b"reply" * 10)
    assert r.klass == "ESTABLISHED" and r.flow["state"] == "ESTABLISHED"
    [f] = rp.flows()
    assert f["proto"] == "udp" and f["orig"] == {"src": "10.1.0.1", "sport": 5353, "dst": "10.2.0.2", "dport": 53}
    assert f["packets"] == [2, 1] and f["bytes"] == [2 * 29, 28 + 50]


def test_udp_timeouts(replayer):
    rp = replayer(timeouts={"UDP_NEW": 5, "UDP_ESTABLISHED": 20})
    clock = Clock()
    a, b = ("10.1.0.1", 1000), ("10.2.0.2", 2000)
    run_udp(rp, clock, a, b, 0)
    assert run_udp(rp, clock, a, b, 6).klass == "NEW"        # unreplied flow expired after 5 s
    run_udp(rp, clock, b, a, 1)
    assert run_udp(rp, clock, a, b, 19).klass == "ESTABLISHED"   # replied: 20 s
    assert run_udp(rp, clock, a, b, 21).klass == "NEW"
    assert rp.tracker.stats()["closed_timeout"] == 2


def test_udp_ipv6(rp):
    clock = Clock()
    a, b = ("fd00::1", 4000), ("fd00::2", 4001)
    run_udp(rp, clock, a, b, 0)
    r = run_udp(rp, clock, b, a, 0.1)
    assert r.flow["state"] == "ESTABLISHED"


def _fill(rp, n, clock, established=True):
    convs = []
    for i in range(n):
        conv = TcpConv(rp, client=("10.1.0.1", 10000 + i), clock=clock)
        if established:
            conv.handshake()
        else:
            conv.c("S")
        convs.append(conv)
    return convs


def test_full_table_refuses_new_flows_keeps_old(replayer):
    rp = replayer(table_size=4)
    clock = Clock()
    convs = _fill(rp, 4, clock)
    r = TcpConv(rp, client=("10.1.0.1", 20000), clock=clock).c("S")
    assert (r.klass, r.reason) == ("INVALID", "table_full")
    st = rp.tracker.stats()
    assert st["table_full"] == 1 and st["evicted"] == 0
    # every existing flow still gets the right verdict and states
    for conv in convs:
        r = conv.c("PA", b"still here")
        assert r.klass == "ESTABLISHED" and states(r)[0] == "ESTABLISHED"


def test_full_table_refused_in_enforce_is_dropped(replayer):
    rp = replayer(table_size=2, policy="enforce")
    clock = Clock()
    _fill(rp, 2, clock)
    r = TcpConv(rp, client=("10.1.0.1", 20000), clock=clock).c("S")
    assert (r.verdict, r.reason) == ("drop", "table_full")


def test_full_table_evicts_closing_flow_first(replayer):
    rp = replayer(table_size=4)
    clock = Clock()
    convs = _fill(rp, 4, clock)
    convs[2].c("FA")   # one flow starts closing: evictable
    new = TcpConv(rp, client=("10.1.0.1", 20000), clock=clock)
    assert new.c("S").klass == "NEW"
    assert rp.tracker.stats()["evicted"] == 1
    assert convs[2].flow() is None
    for i in (0, 1, 3):
        assert convs[i].flow()["state"] == "ESTABLISHED"


def test_full_table_evicts_unreplied_flow(replayer):
    rp = replayer(table_size=4)
    clock = Clock()
    convs = _fill(rp, 3, clock)
    syn_only = TcpConv(rp, client=("10.1.0.1", 15000), clock=clock)
    syn_only.c("S")
    assert TcpConv(rp, client=("10.1.0.1", 20000), clock=clock).c("S").klass == "NEW"
    assert syn_only.flow() is None
    assert all(c.flow()["state"] == "ESTABLISHED" for c in convs)


def test_full_table_evicts_expired_flow(replayer):
    rp = replayer(table_size=3, timeouts={"ESTABLISHED": 50})
    clock = Clock()
    convs = _fill(rp, 3, clock)
    convs[0].c("PA", b"x", wait=0)
    clock.advance(30)
    convs[1].c("PA", b"keep alive")
    convs[2].c("PA", b"keep alive")
    clock.advance(30)   # convs[0] idle 60 s > 50 s; the others 30 s
    # every key was queued at creation, convs[0]'s first: the new flow's insert fails, the queue
    # yields convs[0], which has expired, so it goes; the live flows stay
    reader = EventReader(rp.tracker.bpf)
    reader.poll()
    r = TcpConv(rp, client=("10.1.0.1", 20000), clock=clock).c("S")
    assert r.klass == "NEW"
    assert rp.tracker.stats()["evicted"] == 1
    # the evicted entry's DESTROY, with its last counters, before the new flow's NEW
    evs = reader.poll()
    assert [(e["type"], e["reason"]) for e in evs] == [("destroy", "evicted"), ("new", None)]
    assert evs[0]["orig"]["sport"] == convs[0].cli.port and evs[0]["packets"] == [3, 1]
    rp.now_ns = clock.now
    assert convs[0].flow() is None
    for c in convs[1:]:
        assert c.flow()["state"] == "ESTABLISHED"


def test_full_table_never_evicts_live_assured_flows(replayer):
    rp = replayer(table_size=3)
    clock = Clock()
    convs = _fill(rp, 3, clock)
    for i in range(10):   # many candidates offered, every queued key is live and assured
        r = TcpConv(rp, client=("10.1.0.1", 30000 + i), clock=clock).c("S")
        assert (r.klass, r.reason) == ("INVALID", "table_full")
    assert rp.tracker.stats()["evicted"] == 0
    assert all(c.flow()["state"] == "ESTABLISHED" for c in convs)


def test_flows_found_live_are_still_evicted_once_expired(replayer):
    """A refusal pops every queued live flow; they must stay reachable: once they expire, new
    flows evict them (before, the popped keys were dropped, and with no collector -- a replay --
    new flows were refused for good)."""
    rp = replayer(table_size=4, timeouts={"ESTABLISHED": 5}, policy="enforce")
    clock = Clock()
    _fill(rp, 4, clock)
    r = TcpConv(rp, client=("10.1.0.1", 20000), clock=clock).c("S")
    assert (r.reason, r.verdict) == ("table_full", "drop")
    clock.advance(20)                      # all four idle past their 5 s
    for i in range(4):
        r = TcpConv(rp, client=("10.9.0.1", 2000 + i), clock=clock).c("S")
        assert (r.klass, r.verdict) == ("NEW", "pass")
    assert rp.tracker.stats()["evicted"] == 4


def test_unanswered_picked_up_flows_are_evictable(replayer):
    """With --pickup one bare ACK creates a flow; until the other side answers it is not
    assured (netfilter), so spoofed ACKs cannot fill the table against real connections. An
    answered picked-up flow is assured and stays."""
    rp = replayer(table_size=4, pickup=True, policy="enforce")
    clock = Clock()
    lone = []
    for i in range(4):
        conv = TcpConv(rp, client=(f"6.6.6.{i}", 1000 + i), clock=clock)
        assert conv.c("A").klass == "NEW"
        lone.append(conv)
    for i in range(4):
        r = TcpConv(rp, client=("10.1.0.1", 40000 + i), clock=clock).c("S")
        assert (r.klass, r.verdict) == ("NEW", "pass")
    assert rp.tracker.stats()["evicted"] == 4

    rp = replayer(table_size=4, pickup=True, policy="enforce")
    clock = Clock()
    for i in range(4):
        conv = TcpConv(rp, client=(f"6.6.6.{i}", 1000 + i), clock=clock)
        conv.c("A")
        assert conv.s("A").klass == "ESTABLISHED"          # answered: assured
    r = TcpConv(rp, client=("10.1.0.1", 40000), clock=clock).c("S")
    assert (r.reason, r.verdict) == ("table_full", "drop")


def test_events_for_a_connection(rp):
    reader = EventReader(rp.tracker.bpf)
    reader.poll()
    conv = TcpConv(rp)
    conv.handshake()
    conv.c("FA"); conv.s("FA"); conv.c("A")
    evs = reader.poll()
    seen = [(e["type"], e["state"], e["reason"]) for e in evs]
    assert seen == [
        ("new", "SYN_SENT", None),
        ("state", "SYN_RECV", None),
        ("state", "ESTABLISHED", None),
        ("state", "FIN_WAIT", None),
        ("state", "LAST_ACK", None),
        ("state", "TIME_WAIT", None),
        ("closed", "TIME_WAIT", "fin"),
    ]
    assert evs[0]["orig"] == {"src": "10.1.0.1", "sport": 40000, "dst": "10.2.0.2", "dport": 80}
    assert evs[-1]["packets"] == [4, 2]


def test_events_are_returned_once_when_a_signal_lands_in_poll(replayer, monkeypatch):
    """Ctrl-C while BCC polls: a stop-flag handler gets the batch at once, a raising one (Ctrl-C's
    KeyboardInterrupt) at the next poll; never lost, never twice."""
    rp = replayer(timeouts={"CLOSE": 11})   # a tracker of its own: one ring-buffer reader each
    reader = EventReader(rp.tracker.bpf)
    reader.poll()
    real = rp.tracker.bpf.ring_buffer_poll

    def poll_interrupted(timeout):
        os.kill(os.getpid(), signal.SIGINT)
        return real(timeout)

    for handler, port in (("flag", 1001), ("raises", 1002)):
        TcpConv(rp, client=("10.1.0.1", port)).c("S")
        monkeypatch.setattr(rp.tracker.bpf, "ring_buffer_poll", poll_interrupted)
        got = []
        if handler == "flag":
            with StopOnSignal() as stop:
                got += reader.poll(0)
            assert stop()
        else:
            with pytest.raises(KeyboardInterrupt):
                reader.poll(0)
        monkeypatch.setattr(rp.tracker.bpf, "ring_buffer_poll", real)
        got += reader.poll(0)
        assert [(e["type"], e["orig"]["sport"]) for e in got] == [("new", port)], handler


def test_events_rst_and_timeout(replayer):
    rp = replayer(timeouts={"ESTABLISHED": 10})
    reader = EventReader(rp.tracker.bpf)
    reader.poll()
    a = TcpConv(rp)
    a.handshake()
    a.s("R", advance=False)
    b = TcpConv(rp, client=("10.1.0.1", 5555), clock=a.clock)
    b.handshake()
    b.c("S", seq=1, wait=11)     # after expiry: the old flow closes by timeout, a new one opens
    got = reader.poll()
    evs = [(e["type"], e["reason"]) for e in got]
    assert ("closed", "rst") in evs
    # the expired entry is reused by the new flow: DESTROY (timeout) of the old flow, with the
    # old flow's own state and counters, then NEW
    assert evs[-2:] == [("destroy", "timeout"), ("new", None)]
    assert (got[-2]["event"], got[-2]["state"], got[-2]["packets"]) == ("DESTROY", "ESTABLISHED", [2, 1])


def test_end_of_connection_is_an_update_and_the_entry_leaving_a_destroy(replayer):
    """conntrack's vocabulary: reaching TIME_WAIT is an UPDATE carrying reason=fin, and the
    entry stays (conntrack keeps it for its TIME_WAIT timeout); a SYN reusing the 5-tuple takes
    the entry: DESTROY reason=reopened with the old flow's final state and counters, then NEW."""
    rp = replayer(timeouts={"TIME_WAIT": 60})
    reader = EventReader(rp.tracker.bpf)
    reader.poll()
    conv = TcpConv(rp)
    conv.handshake()
    conv.c("FA"); conv.s("FA"); conv.c("A")
    end = reader.poll()[-1]
    assert (end["type"], end["event"], end["reason"], end["state"]) == ("closed", "UPDATE", "fin", "TIME_WAIT")
    line = format_event(end)
    assert line.split()[0] == "[UPDATE]" and "reason=fin" in line, line
    assert conv.flow()["state"] == "TIME_WAIT"           # still in the table
    again = TcpConv(rp, cisn=90000, clock=conv.clock)    # same 5-tuple, a new connection
    assert again.c("S").klass == "NEW"
    evs = reader.poll()
    assert [(e["type"], e["event"], e["reason"]) for e in evs] == \
        [("destroy", "DESTROY", "reopened"), ("new", "NEW", None)]
    assert (evs[0]["state"], evs[0]["packets"]) == ("TIME_WAIT", [4, 2])
    assert format_event(evs[0]).split()[0] == "[DESTROY]"
    assert rp.tracker.stats()["closed_fin"] == 1 and rp.tracker.stats()["reopened"] == 0


def test_expired_entry_a_packet_cannot_reopen_leaves_the_table(replayer):
    """A packet finding its flow expired that opens nothing (a bare ACK, no --pickup) removes the
    entry then and there: DESTROY timeout once, and nothing left for the collector to report."""
    rp = replayer(timeouts={"ESTABLISHED": 20})
    reader = EventReader(rp.tracker.bpf)
    reader.poll()
    conv = TcpConv(rp)
    conv.handshake()
    assert len(list(rp.tracker.flows.keys())) == 1
    r = conv.c("PA", b"late", wait=21)
    assert (r.klass, r.reason) == ("INVALID", "tcp_no_flow")
    assert list(rp.tracker.flows.keys()) == []          # gone, not left expired
    conv.c("PA", b"later")                              # no flow: nothing more to report
    evs = reader.poll()
    assert [(e["type"], e["reason"], e["state"]) for e in evs[-1:]] == [("destroy", "timeout", "ESTABLISHED")]
    assert sum(e["type"] == "destroy" for e in evs) == 1
    assert rp.tracker.stats()["closed_timeout"] == 1


def test_bytes_by_class(rp):
    conv = TcpConv(rp)
    conv.handshake()                       # SYN 60 (NEW), SYN/ACK 60 + ACK 40 (ESTABLISHED)
    conv.c("PA", b"x" * 100)               # 140 ESTABLISHED
    conv.c("PA", b"y", seq=conv.cli.nxt + 50_000_000, advance=False)   # 41 INVALID
    st = rp.tracker.stats()
    assert (st["bytes_class.new"], st["bytes_class.established"], st["bytes_class.invalid"]) == (60, 240, 41)

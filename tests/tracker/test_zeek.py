"""Zeek's conn_state and history, computed by the tracker from every packet of a flow.

Each case is a conversation crafted with scapy (tests/helpers/wire.py) and run through the real tracker;
the expected conn_state and history are worked out by hand from Zeek's rules (TCPSessionAdapter.cc
update_history / UpdateStateMachine, TCP_Endpoint::Size, main.zeek's conn_state), in the comment
of each case. Client 10.1.0.1:40000 (ISN 1000), server 10.2.0.2:80 (ISN 5000).

Letters: upper case from the originator, lower from the responder. S SYN, H SYN/ACK, A pure ACK,
D data, F FIN, R RST, I FIN+RST, Q SYN with FIN or RST (once each per direction; S/H/F/R again
when their sequence number changes); T retransmission, W zero window, G content gap (at the 1st,
10th, 100th... occurrence); ^ the roles were flipped (the first packet was a SYN/ACK).
"""
import json
import socket
import subprocess

import pytest

from ctrack.engine import zeek
from ctrack.engine.flows import format_flow_line
from helpers.wire import Clock, TcpConv, udp_frame

PICKUP = {"pickup": True}


def zeek_of(conv):
    """(conn_state, history, orig_bytes, resp_bytes) of the conversation's flow in the table."""
    for k, v in conv.rp.tracker.flows.items():
        d = zeek.decode(v.zeek, k.proto)
        return d["conn_state"], d["history"], d["orig_bytes"], d["resp_bytes"]
    return None


def close_both(c):
    """The 4-way close: client FIN, its ACK, server FIN, its ACK (letters F, f)."""
    c.c("FA"), c.s("A"), c.s("FA"), c.c("A")


# (name, replayer config, conversation, expected (conn_state, history, orig_bytes, resp_bytes))
def sf(c):
    # S h A D a d (A again: no letter) F (a again) f (A again): both CLOSED -> SF; sizes are the
    # sequence space each side used less SYN and FIN: 5 and 6 bytes
    c.handshake(); c.c("PA", b"hello"); c.s("A"); c.s("PA", b"world!"); c.c("A"); close_both(c)


def s0(c):
    # a SYN and its retransmission (same ISN: no second S); no answer -> orig SYN_SENT, resp
    # INACTIVE -> S0
    c.c("S"); c.c("S", seq=1000)


def rej(c):
    # S, then the responder's RST/ACK: resp INACTIVE -> RESET while orig is SYN_SENT -> REJ
    c.c("S"); c.s("RA", seq=0, ack=1001)


def s1(c):
    # S h A: both ESTABLISHED -> S1
    c.handshake()


def s2(c):
    # S h A, the originator's FIN: orig CLOSED, resp ESTABLISHED -> S2
    c.handshake(); c.c("FA")


def s3(c):
    # S h A, the responder's FIN: resp CLOSED, orig ESTABLISHED -> S3
    c.handshake(); c.s("FA")


def rsto(c):
    # S h A, the originator's RST: orig RESET, resp ESTABLISHED -> RSTO
    c.handshake(); c.c("RA")


def rstr(c):
    # S h A, the responder's RST: resp RESET, orig ESTABLISHED (not SYN_SENT) -> RSTR
    c.handshake(); c.s("RA")


def rstos0(c):
    # a SYN, then the originator's RST (seq ISN+1): orig RESET, resp INACTIVE, history S...R
    # matches main.zeek's /^\^?S[^HAFGIQ]*R/ -> RSTOS0
    c.c("S"); c.c("R", seq=1001)


def sh(c):
    # a SYN, then the originator's FIN (the tracker calls it tcp_unexpected; Zeek records it):
    # orig SYN_SENT -> CLOSED, resp INACTIVE -> SH
    c.c("S"); c.c("FA", seq=1001, ack=0)


def shr(c):
    # the first packet is a SYN/ACK (pickup): its receiver is the originator, ^ then h; the
    # responder's FIN: resp ESTABLISHED -> CLOSED, orig INACTIVE -> SHR
    c.s("SA", ack=1001); c.s("FA")


def rstrh(c):
    # a SYN/ACK first (^h), then the responder's RST: resp RESET, orig INACTIVE -> RSTRH
    c.s("SA", ack=1001); c.s("R")


def oth(c):
    # mid-stream (pickup): the client's data (D), the server's ACK (a); both PARTIAL -> OTH
    c.c("PA", b"abcd", seq=1001, ack=5001); c.s("A", ack=1005)


def flip_s1(c):
    # a SYN/ACK first (^h), then the client's ACK: the client, INACTIVE, acks a responder that
    # is ESTABLISHED -> ESTABLISHED (Zeek: "we just missed that initial SYN") -> S1
    c.s("SA", ack=1001); c.c("A", seq=1001)


def retransmissions(c):
    # S h A D, then the same 3 bytes sent again 10 times: T at the 1st and the 10th
    # retransmission; the server's ACK (a). orig_bytes 3
    c.handshake(); c.c("PA", b"abc")
    for _ in range(10):
        c.c("PA", b"abc", seq=1001)
    c.s("A")


def zero_window(c):
    # S h A, the server's pure ACK with window 0: a, then w (update_window after the history)
    c.handshake(); c.s("A", win=0)


def gap(c):
    # S h A, data 1001-1100 (D), data 1201-1300 (1101-1200 cut out of the capture), the server
    # acks 1301: a, then G -- the originator's content never seen, both ESTABLISHED. Size is
    # sequence space: 300
    c.handshake(); c.c("PA", b"x" * 100); c.c("PA", b"z" * 100, seq=1201); c.s("A", ack=1301)


def fin_rst(c):
    # S h A, then FIN+RST from the client (INVALID tcp_bad_flags for the tracker): I; the
    # RST makes orig RESET -> RSTO
    c.handshake(); c.c("FRA")


def syn_fin(c):
    # S h A, then SYN+FIN from the client: Q; the FIN closes orig (SYN in ESTABLISHED changes
    # nothing) -> S2
    c.handshake(); c.c("SF", seq=1001, options=[])


def fin_then_rst(c):
    # S h A D, the client's FIN (F), the server's ACK (a), then the server's RST (r): orig
    # CLOSED, resp RESET -> RSTR
    c.handshake(); c.c("PA", b"data"); c.c("FA"); c.s("A"); c.s("RA")


CASES = [
    ("SF", {}, sf, ("SF", "ShADadFf", 5, 6)),
    ("S0", {}, s0, ("S0", "S", 0, 0)),
    ("REJ", {}, rej, ("REJ", "Sr", 0, 0)),
    ("S1", {}, s1, ("S1", "ShA", 0, 0)),
    ("S2", {}, s2, ("S2", "ShAF", 0, 0)),
    ("S3", {}, s3, ("S3", "ShAf", 0, 0)),
    ("RSTO", {}, rsto, ("RSTO", "ShAR", 0, 0)),
    ("RSTR", {}, rstr, ("RSTR", "ShAr", 0, 0)),
    ("RSTOS0", {}, rstos0, ("RSTOS0", "SR", 0, 0)),
    ("SH", {}, sh, ("SH", "SF", 0, 0)),
    ("SHR", PICKUP, shr, ("SHR", "^hf", 0, 0)),
    ("RSTRH", PICKUP, rstrh, ("RSTRH", "^hr", 0, 0)),
    ("OTH", PICKUP, oth, ("OTH", "Da", 4, 0)),
    ("flip", PICKUP, flip_s1, ("S1", "^hA", 0, 0)),
    ("retransmissions", {}, retransmissions, ("S1", "ShADTTa", 3, 0)),
    ("zero-window", {}, zero_window, ("S1", "ShAaw", 0, 0)),
    ("gap", {}, gap, ("S1", "ShADaG", 300, 0)),
    ("fin+rst", {}, fin_rst, ("RSTO", "ShAI", 0, 0)),
    ("syn+fin", {}, syn_fin, ("S2", "ShAQ", 0, 0)),
    ("fin-then-rst", {}, fin_then_rst, ("RSTR", "ShADFar", 4, 0)),
]


@pytest.mark.parametrize("name, cfg, conv, want", CASES, ids=[c[0] for c in CASES])
def test_conn_state_and_history(replayer, name, cfg, conv, want):
    rp = replayer(**cfg)
    c = TcpConv(rp)
    conv(c)
    assert zeek_of(c) == want
    # the flow object (ctrack replay --json, ctrack list --json) carries the same two fields
    f = rp.flows()[0]
    assert (f["conn_state"], f["history"]) == want[:2]


def test_every_conn_state_is_covered():
    states = {c[3][0] for c in CASES} | {"SF", "S0", "SHR", "OTH"}   # UDP: test_udp below
    assert states == {"S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH",
                      "SH", "SHR", "OTH"}


def test_enforce_drops_yet_zeek_records(replayer):
    """An enforcing tracker drops the client's FIN in SYN_SENT (tcp_unexpected); Zeek's record
    of what crossed the wire still has it: SH, history SF (as in the observe case)."""
    rp = replayer(policy="enforce")
    c = TcpConv(rp)
    c.c("S")
    r = c.c("FA", seq=1001, ack=0)
    assert (r.verdict, r.reason) == ("drop", "tcp_unexpected")
    assert zeek_of(c)[:2] == ("SH", "SF")


def test_udp(rp):
    # one datagram each way: D then d, both ACTIVE -> SF; sizes are payload bytes
    clock = Clock()
    rp.run(udp_frame("10.1.0.1", 5353, "10.2.0.2", 53, b"query"), clock.advance(0.001))
    rp.run(udp_frame("10.2.0.2", 53, "10.1.0.1", 5353, b"answer!"), clock.advance(0.001))
    rp.run(udp_frame("10.1.0.1", 5353, "10.2.0.2", 53, b"q2"), clock.advance(0.001))
    (f,) = rp.flows()
    assert (f["conn_state"], f["history"]) == ("SF", "Dd")
    (row,) = rp.conn_rows()
    assert (row["orig_bytes"], row["resp_bytes"], row["orig_pkts"], row["resp_pkts"]) == (7, 7, 2, 1)
    # one way only: S0
    rp.run(udp_frame("10.3.0.1", 5000, "10.2.0.2", 53, b"x"), clock.advance(0.001))
    assert {(f["conn_state"], f["history"]) for f in rp.flows()} == {("SF", "Dd"), ("S0", "D")}


# ---- conn.log rows: one per connection over the whole capture -------------------------------------
def test_conn_row_fields(rp):
    c = TcpConv(rp)
    sf(c)
    (row,) = rp.conn_rows()
    assert list(row) == ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto",
                         "duration", "orig_bytes", "resp_bytes", "conn_state", "history",
                         "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes"]
    assert row["ts"] == c.sent[0][1].ts_ns / 1e9
    assert row["duration"] == pytest.approx(0.010)   # 11 packets, 1 ms apart
    assert (row["id.orig_h"], row["id.orig_p"], row["id.resp_h"], row["id.resp_p"]) == \
        ("10.1.0.1", 40000, "10.2.0.2", 80)
    assert (row["proto"], row["conn_state"], row["history"]) == ("tcp", "SF", "ShADadFf")
    assert (row["orig_bytes"], row["resp_bytes"]) == (5, 6)
    assert (row["orig_pkts"], row["resp_pkts"]) == (6, 5)
    # IP bytes: every packet's IP length (40-byte headers + 20 bytes of Linux SYN options)
    assert row["orig_ip_bytes"] == 60 + 40 * 4 + 45 and row["resp_ip_bytes"] == 60 + 40 * 3 + 46
    assert row["uid"].startswith("C") and len(row["uid"]) == 18


def test_single_packet_row_has_no_duration(rp):
    """Zeek's set_conn: duration, orig_bytes, resp_bytes only when the duration is positive."""
    TcpConv(rp).c("S")
    (row,) = rp.conn_rows()
    assert "duration" not in row and "orig_bytes" not in row
    assert (row["conn_state"], row["history"], row["orig_pkts"], row["resp_pkts"]) == ("S0", "S", 1, 0)


def test_invalid_packets_count_in_the_row(rp):
    """The tracker leaves INVALID packets out of its counters; conn.log counts every packet."""
    c = TcpConv(rp)
    c.c("S")
    c.c("FA", seq=1001, ack=0)   # tcp_unexpected in SYN_SENT
    (row,) = rp.conn_rows()
    f = rp.flows()[0]
    assert f["packets"] == [1, 0] and row["orig_pkts"] == 2
    assert row["orig_ip_bytes"] == f["bytes"][0] + 40


def test_reused_ports_give_two_rows(rp):
    """An SF connection, then a new SYN on the same 5-tuple (TIME_WAIT): two rows."""
    c = TcpConv(rp)
    sf(c)
    c2 = TcpConv(rp, cisn=90000, clock=c.clock)
    c2.handshake()
    rows = rp.conn_rows()
    assert [(r["conn_state"], r["history"]) for r in rows] == [("SF", "ShADadFf"), ("S1", "ShA")]
    assert rows[0]["uid"] != rows[1]["uid"]
    assert (rows[0]["orig_pkts"], rows[0]["resp_pkts"]) == (6, 5)


def test_restart_from_a_remembered_syn_gives_two_rows(rp):
    """An established connection; the client restarts (a SYN with a new ISN, remembered by the
    tracker) and the server answers it: the old connection ends (ShA), the new one starts from
    that SYN: S, then h, then A."""
    c = TcpConv(rp)
    c.handshake()
    c.c("S", seq=70000)
    c.s("SA", seq=80000, ack=70001)
    c.c("A", seq=70001, ack=80001)
    rows = rp.conn_rows()
    assert [(r["conn_state"], r["history"]) for r in rows] == [("S1", "ShA"), ("S1", "ShA")]


def test_expired_flow_gives_its_own_row(rp):
    """A UDP flow idle past its timeout: the next datagram opens a new connection."""
    clock = Clock()
    rp.run(udp_frame("10.1.0.1", 5353, "10.2.0.2", 53, b"a"), clock.advance(0.001))
    rp.run(udp_frame("10.2.0.2", 53, "10.1.0.1", 5353, b"b"), clock.advance(0.001))
    rp.run(udp_frame("10.1.0.1", 5353, "10.2.0.2", 53, b"c"), clock.advance(500))
    rows = rp.conn_rows()
    assert [(r["conn_state"], r["history"], r["orig_pkts"]) for r in rows] == \
        [("SF", "Dd", 1), ("S0", "D", 1)]


def test_evicted_flow_gives_its_own_row(replayer):
    """A one-entry table: a half-open connection is evicted for the next one; both have rows."""
    rp = replayer(table_size=1)
    a = TcpConv(rp)
    a.c("S")
    b = TcpConv(rp, client=("10.3.0.1", 3333), clock=a.clock)
    assert b.c("S").klass == "NEW"
    rows = rp.conn_rows()
    assert [(r["id.orig_h"], r["conn_state"], r["history"]) for r in rows] == \
        [("10.1.0.1", "S0", "S"), ("10.3.0.1", "S0", "S")]


def test_replay_o_zeek(tmp_path):
    """`ctrack replay -o zeek`: conn.log JSON lines, one per connection, by start time."""
    import shutil
    from test_cli_replay import Recorder, write_capture
    ctrack = shutil.which("ctrack")
    if not ctrack:
        pytest.skip("ctrack is not installed on PATH")
    rec, clock = Recorder(), Clock()
    sf(TcpConv(rec, clock=clock))
    rej(TcpConv(rec, client=("10.1.0.9", 41000), clock=clock))
    rec.run(udp_frame("10.1.0.1", 5353, "10.2.0.2", 53, b"q"), clock.advance(0.001))
    cap = write_capture(tmp_path / "z.pcap", rec.frames)
    r = subprocess.run([ctrack, "replay", "-o", "zeek", str(cap)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(x["proto"], x["conn_state"], x.get("history")) for x in rows] == \
        [("tcp", "SF", "ShADadFf"), ("tcp", "REJ", "Sr"), ("udp", "S0", "D")]
    assert rows[0]["ts"] < rows[1]["ts"] < rows[2]["ts"]


# ---- the build without Zeek's record (--no-zeek, -DCT_NO_ZEEK) -----------------------------------
NO_ZEEK_CASES = [c for c in CASES if c[0] in ("SF", "REJ", "RSTOS0", "flip", "retransmissions",
                                              "gap", "fin+rst")]


@pytest.mark.parametrize("name, cfg, conv, want", NO_ZEEK_CASES, ids=[c[0] for c in NO_ZEEK_CASES])
def test_no_zeek_build_judges_the_same_and_records_nothing(replayer, name, cfg, conv, want):
    """The same conversation through the default build and the --no-zeek build: every packet's
    class, reason and flow states alike (Zeek's record never changes a verdict); the no-zeek
    flow's record is all zeroes and its flow object says conn_state and history null."""
    seen = {}
    for on in (True, False):
        rp = replayer(zeek=on, **cfg)
        out = []
        clock = Clock()

        class Rec:   # every packet's verdict, as the conversation sends it
            def run(self, frame, ts_ns, *a, **kw):
                res = rp.run(frame, ts_ns, *a, **kw)
                out.append((res.klass, res.reason, res.verdict, res.flow))
                return res
        conv(TcpConv(Rec(), clock=clock))
        flows = rp.flows()
        seen[on] = (out, [{k: v for k, v in f.items() if k not in ("conn_state", "history")}
                          for f in flows])
        if on:
            assert (flows[0]["conn_state"], flows[0]["history"]) == want[:2]
        else:
            assert all(f["conn_state"] is None and f["history"] is None for f in flows)
            assert all(not zeek.kept(v.zeek) for v in rp.tracker.flows.values())
            assert "zeek=" not in format_flow_line(flows[0])
    assert seen[True] == seen[False]


def test_no_zeek_udp_and_events(replayer):
    """UDP alike; and the events (ctrack events, ctrack-top) of a no-zeek tracker carry
    conn_state and history null, their text no conn_state at all."""
    from ctrack.engine.events import EventReader, format_event
    rp = replayer(zeek=False)
    reader = EventReader(rp.tracker.bpf)
    reader.poll()   # what earlier users of this tracker left in the ring buffer
    c = Clock()
    rp.run(udp_frame("10.1.0.1", 5353, "10.2.0.2", 53, b"q"), c.advance(0.001))
    rp.run(udp_frame("10.2.0.2", 53, "10.1.0.1", 5353, b"a"), c.advance(0.001))
    f = rp.flows()[0]
    assert f["state"] == "ESTABLISHED" and f["conn_state"] is None and f["history"] is None
    tc = TcpConv(rp, clock=c)
    sf(tc)
    evs = reader.poll()
    assert {"new", "closed"} <= {e["type"] for e in evs}
    assert all(e["conn_state"] is None and e["history"] is None for e in evs)
    assert all("conn_state" not in format_event(e) for e in evs)


def test_no_zeek_rows_as_list_and_top_read_them(replayer):
    """ctrack list and ctrack-top decode the pinned table through RowLayout: a no-zeek tracker's
    rows give conn_state/history null and the ZEEK cell '-'; the default build's its letters."""
    from ctrack.engine.flowview import zeek_text
    from ctrack.live.maps import RowLayout
    cells = {}
    for on in (True, False):
        rp = replayer(zeek=on)
        s1(TcpConv(rp))
        t = rp.tracker.flows
        (k, v), = t.items()
        L = RowLayout(type(k), type(v))
        row, = L.rows(1, bytes(k), bytes(v))
        cells[on] = (L.zeek_of(row), zeek_text(L.zeek_of(row)))
    assert cells[True] == ({"conn_state": "S1", "history": "ShA"}, "S1 ShA")
    assert cells[False] == ({"conn_state": None, "history": None}, "-")

"""ctrack-report's comparison (ctrack/report/align.py): the mapping of Linux's tracepoint to the
tracker's vocabulary, the alignment, divergence windows, netfilter's consistency, the loss
classification. Pure functions on recorded data: no root, no BPF.

The kernel sequences below are what tcpstates printed in the lab (Linux 6.18, 10 ms each way),
times in ms from the connection's start; the simultaneous close is a real run's, verbatim."""
from ctrack.report import align
from ctrack.report.collect import decode_frame, parse_conntrack_line

C, S = "10.0.0.1", "10.0.0.2"
CP, SP = 49014, 7942
MS = 1_000_000


def kev(t_ms, sk, old, new, client=True, lport=None):
    """A tcpstates event of the client's (client=True) or the server's socket."""
    if client:
        l, lp, r, rp = C, CP if lport is None else lport, S, SP
    else:
        l, lp, r, rp = S, SP, C, CP
    return {"mono_ns": int(t_ms * MS), "skaddr": sk, "laddr": l, "lport": lp, "raddr": r, "rport": rp,
            "oldstate": old, "newstate": new}


def tev(t_ms, typ, state, o, r, reason=None, packets=(1, 1)):
    """A tracker event (ctrack run --json) of the connection C:CP > S:SP; packets: the counts
    each way after the packet that caused it."""
    return {"ts_ns": int(t_ms * MS), "type": typ, "proto": "tcp", "family": 4,
            "orig": {"src": C, "sport": CP, "dst": S, "dport": SP}, "state": state,
            "orig_state": o, "reply_state": r, "reason": reason, "packets": list(packets), "bytes": [1, 1]}


def pkt(t_ms, client, flags, seq, ack, length=0):
    src, sp, dst, dp = (C, CP, S, SP) if client else (S, SP, C, CP)
    return {"mono_ns": int(t_ms * MS), "src": src, "sport": sp, "dst": dst, "dport": dp, "proto": "tcp",
            "flags": flags, "seq": seq, "ack": ack, "len": length}


# ---- a real simultaneous close (both sockets shut down at one instant, 10 ms each way) -----------

SIM_KERNEL = [
    kev(2.848, "c", "CLOSE", "SYN_SENT", lport=0),      # connect(): port not chosen yet
    kev(24.018, "c", "SYN_SENT", "ESTABLISHED"),
    kev(35.110, "s", "LISTEN", "SYN_RECV", client=False),  # the accepted socket's birth
    kev(35.154, "s", "SYN_RECV", "ESTABLISHED", client=False),
    kev(324.323, "s", "ESTABLISHED", "FIN_WAIT1", client=False),
    kev(327.094, "c", "ESTABLISHED", "FIN_WAIT1"),
    kev(335.299, "c", "FIN_WAIT1", "CLOSING"),
    kev(335.652, "c", "CLOSING", "CLOSING"),             # close() after shutdown(): self-transition
    kev(337.827, "s", "FIN_WAIT1", "CLOSING", client=False),
    kev(337.921, "s", "CLOSING", "CLOSING", client=False),
    kev(347.108, "s", "CLOSING", "CLOSE", client=False),  # the timewait socket takes over
    kev(348.721, "c", "CLOSING", "CLOSE"),
]
# the tracker saw the server's FIN first: the client "CLOSE_WAIT" until its own FIN crossed it
SIM_TRACKER = [
    tev(0.0, "new", "SYN_SENT", "SYN_SENT", "SYN_RECV", packets=(1, 0)),
    tev(8.0, "state", "SYN_RECV", "ESTABLISHED", "SYN_RECV", packets=(1, 1)),
    tev(20.0, "state", "ESTABLISHED", "ESTABLISHED", "ESTABLISHED", packets=(2, 1)),
    tev(324.0, "state", "FIN_WAIT", "CLOSE_WAIT", "FIN_WAIT1", packets=(2, 2)),
    tev(327.0, "state", "LAST_ACK", "CLOSING", "CLOSING", packets=(3, 2)),
    tev(336.0, "state", "TIME_WAIT", "TIME_WAIT", "TIME_WAIT", packets=(4, 3)),
    tev(336.0, "closed", "TIME_WAIT", "TIME_WAIT", "TIME_WAIT", "fin", packets=(4, 3)),
]
SIM_PACKETS = [
    pkt(3.187, True, "S", 1000, 0), pkt(13.431, False, "SA", 5000, 1001), pkt(24.067, True, "A", 1001, 5001),
    pkt(324.398, False, "FA", 5001, 1001), pkt(327.130, True, "FA", 1001, 5001),
    pkt(335.332, True, "A", 1002, 5002), pkt(337.868, False, "A", 5002, 1002),
]


def record(kernel, tracker, packets=(), **kw):
    rec = {"tracker_events": tracker, "kernel_events": kernel, "packets": list(packets), "ports": [SP],
           "delay_ms": 10, "end_ns": 400 * MS, "nf_events": None, "tracker_clock_lag_ms": 20}
    rec.update(kw)
    return rec


def test_simultaneous_close_agrees_after_mapping():
    a = align.analyse(record(SIM_KERNEL, SIM_TRACKER, SIM_PACKETS))
    assert a["connections"] == 1 and a["state_agreement_pct"] == 100.0
    assert a["disagreements"] == []
    conn = a["connections_detail"][0]
    assert conn["endpoints"]["opener"]["kernel"] == ["SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "CLOSING", "TIME_WAIT"]
    assert conn["endpoints"]["opener"]["tracker"] == ["SYN_SENT", "ESTABLISHED", "CLOSE_WAIT", "CLOSING", "TIME_WAIT"]
    assert {"self-transition", "timewait-takeover", "listener-clone", "connect-port-0",
            "crossed-fin"} <= set(a["mapping_rules"])
    # the provisional CLOSE_WAIT is not hidden: it is a divergence window of the opener
    wins = conn["endpoints"]["opener"]["windows"]
    assert any(w["tracker"] == "CLOSE_WAIT" and w["kernel"] == "ESTABLISHED" for w in wins)
    # every tracker event was dated by the packet that caused it (the coarse clock is not used)
    assert a["tracker_events_dated_by_capture"] == 6


def test_broken_build_without_closing_is_a_disagreement_with_its_packets():
    """What `-DCT_TEST_SKIP_CLOSING` made the tracker say in the lab: the FIN_WAIT1 side never
    goes CLOSING, and ends FIN_WAIT2 (read from the table, no event)."""
    broken = SIM_TRACKER[:5]
    broken[4] = tev(327.0, "state", "LAST_ACK", "CLOSING", "FIN_WAIT1", packets=(3, 2))
    broken.append(dict(tev(390.0, "table", "LAST_ACK", "TIME_WAIT", "FIN_WAIT2"), untimed=True))
    a = align.analyse(record(SIM_KERNEL, broken, SIM_PACKETS))
    assert a["state_agreement_pct"] == 0.0
    (d,) = a["disagreements"]
    assert d["endpoint"] == "responder"
    assert d["tracker_rest"] == ["FIN_WAIT2"] and d["kernel_rest"] == ["CLOSING", "TIME_WAIT"]
    assert any("[FA]" in p for p in d["packets"])


def test_fin_with_ack_in_one_segment_is_optional_fin_wait2():
    # the server's FIN piggybacks its ACK: the kernel passes FIN_WAIT2 for 60 us
    kernel = [kev(0, "c", "CLOSE", "SYN_SENT", lport=0), kev(1, "c", "SYN_SENT", "ESTABLISHED"),
              kev(50, "c", "ESTABLISHED", "FIN_WAIT1"), kev(71.32, "c", "FIN_WAIT1", "FIN_WAIT2"),
              kev(71.38, "c", "FIN_WAIT2", "CLOSE")]
    seq, rules = align.kernel_sequence(kernel)
    assert [x["state"] for x in seq] == ["SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT"]
    assert seq[3]["optional"] and rules == {"connect-port-0", "ack-and-fin", "timewait-takeover"}
    tracker = [{"state": s, "t": 0} for s in ("SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "TIME_WAIT")]
    assert align.compare_sequences(tracker, seq)["agree"]
    # a FIN_WAIT2 that lasted (the ACK and the FIN came apart) may not be skipped
    kernel[-1] = kev(371.38, "c", "FIN_WAIT2", "CLOSE")
    seq, _ = align.kernel_sequence(kernel)
    res = align.compare_sequences(tracker, seq)
    assert not res["agree"] and res["mismatch"]["kernel"] == ["FIN_WAIT2", "TIME_WAIT"]


def test_socket_addresses_are_reused_lives_split_at_close():
    evs = [kev(0, "x", "CLOSE", "SYN_SENT", lport=0), kev(1, "x", "SYN_SENT", "ESTABLISHED"),
           kev(2, "x", "ESTABLISHED", "CLOSE"),
           kev(3, "x", "LISTEN", "SYN_RECV", client=False), kev(3.1, "x", "SYN_RECV", "ESTABLISHED", client=False),
           kev(9, "l", "CLOSE", "LISTEN", client=False)]
    lives = align.socket_lives(evs)
    assert [l["key"] for l in lives] == [(C, CP, S, SP), (S, SP, C, CP)]
    assert [len(l["events"]) for l in lives] == [3, 2]
    # an abort: ESTABLISHED -> CLOSE is a reset, not a time-wait
    seq, _ = align.kernel_sequence(lives[0]["events"])
    assert seq[-1]["state"] == "CLOSE" and seq[-1]["reset"]


def test_listener_clone_has_no_usable_time():
    seq, rules = align.kernel_sequence([kev(35.11, "s", "LISTEN", "SYN_RECV", client=False),
                                        kev(35.15, "s", "SYN_RECV", "ESTABLISHED", client=False)])
    assert not seq[0]["timed"] and seq[1]["timed"] and "listener-clone" in rules
    a = align.analyse(record(SIM_KERNEL, SIM_TRACKER, SIM_PACKETS))
    assert not any(t["side"] == "responder" and t["state"] == "SYN_RECV" for t in a["timing"])


def test_kernel_connection_without_tracker_flow_is_a_disagreement():
    a = align.analyse(record(SIM_KERNEL, []))
    assert a["connections"] == 0
    assert any("reported no flow" in d.get("note", "") for d in a["disagreements"])


def test_overall_state_consistency_netfilter():
    kseq_c, _ = align.kernel_sequence([e for e in SIM_KERNEL if e["skaddr"] == "c"])
    kseq_s, _ = align.kernel_sequence([e for e in SIM_KERNEL if e["skaddr"] == "s"])
    joint = align.joint_sequence(kseq_c, kseq_s)
    tol = 15 * MS
    good = [(3, "SYN_SENT"), (13, "SYN_RECV"), (24, "ESTABLISHED"), (324, "FIN_WAIT"), (327, "LAST_ACK"),
            (336, "TIME_WAIT")]
    assert align.overall_consistent([(t * MS, s) for t, s in good], joint, 400 * MS, tol) == (True, [])
    # a middlebox that never saw the close: ESTABLISHED to the end is not what the kernels did
    bad = good[:3]
    ok, wrong = align.overall_consistent([(t * MS, s) for t, s in bad], joint, 400 * MS, tol)
    assert ok is False and wrong == ["ESTABLISHED"]
    # allowed states: a FIN taken by its receiver may or may not be acknowledged yet
    assert align.allowed_overall("FIN_WAIT1", "CLOSE_WAIT") == {"FIN_WAIT", "CLOSE_WAIT"}
    assert align.allowed_overall("FIN_WAIT2", "CLOSE_WAIT") == {"CLOSE_WAIT"}
    assert align.allowed_overall("CLOSE", "ESTABLISHED", a_reset=True) == {"CLOSE"}


def test_netfilter_events_in_analysis():
    nf = [{"mono_ns": t * MS, "type": typ, "proto": "tcp", "state": st, "src": C, "dst": S, "sport": CP, "dport": SP}
          for t, typ, st in [(3.2, "NEW", "SYN_SENT"), (13.5, "UPDATE", "SYN_RECV"), (24.1, "UPDATE", "ESTABLISHED"),
                             (324.4, "UPDATE", "FIN_WAIT"), (327.2, "UPDATE", "LAST_ACK"),
                             (335.4, "UPDATE", "TIME_WAIT")]]
    a = align.analyse(record(SIM_KERNEL, SIM_TRACKER, SIM_PACKETS, nf_events=nf))
    assert a["netfilter_consistent_pct"] == 100.0
    assert a["connections_detail"][0]["netfilter"][-1] == "TIME_WAIT"
    nf[-1]["state"] = "CLOSE_WAIT"   # and a netfilter that ended in the wrong state
    a = align.analyse(record(SIM_KERNEL, SIM_TRACKER, SIM_PACKETS, nf_events=nf))
    assert a["netfilter_consistent_pct"] == 0.0


def test_ran_ahead_under_loss_needs_a_retransmission():
    """The tracker passed the server's FIN+ACK, which the delay line then dropped: it took the
    client to TIME_WAIT; the client went FIN_WAIT2 on the ACK of its retransmitted FIN, and
    TIME_WAIT on the server's retransmitted FIN."""
    kernel = [kev(0, "c", "CLOSE", "SYN_SENT", lport=0), kev(10, "c", "SYN_SENT", "ESTABLISHED"),
              kev(11, "s", "LISTEN", "SYN_RECV", client=False), kev(11, "s", "SYN_RECV", "ESTABLISHED", client=False),
              kev(50, "c", "ESTABLISHED", "FIN_WAIT1"), kev(55, "s", "ESTABLISHED", "CLOSE_WAIT", client=False),
              kev(55.2, "s", "CLOSE_WAIT", "LAST_ACK", client=False), kev(260, "c", "FIN_WAIT1", "FIN_WAIT2"),
              kev(470, "c", "FIN_WAIT2", "CLOSE"), kev(475, "s", "LAST_ACK", "CLOSE", client=False)]
    tracker = [tev(0, "new", "SYN_SENT", "SYN_SENT", "SYN_RECV"), tev(5, "state", "SYN_RECV", "ESTABLISHED", "SYN_RECV"),
               tev(10, "state", "ESTABLISHED", "ESTABLISHED", "ESTABLISHED"),
               tev(50, "state", "FIN_WAIT", "FIN_WAIT1", "CLOSE_WAIT"),
               tev(55, "state", "LAST_ACK", "TIME_WAIT", "LAST_ACK"),
               tev(60, "state", "TIME_WAIT", "TIME_WAIT", "CLOSE"), tev(60, "closed", "TIME_WAIT", "TIME_WAIT", "CLOSE", "fin")]
    packets = [pkt(50, True, "FA", 101, 501), pkt(55.2, False, "FA", 501, 102), pkt(60, True, "A", 102, 502),
               pkt(255, True, "FA", 101, 501), pkt(258, False, "A", 502, 102), pkt(465, False, "FA", 501, 102)]
    rec = record(kernel, tracker, packets, delay_ms=5)
    a = align.analyse(rec)
    assert a["disagreements"] == [] and a["state_agreement_pct"] == 100.0
    (ra,) = a["ran_ahead"]
    assert ra["endpoint"] == "opener" and any("[FA]" in p for p in ra["packets"])
    assert a["divergence"]["beyond_propagation"] >= 1 and a["divergence"]["max_ms"] > 400
    # without the retransmissions in the capture nothing explains it: a disagreement
    a = align.analyse(record(kernel, tracker, packets[:3], delay_ms=5))
    assert len(a["disagreements"]) == 1 and a["ran_ahead"] == []


def test_rtt_rows_read_the_trackers_rtt_when_present():
    k = [{"laddr": C, "lport": CP, "raddr": S, "rport": SP, "last_us": 20000, "min_us": 19800, "count": 40}]
    conns = [{"flow": "f", "id": ["tcp", C, CP, S, SP], "rtt": None}]
    (row,) = align.rtt_rows(conns, k, 20.4)
    assert row["tracker_srtt_us"] is None and row["tracker_vs_kernel_pct"] is None
    assert abs(row["kernel_vs_ping_pct"] - 1.96) < 0.01
    conns[0]["rtt"] = {"handshake_us": 20100, "srtt_us": 21000, "min_us": 20050, "samples": 30,
                       "orig": {}, "reply": {}}
    (row,) = align.rtt_rows(conns, k, 20.4)
    assert row["tracker_vs_kernel_pct"] == 5.0 and row["tracker_handshake_us"] == 20100


def test_parse_conntrack_lines():
    off = 1796301619_000000000 - 5_000_000_000   # wall - monotonic
    e = parse_conntrack_line("[1796301619.053932]\t    [NEW] tcp      6 120 SYN_SENT src=10.1.0.1 dst=10.2.0.2 "
                             "sport=33674 dport=7948 [UNREPLIED] src=10.2.0.2 dst=10.1.0.1 sport=7948 "
                             "dport=33674 id=3610436246", off)
    assert e == {"mono_ns": 5_053_932_000, "type": "NEW", "proto": "tcp", "state": "SYN_SENT",
                 "src": "10.1.0.1", "dst": "10.2.0.2", "sport": 33674, "dport": 7948, "id": "3610436246"}
    e = parse_conntrack_line("[1796301619.067008]\t [UPDATE] tcp      6 299 ESTABLISHED src=10.1.0.1 dst=10.2.0.2 "
                             "sport=33674 dport=7948 src=10.2.0.2 dst=10.1.0.1 sport=7948 dport=33674 [ASSURED] "
                             "id=3610436246", off)
    assert e["state"] == "ESTABLISHED" and e["type"] == "UPDATE"
    e = parse_conntrack_line("[1796301620.000001]\t[DESTROY] udp      17 src=10.1.0.1 dst=10.2.0.2 sport=5 "
                             "dport=7948 src=10.2.0.2 dst=10.1.0.1 sport=7948 dport=5 id=7", off)
    assert e["type"] == "DESTROY" and e["state"] is None and e["proto"] == "udp"
    assert parse_conntrack_line("conntrack v1.4.7 (conntrack-tools): 3 flow events have been shown.", off) is None


def test_decode_frame():
    import struct
    eth = b"\x02" * 12 + b"\x08\x00"
    tcp = struct.pack("!HHIIBBHHH", 49014, 7942, 1000, 0, 0x50, 0x02, 64240, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    p = decode_frame(eth + ip + tcp)
    assert p == {"src": C, "dst": S, "sport": CP, "dport": SP, "proto": "tcp", "seq": 1000, "ack": 0,
                 "win": 64240, "len": 0, "flags": "S"}
    assert decode_frame(b"\x00" * 12 + b"\x08\x06" + b"\x00" * 28) is None   # ARP


def test_combine_weights_by_connections():
    s1 = {"connections": 3, "compared": 3, "state_agreement_pct": 100.0, "netfilter_consistent_pct": None,
          "ctrack_overall_consistent_pct": 100.0, "rtt": [], "disagreements": []}
    s2 = dict(s1, connections=1, compared=1, state_agreement_pct=0.0, netfilter_consistent_pct=100.0,
              disagreements=[{"flow": "x"}])
    ov = align.combine({"a": s1, "b": s2})
    assert ov["state_agreement_pct"] == 75.0 and ov["netfilter_consistent_pct"] == 100.0
    assert ov["disagreements"] == [{"flow": "x", "scenario": "b"}] and ov["rtt_median_error_pct"] is None


def test_fin_behind_queued_data_is_dated_by_the_wire():
    """A bulk sender's shutdown(): the kernel is FIN_WAIT1 at once, its FIN leaves 133 ms later
    behind the queued data (seen at 50 ms each way). Re-dated by the FIN in the capture."""
    kseq, _ = align.kernel_sequence([kev(0, "s", "LISTEN", "SYN_RECV", client=False),
                                     kev(0.1, "s", "SYN_RECV", "ESTABLISHED", client=False),
                                     kev(500, "s", "ESTABLISHED", "FIN_WAIT1", client=False)])
    packets = [pkt(560, False, "A", 1, 1, 1448), pkt(633, False, "FA", 2, 1)]
    waited = align.redate_queued_fins(kseq, packets, (S, SP, C, CP), 55 * MS, 50 * MS)
    assert round(waited) == 133
    assert kseq[-1]["t"] == 583 * MS and kseq[-1]["rule"] == "fin-behind-data"
    # a FIN that left at once is left alone
    kseq2, _ = align.kernel_sequence([kev(500, "s", "ESTABLISHED", "FIN_WAIT1", client=False)])
    assert align.redate_queued_fins(kseq2, [pkt(500.05, False, "FA", 2, 1)], (S, SP, C, CP), 55 * MS, 50 * MS) == 0
    assert kseq2[0]["t"] == 500 * MS


def test_events_swapped_by_two_cpus_are_put_back_in_order():
    """Seen live: the two crossed FINs, handled on two CPUs, gave their events in the wrong
    order with one coarse timestamp; the packet counts taken under the flow's lock order them."""
    evs = [dict(e) for e in SIM_TRACKER]
    evs[3]["ts_ns"] = evs[4]["ts_ns"] = 324 * MS
    evs[3], evs[4] = evs[4], evs[3]
    (flow,) = align.group_flows(evs)
    assert [e["state"] for e in flow["events"]][3:5] == ["FIN_WAIT", "LAST_ACK"]
    assert align.analyse(record(SIM_KERNEL, evs, SIM_PACKETS))["state_agreement_pct"] == 100.0


def test_kernel_connections_that_never_crossed_the_tracker_are_someone_elses():
    """tcpstates sees every namespace: another lab with the same addresses makes connections
    the tracker never saw. None of their packets is in the capture: not a miss."""
    other = [dict(p, sport=40000) if p["sport"] == CP else dict(p, dport=40000) for p in SIM_PACKETS]
    assert align.analyse(record(SIM_KERNEL, [], other))["disagreements"] == []
    assert len(align.analyse(record(SIM_KERNEL, [], SIM_PACKETS))["disagreements"]) == 1


def test_a_lost_rst_is_ran_ahead_only_when_the_network_lost_packets():
    """Seen in routed-loss: the client's abort RST passed the tracker (CLOSE/CLOSE) and the
    delay line dropped it; the server stayed ESTABLISHED until it closed 1.1 s later and met the
    client kernel's RST. A RST is never retransmitted: the delay line's loss count is the evidence."""
    kernel = [kev(0, "c", "CLOSE", "SYN_SENT", lport=0), kev(11, "c", "SYN_SENT", "ESTABLISHED"),
              kev(17, "s", "LISTEN", "SYN_RECV", client=False), kev(17, "s", "SYN_RECV", "ESTABLISHED", client=False),
              kev(34.7, "c", "ESTABLISHED", "CLOSE"),
              kev(1125.9, "s", "ESTABLISHED", "FIN_WAIT1", client=False), kev(1149, "s", "FIN_WAIT1", "CLOSE", client=False)]
    tracker = [tev(0, "new", "SYN_SENT", "SYN_SENT", "SYN_RECV", packets=(1, 0)),
               tev(11, "state", "SYN_RECV", "ESTABLISHED", "SYN_RECV", packets=(1, 1)),
               tev(11, "state", "ESTABLISHED", "ESTABLISHED", "ESTABLISHED", packets=(2, 1)),
               tev(34.8, "state", "CLOSE", "CLOSE", "CLOSE", packets=(6, 4)),
               tev(34.8, "closed", "CLOSE", "CLOSE", "CLOSE", "rst", packets=(6, 4))]
    packets = [pkt(0, True, "S", 1, 0), pkt(11, False, "SA", 9, 2), pkt(34.75, True, "RA", 210, 210),
               pkt(1143.8, False, "FA", 210, 210), pkt(1143.83, True, "R", 210, 0)]
    a = align.analyse(record(kernel, tracker, packets, delay_ms=5, delay_line_lost=3))
    assert a["disagreements"] == [] and [r["endpoint"] for r in a["ran_ahead"]] == ["responder"]
    a = align.analyse(record(kernel, tracker, packets, delay_ms=5))
    assert [d["endpoint"] for d in a["disagreements"]] == ["responder"]

"""Passive RTT at the tracker (struct ct_rtt, ctrack/engine/rtt.py), on the real program with crafted
captures: the capture's clock is the tracker's, so every expected value is an exact number of
microseconds worked out from the times the frames are run at.

A tracker between opener A and responder B sees each round trip in two halves: "reply" is
tracker -> B -> tracker (SYN -> SYN/ACK, A's data -> B's ACK or echo), "orig" is
tracker -> A -> tracker. Flow-level values are the sums.
"""
from scapy.layers.inet import TCP

from ctrack.engine.events import EventReader
from helpers.wire import TcpConv

NO_TS = [("MSS", 1460), ("SAckOK", b""), ("NOP", None), ("WScale", 7)]


def ts(val, ecr):
    """The segment options Linux sends: NOP, NOP, timestamps (the tracker's fast check)."""
    return [("NOP", None), ("NOP", None), ("Timestamp", (val, ecr))]


def syn_ts(val, ecr=0):
    return [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (val, ecr)), ("NOP", None), ("WScale", 7)]


def test_handshake_halves(rp):
    conv = TcpConv(rp)
    conv.c("S", options=NO_TS, wait=0)
    conv.s("SA", options=NO_TS, wait=0.003)     # SYN -> SYN/ACK: 3000 us, B's half
    conv.c("A", wait=0.002)                      # SYN/ACK -> ACK: 2000 us, A's half
    rtt = conv.flow()["rtt"]
    assert rtt["reply"] == {"srtt_us": 3000, "min_us": 3000, "last_us": 3000, "samples": 1,
                            "handshake_us": 3000}
    assert rtt["orig"]["handshake_us"] == 2000
    assert (rtt["handshake_us"], rtt["srtt_us"], rtt["min_us"], rtt["samples"]) == (5000, 5000, 5000, 2)
    # the end-to-end sample (3000 + 2000 us: log2 bucket 13, [4096, 8191]) is in the histogram
    st = rp.tracker.stats()
    assert st["rtt_hist.13"] == 1 and sum(v for k, v in st.items() if k.startswith("rtt_hist.")) == 1
    assert st["rtt_sum_us"] == 5000


def test_retransmitted_syn_gives_no_reply_half(rp):
    """Karn: the SYN/ACK may answer either copy of the SYN."""
    conv = TcpConv(rp)
    conv.c("S", options=NO_TS, wait=0)
    conv.c("S", options=NO_TS, seq=conv.cli.isn, wait=1.0)   # same ISN: a retransmission
    conv.s("SA", options=NO_TS, wait=0.003)
    conv.c("A", wait=0.002)
    rtt = conv.flow()["rtt"]
    assert rtt["reply"]["handshake_us"] is None and rtt["reply"]["samples"] == 0
    assert rtt["orig"]["handshake_us"] == 2000
    assert rtt["handshake_us"] is None and rtt["srtt_us"] is None


def test_retransmitted_synack_gives_no_orig_half(rp):
    conv = TcpConv(rp)
    conv.c("S", options=NO_TS, wait=0)
    conv.s("SA", options=NO_TS, wait=0.003)
    conv.s("SA", options=NO_TS, seq=conv.srv.isn, wait=0.5)   # the ACK was lost: again
    conv.c("A", wait=0.002)
    rtt = conv.flow()["rtt"]
    assert rtt["reply"]["handshake_us"] == 3000
    assert rtt["orig"]["handshake_us"] is None and rtt["orig"]["samples"] == 0


def test_timestamps_first_appearance_and_first_echo(rp):
    """ePPing's rule: a TSval is timed from its first appearance, and sampled at its first echo."""
    conv = TcpConv(rp)
    conv.c("S", options=syn_ts(100), wait=0)
    conv.s("SA", options=syn_ts(900, 100), wait=0.001)          # reply half: 1000 us (handshake)
    conv.c("A", options=ts(101, 900), wait=0.001)               # orig half: 1000 us (handshake)
    conv.c("PA", b"a" * 100, options=ts(101, 900), wait=0.001)  # 101 on data: timed from here
    conv.c("PA", b"a" * 100, options=ts(102, 900), wait=0.010)  # not timed: 101 is awaited
    conv.s("PA", b"r" * 10, options=ts(901, 101), wait=0.002)   # echo of 101: 12000 us after it
    conv.s("PA", b"r" * 10, options=ts(901, 101), wait=0.001)   # again: no sample, 901 not new
    rtt = conv.flow()["rtt"]
    assert rtt["reply"]["samples"] == 2 and rtt["reply"]["last_us"] == 12000
    # smoothed: 1000, then 1000 + (12000 - 1000) / 8 = 2375
    assert rtt["reply"]["srtt_us"] == 2375 and rtt["reply"]["min_us"] == 1000
    # B's TSval 901 first appeared 1 ms before its second copy; A echoes it 5 ms after the first
    conv.c("PA", b"b" * 10, options=ts(103, 901), wait=0.004)
    rtt = conv.flow()["rtt"]
    assert rtt["orig"]["last_us"] == 5000 and rtt["orig"]["samples"] == 2
    # A sends 103 again in a retransmission 50 ms later: not a first appearance, so B's echo is
    # timed from the original (as the kernel's TSecr sample would be), not from the copy
    conv.c("PA", b"b" * 10, seq=conv.cli.nxt - 10, options=ts(103, 901), wait=0.050)
    conv.s("A", options=ts(902, 103), wait=0.001)
    rtt = conv.flow()["rtt"]
    assert rtt["reply"]["samples"] == 3 and rtt["reply"]["last_us"] == 51000


def test_timestamps_new_tsval_after_echo(rp):
    conv = TcpConv(rp)
    conv.c("S", options=syn_ts(100), wait=0)
    conv.s("SA", options=syn_ts(900, 100), wait=0.001)
    conv.c("A", options=ts(100, 900), wait=0.001)          # same TSval as the SYN: not new
    conv.c("PA", b"x" * 50, options=ts(110, 900), wait=0.005)   # new: armed at this time
    conv.s("A", options=ts(905, 110), wait=0.0075)         # echoed 7500 us later
    rtt = conv.flow()["rtt"]
    assert rtt["reply"]["last_us"] == 7500
    assert rtt["reply"]["samples"] == 2 and rtt["reply"]["min_us"] == 1000


def test_tsecr_beyond_the_awaited_tsval_ends_the_wait(rp):
    """The echo of the awaited TSval went by unseen (lost before the tracker): a later echo must
    not be taken for it."""
    conv = TcpConv(rp)
    conv.c("S", options=syn_ts(100), wait=0)
    conv.s("SA", options=syn_ts(900, 100), wait=0.001)
    conv.c("PA", b"q" * 10, options=ts(101, 900), wait=0.001)
    conv.s("A", options=ts(901, 150), wait=0.030)          # echoes a later TSval: 101 dropped
    conv.s("A", options=ts(902, 101), wait=0.001)          # a late copy of 101's echo: nothing
    assert conv.flow()["rtt"]["reply"]["samples"] == 1     # the handshake only


def test_timestamps_found_by_the_walk(rp):
    """Timestamps not first in the option block (no NOP, NOP prefix): the bounded walk."""
    conv = TcpConv(rp)
    conv.c("S", options=syn_ts(100), wait=0)
    conv.s("SA", options=syn_ts(900, 100), wait=0.001)
    conv.c("PA", b"q" * 10, options=[("SAck", (5000, 5001)), ("Timestamp", (200, 900))],
           wait=0.001)
    conv.s("A", options=[("NOP", None), ("Timestamp", (901, 200))], wait=0.0042)
    rtt = conv.flow()["rtt"]
    assert rtt["reply"]["last_us"] == 4200 and rtt["reply"]["samples"] == 2


def test_without_timestamps_sequence_fallback(rp):
    conv = TcpConv(rp)
    conv.c("S", options=NO_TS, wait=0)
    conv.s("SA", options=NO_TS, wait=0.002)
    conv.c("A", wait=0.002)
    conv.c("PA", b"x" * 100, wait=0.010)
    conv.s("A", wait=0.007)                  # covers the data: B's half 7000 us
    rtt = conv.flow()["rtt"]
    assert rtt["reply"]["last_us"] == 7000 and rtt["reply"]["samples"] == 2
    # 2000 then 7000: 2000 + 5000/8 = 2625
    assert rtt["reply"]["srtt_us"] == 2625
    conv.s("PA", b"y" * 100, wait=0.010)
    conv.c("A", wait=0.0031)
    assert conv.flow()["rtt"]["orig"]["last_us"] == 3100


def test_without_timestamps_retransmission_discards(rp):
    """Karn: the ACK after a retransmission may answer either copy: no sample."""
    conv = TcpConv(rp)
    conv.c("S", options=NO_TS, wait=0)
    conv.s("SA", options=NO_TS, wait=0.002)
    conv.c("A", wait=0.002)
    conv.c("PA", b"x" * 100, wait=0.010)
    conv.c("PA", b"x" * 100, seq=conv.cli.nxt - 100, wait=0.200)   # retransmitted
    conv.s("A", wait=0.007)
    assert conv.flow()["rtt"]["reply"]["samples"] == 1              # the handshake's only
    # the next new segment is timed again
    conv.c("PA", b"z" * 10, wait=0.010)
    conv.s("A", wait=0.0055)
    assert conv.flow()["rtt"]["reply"]["last_us"] == 5500


def test_end_event_carries_the_rtt(replayer):
    rp = replayer(timeouts={"CLOSE": 12})   # a tracker of its own: one ring-buffer reader each
    reader = EventReader(rp.tracker.bpf)
    reader.poll()
    conv = TcpConv(rp)
    conv.c("S", options=NO_TS, wait=0)
    conv.s("SA", options=NO_TS, wait=0.003)
    conv.c("A", wait=0.002)
    conv.c("FA", wait=0.01); conv.s("FA", wait=0.004); conv.c("A", wait=0.001)
    closed = [e for e in reader.poll() if e["type"] == "closed"]
    assert len(closed) == 1
    # the FINs are not timed (their answers wait on the programs' close): the handshake's halves
    assert closed[0]["rtt"] == {"handshake_us": 5000, "srtt_us": 5000, "min_us": 5000,
                                "samples": 2}


def test_pure_ack_is_not_timed(rp):
    """A TSval first seen on a pure ACK is timed from the first data segment that carries it:
    the peer echoes a pure ACK's TSval only in what it sends next (the kernels time data only:
    RFC 7323's RTTM rule, Linux's tcp_ack_update_rtt; ePPing skips pure ACKs too)."""
    conv = TcpConv(rp)
    conv.c("S", options=syn_ts(100), wait=0)
    conv.s("SA", options=syn_ts(900, 100), wait=0.001)
    conv.c("A", options=ts(101, 900), wait=0.001)                 # pure ACK: TSval 101
    conv.c("PA", b"q" * 100, options=ts(101, 900), wait=0.005)    # the request, 5 ms later
    conv.s("PA", b"r" * 100, options=ts(901, 101), wait=0.002)    # answered 2 ms after it
    rtt = conv.flow()["rtt"]
    # from the request (2000 us), not from the pure ACK (7000 us)
    assert rtt["reply"]["last_us"] == 2000 and rtt["reply"]["samples"] == 2
    # B's answer is echoed by A's next request, 3 ms later; A's pure ACKs in between are not timed
    conv.c("A", options=ts(102, 901), wait=0.001)
    conv.s("A", options=ts(902, 102), wait=0.030)                 # echoes the pure ACK: nothing
    assert conv.flow()["rtt"]["reply"]["samples"] == 2
    conv.c("PA", b"q" * 100, options=ts(103, 902), wait=0.002)
    conv.s("PA", b"r" * 100, options=ts(903, 103), wait=0.0021)
    rtt = conv.flow()["rtt"]
    assert rtt["reply"]["last_us"] == 2100 and rtt["reply"]["samples"] == 3
    assert rtt["orig"]["samples"] == 2 and rtt["orig"]["last_us"] == 1000   # B's 901 echoed by 102 ack


def test_pure_ack_mid_transfer_is_timed(rp):
    """A pure ACK that leaves some of the peer's data unacknowledged is timed: the sender is
    ACK-clocked and answers it at once (a bulk sender's half has no other samples)."""
    conv = TcpConv(rp)
    conv.c("S", options=syn_ts(100), wait=0)
    conv.s("SA", options=syn_ts(900, 100), wait=0.001)
    conv.c("A", options=ts(101, 900), wait=0.001)
    conv.s("PA", b"r" * 1000, options=ts(901, 101), wait=0.001)
    conv.s("PA", b"r" * 1000, options=ts(901, 101), wait=0.0001)
    # A acknowledges the first segment only (B's second is in flight): timed. (It also echoes
    # B's 901, first seen 1300 us before: A's half)
    conv.c("A", options=ts(110, 901), ack=conv.srv.nxt - 1000, wait=0.0012)
    conv.s("PA", b"r" * 1000, options=ts(902, 110), wait=0.0007)   # B answers it 700 us later
    rtt = conv.flow()["rtt"]
    assert rtt["orig"]["samples"] == 2 and rtt["orig"]["last_us"] == 1300
    assert rtt["reply"]["samples"] == 2 and rtt["reply"]["last_us"] == 700
    # A's ACK of everything B sent is not timed: B's next segment may come at any time
    conv.c("A", options=ts(120, 902), wait=0.0005)
    conv.s("PA", b"r" * 1000, options=ts(950, 120), wait=0.050)
    assert conv.flow()["rtt"]["reply"]["samples"] == 2


def test_fin_is_not_timed_and_ends_the_wait(rp):
    """The close: a FIN is acknowledged late (its receiver delays the ACK) and is sent when its
    program closes, so neither a FIN nor an answer carried by one is a sample."""
    conv = TcpConv(rp)
    conv.c("S", options=syn_ts(100), wait=0)
    conv.s("SA", options=syn_ts(900, 100), wait=0.001)
    conv.c("A", options=ts(101, 900), wait=0.001)
    conv.s("PA", b"r" * 100, options=ts(905, 101), wait=0.010)    # B's last data: awaited
    conv.c("FA", options=ts(140, 905), wait=0.030)                # A closes 30 ms later, echoing it
    conv.s("A", options=ts(945, 140), wait=0.040)                 # B's delayed ACK of the FIN
    conv.s("FA", options=ts(946, 140), wait=0.005)
    conv.c("A", options=ts(141, 946), wait=0.001)                 # the last ACK: answers B's FIN
    rtt = conv.flow()["rtt"]
    assert (rtt["orig"]["samples"], rtt["reply"]["samples"]) == (1, 1)   # the handshake's only
    # without timestamps alike: a data segment's wait ends at a FIN, and a FIN is not timed
    conv = TcpConv(rp, client=("10.1.0.1", 40001))
    conv.c("S", options=NO_TS, wait=0)
    conv.s("SA", options=NO_TS, wait=0.002)
    conv.c("A", wait=0.002)
    conv.s("PA", b"r" * 100, wait=0.010)
    conv.c("FA", wait=0.030)
    conv.s("FA", wait=0.040)
    conv.c("A", wait=0.001)
    rtt = conv.flow()["rtt"]
    assert (rtt["orig"]["samples"], rtt["reply"]["samples"]) == (1, 1)


def test_udp_has_no_rtt(rp):
    from helpers.wire import udp_frame, U4, U4S
    rp.run(udp_frame(*U4, *U4S), 1_700_000_000 * 10**9)
    f = rp.flows()[0]
    assert f["rtt"] is None and f["tcp_options"] is None


def test_no_rtt_build_measures_nothing_and_judges_the_same(replayer):
    verdicts = {}
    for on in (True, False):
        rp = replayer(rtt=on)
        conv = TcpConv(rp)
        out = [conv.c("S", options=syn_ts(100), wait=0), conv.s("SA", options=syn_ts(900, 100)),
               conv.c("A", options=ts(101, 900)), conv.c("PA", b"x", options=ts(102, 900)),
               conv.s("A", options=ts(901, 102))]
        verdicts[on] = [(r.klass, r.reason, r.flow) for r in out]
        rtt = conv.flow()["rtt"]
        if on:
            assert rtt["samples"] == 3   # the handshake halves, 102 (101 was a pure ACK's)
        else:
            assert rtt["samples"] == 0 and rtt["handshake_us"] is None
            assert sum(v for k, v in rp.tracker.stats().items() if k.startswith("rtt_hist.")) == 0
    assert verdicts[True] == verdicts[False]


def test_tc_entry_and_ipv6(replayer):
    """The TC entry point reads the timestamps through the same parser; IPv6 alike."""
    from helpers.wire import C6, S6
    rp = replayer(entry="ct_tc")
    conv = TcpConv(rp, client=C6, server=S6)
    conv.c("S", options=syn_ts(100), wait=0)
    conv.s("SA", options=syn_ts(900, 100), wait=0.0021)
    conv.c("A", options=ts(101, 900), wait=0.0013)
    conv.c("PA", b"q" * 20, options=ts(101, 900), wait=0.001)
    conv.s("PA", b"r" * 20, options=ts(901, 101), wait=0.0040)
    rtt = conv.flow()["rtt"]
    assert (rtt["reply"]["handshake_us"], rtt["orig"]["handshake_us"]) == (2100, 1300)
    assert rtt["reply"]["last_us"] == 4000 and rtt["reply"]["samples"] == 2


def test_histogram_as_prometheus_and_top_show_it(rp):
    """The per-tracker histogram, as the metrics export it (a Prometheus histogram, no flow
    label) and as ctrack-top's header line sums it up."""
    from prometheus_client import CollectorRegistry, generate_latest
    from ctrack.live.metrics import rtt_metrics
    from ctrack.top.view import rtt_options_line
    for i, (a, b) in enumerate(((0.003, 0.002), (0.030, 0.020))):   # 5000 us, 50000 us
        conv = TcpConv(rp, client=("10.1.0.1", 42000 + i))
        conv.c("S", options=NO_TS, wait=0)
        conv.s("SA", options=NO_TS, wait=a)
        conv.c("A", wait=b)
    st = rp.tracker.stats()

    class One:
        def collect(self):
            return rtt_metrics(st)

    reg = CollectorRegistry(auto_describe=False)
    reg.register(One())
    text = generate_latest(reg).decode()
    assert 'ctrack_tcp_rtt_seconds_bucket{le="0.004095"} 0.0' in text
    assert 'ctrack_tcp_rtt_seconds_bucket{le="0.008191"} 1.0' in text      # 5000 us
    assert 'ctrack_tcp_rtt_seconds_bucket{le="0.032767"} 1.0' in text
    assert 'ctrack_tcp_rtt_seconds_bucket{le="0.065535"} 2.0' in text      # 50000 us
    assert "ctrack_tcp_rtt_seconds_count 2.0" in text and "ctrack_tcp_rtt_seconds_sum 0.055" in text
    assert 'ctrack_tcp_option_flows_total{option="mss",side="orig"} 2.0' in text
    line = rtt_options_line(st).plain
    assert "samples 2" in line and "p50 <8.19ms" in line and "p99 <65.5ms" in line
    assert "mss 2/2" in line and "sack_perm 2/2" in line

"""The TCP state machine, packet by packet, on the real program (BPF_PROG_TEST_RUN).

Each case builds a conversation with scapy, runs it through the tracker, and checks every
packet's class and the flow's overall and per-endpoint states after it, as RFC 9293 dictates
under ctrack's assumption that every packet it passes is delivered.
"""
import pytest

from helpers.wire import TcpConv, states

EST = ("ESTABLISHED", "ESTABLISHED", "ESTABLISHED")

# The same conversation over IPv4 and over IPv6: the state machine does not depend on the family.
ENDS = {"ipv4": (("10.1.0.1", 40000), ("10.2.0.2", 80)),
        "ipv6": (("fd00::1", 40000), ("fd00::2", 443))}
BOTH_FAMILIES = pytest.mark.parametrize("ends", list(ENDS.values()), ids=list(ENDS))


def established(rp, **kw):
    conv = TcpConv(rp, **kw)
    conv.handshake()
    return conv


@BOTH_FAMILIES
def test_three_way_handshake(rp, ends):
    conv = TcpConv(rp, client=ends[0], server=ends[1])
    r = conv.c("S")
    assert (r.klass, r.verdict, r.reason) == ("NEW", "pass", None)
    assert states(r) == ("SYN_SENT", "SYN_SENT", "SYN_RECV")
    r = conv.s("SA")
    assert r.klass == "ESTABLISHED"
    assert states(r) == ("SYN_RECV", "ESTABLISHED", "SYN_RECV")
    r = conv.c("A")
    assert states(r) == EST
    st = rp.tracker.stats()
    assert st["flows_created"] == 1 and st["class.new"] == 1 and st["class.established"] == 2


@BOTH_FAMILIES
def test_data_and_counters(rp, ends):
    conv = established(rp, client=ends[0], server=ends[1])
    assert conv.c("PA", b"x" * 100).klass == "ESTABLISHED"
    assert conv.s("PA", b"y" * 300).klass == "ESTABLISHED"
    assert conv.c("A").klass == "ESTABLISHED"
    f = conv.flow()
    assert f["packets"] == [4, 2]
    # IP-layer bytes: 40 (IPv4+TCP) or 60 (IPv6+TCP) per packet + options in SYNs (20 bytes of
    # Linux options)
    h = 40 if f["family"] == 4 else 60
    assert f["family"] == (6 if ":" in ends[0][0] else 4)
    assert f["bytes"] == [(h + 20) + h + (h + 100) + h, (h + 20) + (h + 300)]
    assert f["orig"] == {"src": ends[0][0], "sport": ends[0][1], "dst": ends[1][0], "dport": ends[1][1]}


@BOTH_FAMILIES
def test_four_way_close(rp, ends):
    conv = established(rp, client=ends[0], server=ends[1])
    assert states(conv.c("FA")) == ("FIN_WAIT", "FIN_WAIT1", "CLOSE_WAIT")
    assert states(conv.s("A")) == ("CLOSE_WAIT", "FIN_WAIT2", "CLOSE_WAIT")
    assert states(conv.s("FA")) == ("LAST_ACK", "TIME_WAIT", "LAST_ACK")
    r = conv.c("A")
    assert states(r) == ("TIME_WAIT", "TIME_WAIT", "CLOSE")
    assert rp.tracker.stats()["closed_fin"] == 1


@BOTH_FAMILIES
def test_fin_piggybacked_on_ack(rp, ends):
    conv = established(rp, client=ends[0], server=ends[1])
    conv.c("PA", b"request")
    assert states(conv.c("FA")) == ("FIN_WAIT", "FIN_WAIT1", "CLOSE_WAIT")
    # the server acknowledges data and FIN and sends its own FIN in one segment
    assert states(conv.s("FPA", b"reply")) == ("LAST_ACK", "TIME_WAIT", "LAST_ACK")
    assert states(conv.c("A")) == ("TIME_WAIT", "TIME_WAIT", "CLOSE")
    f = conv.flow()
    assert (f["orig"]["src"], f["orig"]["dport"]) == (ends[0][0], ends[1][1])


@BOTH_FAMILIES
def test_server_closes_first(rp, ends):
    conv = established(rp, client=ends[0], server=ends[1])
    assert states(conv.s("FA")) == ("FIN_WAIT", "CLOSE_WAIT", "FIN_WAIT1")
    assert states(conv.c("A")) == ("CLOSE_WAIT", "CLOSE_WAIT", "FIN_WAIT2")
    assert states(conv.c("FA")) == ("LAST_ACK", "LAST_ACK", "TIME_WAIT")
    assert states(conv.s("A")) == ("TIME_WAIT", "CLOSE", "TIME_WAIT")


def test_half_close_with_data_flowing_back(rp):
    conv = established(rp)
    conv.c("FA")
    conv.s("A")
    for _ in range(5):   # the server keeps sending after the client's FIN
        r = conv.s("PA", b"z" * 1000)
        assert r.klass == "ESTABLISHED" and states(r) == ("CLOSE_WAIT", "FIN_WAIT2", "CLOSE_WAIT")
        assert conv.c("A").klass == "ESTABLISHED"
    assert states(conv.s("FA")) == ("LAST_ACK", "TIME_WAIT", "LAST_ACK")
    assert states(conv.c("A")) == ("TIME_WAIT", "TIME_WAIT", "CLOSE")


@BOTH_FAMILIES
def test_simultaneous_close(rp, ends):
    conv = established(rp, client=ends[0], server=ends[1])
    # both FINs cross: each is sent before the other arrives, so neither acknowledges the other
    cli_ack = conv.srv.nxt
    srv_ack = conv.cli.nxt
    assert states(conv.c("FA", ack=cli_ack)) == ("FIN_WAIT", "FIN_WAIT1", "CLOSE_WAIT")
    assert states(conv.s("FA", ack=srv_ack)) == ("LAST_ACK", "CLOSING", "CLOSING")
    assert states(conv.c("A")) == ("LAST_ACK", "CLOSING", "TIME_WAIT")
    assert states(conv.s("A")) == ("TIME_WAIT", "TIME_WAIT", "TIME_WAIT")


def test_simultaneous_open(rp):
    conv = TcpConv(rp)
    assert states(conv.c("S")) == ("SYN_SENT", "SYN_SENT", "SYN_RECV")
    r = conv.s("S")   # the other side's own SYN crosses ours
    assert r.klass == "ESTABLISHED"
    assert states(r) == ("SYN_SENT2", "SYN_RECV", "SYN_RECV")
    # each side answers with SYN/ACK (same ISN, acknowledging the other's SYN)
    r = conv.c("SA", seq=conv.cli.isn)
    assert r.klass == "ESTABLISHED", r.reason
    assert states(r) == ("SYN_RECV", "SYN_RECV", "ESTABLISHED")
    r = conv.s("SA", seq=conv.srv.isn)
    assert r.klass == "ESTABLISHED", r.reason
    assert states(r) == EST
    assert conv.c("PA", b"hello").klass == "ESTABLISHED"


def test_retransmitted_syn_synack_fin(rp):
    conv = TcpConv(rp)
    conv.c("S")
    r = conv.c("S", seq=conv.cli.isn, advance=False)
    assert r.klass == "ESTABLISHED" and states(r) == ("SYN_SENT", "SYN_SENT", "SYN_RECV")
    conv.s("SA")
    r = conv.s("SA", seq=conv.srv.isn, advance=False)   # SYN/ACK again
    assert r.klass == "ESTABLISHED" and states(r) == ("SYN_RECV", "ESTABLISHED", "SYN_RECV")
    conv.c("A")
    r = conv.s("SA", seq=conv.srv.isn, advance=False)   # after the ACK: the ACK was lost
    assert r.klass == "ESTABLISHED" and states(r) == EST
    conv.c("FA")
    fin_seq = conv.cli.nxt - 1
    r = conv.c("FA", seq=fin_seq, advance=False)        # FIN retransmitted
    assert r.klass == "ESTABLISHED" and states(r) == ("FIN_WAIT", "FIN_WAIT1", "CLOSE_WAIT")


def test_syn_with_new_isn_restarts_opener(rp):
    conv = TcpConv(rp)
    conv.c("S")
    r = conv.c("S", seq=777777)
    assert r.klass == "ESTABLISHED" and states(r) == ("SYN_SENT", "SYN_SENT", "SYN_RECV")
    conv.cli.nxt = 777778
    # the SYN/ACK must acknowledge the new ISN
    assert conv.s("SA").klass == "ESTABLISHED"


def test_synack_with_wrong_ack_is_invalid(rp):
    conv = TcpConv(rp)
    conv.c("S")
    r = conv.s("SA", ack=12345)
    assert (r.klass, r.reason) == ("INVALID", "tcp_bad_synack")
    assert states(r) == ("SYN_SENT", "SYN_SENT", "SYN_RECV")


def test_port_reuse_after_time_wait(rp):
    conv = established(rp)
    conv.c("FA"); conv.s("FA"); conv.c("A")
    assert conv.flow()["state"] == "TIME_WAIT"
    new = TcpConv(rp, cisn=90000, sisn=123456, clock=conv.clock)
    r = new.c("S")
    assert r.klass == "NEW" and states(r) == ("SYN_SENT", "SYN_SENT", "SYN_RECV")
    new.s("SA")
    assert states(new.c("A")) == EST
    assert rp.tracker.stats()["flows_created"] == 2


def test_port_reuse_by_the_former_server(rp):
    conv = established(rp)
    conv.c("FA"); conv.s("FA"); conv.c("A")
    # the former server opens a connection back to the same port pair: it is the new opener
    back = TcpConv(rp, client=("10.2.0.2", 80), server=("10.1.0.1", 40000), clock=conv.clock)
    r = back.c("S")
    assert r.klass == "NEW"
    assert back.flow()["orig"]["src"] == "10.2.0.2"


@pytest.mark.parametrize("sender", ["client", "server"])
@pytest.mark.parametrize("when", ["syn_recv", "established", "fin_wait", "close_wait", "last_ack"])
def test_in_window_rst_closes(rp, sender, when):
    conv = TcpConv(rp)
    conv.c("S"); conv.s("SA")
    if when != "syn_recv":
        conv.c("A")
    if when in ("fin_wait", "close_wait", "last_ack"):
        conv.c("FA")
    if when in ("close_wait", "last_ack"):
        conv.s("A")
    if when == "last_ack":
        conv.s("FA")
    send = conv.c if sender == "client" else conv.s
    r = send("R", advance=False)
    assert (r.klass, r.reason) == ("ESTABLISHED", None)
    assert states(r) == ("CLOSE", "CLOSE", "CLOSE")
    assert rp.tracker.stats()["closed_rst"] == 1


@pytest.mark.parametrize("sender", ["client", "server"])
def test_inexact_in_window_rst_is_challenged_not_honoured(rp, sender):
    """RFC 5961 3.2: an established receiver resets only on a RST at exactly its RCV.NXT; any
    other in-window RST earns a challenge ACK and the connection stands (a blind RST attack).
    The RST passes, so that challenge ACK is sent; the genuine sender then resets exactly."""
    conv = established(rp)
    conv.c("PA", b"q" * 100)
    conv.s("A")
    send, me = (conv.c, conv.cli) if sender == "client" else (conv.s, conv.srv)
    answer = conv.s if sender == "client" else conv.c
    for off in (1, 3000):
        r = send("R", seq=me.nxt + off, advance=False)
        assert (r.klass, r.verdict, r.reason) == ("ESTABLISHED", "pass", None)
        assert states(r) == EST
    assert answer("A").klass == "ESTABLISHED"             # the challenge ACK
    assert conv.c("PA", b"more").klass == "ESTABLISHED"   # the connection carries on
    assert conv.s("PA", b"reply").klass == "ESTABLISHED"
    st = rp.tracker.stats()
    assert (st["rst_challenged"], st["closed_rst"]) == (2, 0)
    r = send("R", advance=False)                          # the exact one
    assert states(r) == ("CLOSE", "CLOSE", "CLOSE")
    assert rp.tracker.stats()["closed_rst"] == 1


def test_inexact_rst_passes_when_enforcing(replayer):
    rp = replayer(policy="enforce")
    conv = established(rp)
    r = conv.c("R", seq=conv.cli.nxt + 500, advance=False)
    assert (r.verdict, r.reason) == ("pass", None)
    assert conv.flow()["state"] == "ESTABLISHED"


def test_rst_at_the_receivers_last_ack_closes(rp):
    """Data lost after the tracker: the receiver's RCV.NXT is what it last acknowledged, below
    what the sender sent. A RST there (the answer to a challenge ACK) is exact."""
    conv = established(rp)
    conv.c("PA", b"a" * 100)
    acked = conv.cli.nxt
    conv.c("PA", b"b" * 100)     # never reaches the server
    conv.s("A", ack=acked)
    r = conv.c("R", seq=acked, advance=False)
    assert states(r) == ("CLOSE", "CLOSE", "CLOSE")


def test_rst_at_the_windows_right_edge_is_outside(rp):
    # RFC 9293 3.10.7.4: acceptable when RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND
    conv = TcpConv(rp)
    conv.c("S"); conv.s("SA", win=1000)   # SYN windows are not scaled
    r = conv.c("R", seq=conv.cli.nxt + 1000, advance=False)
    assert (r.klass, r.reason) == ("INVALID", "tcp_rst_window")
    r = conv.c("R", seq=conv.cli.nxt + 999, advance=False)
    assert states(r) == ("CLOSE", "CLOSE", "CLOSE")   # SYN_RECV: any in-window RST resets


def test_rst_answering_a_syn(rp):
    conv = TcpConv(rp)
    conv.c("S")
    r = conv.s("RA", seq=0)   # port closed: RST/ACK acknowledging the SYN, sequence 0
    assert r.klass == "ESTABLISHED" and states(r) == ("CLOSE", "CLOSE", "CLOSE")


def test_rst_answering_a_syn_must_ack_it(rp):
    conv = TcpConv(rp)
    conv.c("S")
    r = conv.s("RA", seq=0, ack=conv.cli.isn + 50)
    assert (r.klass, r.reason) == ("INVALID", "tcp_rst_window")
    assert states(r) == ("SYN_SENT", "SYN_SENT", "SYN_RECV")


def test_opener_aborts_in_syn_sent(rp):
    conv = TcpConv(rp)
    conv.c("S")
    r = conv.c("R")
    assert states(r) == ("CLOSE", "CLOSE", "CLOSE")


# The client advertises 65535 << 7 (8 MiB): the RST's sequence must fall outside that.
@pytest.mark.parametrize("offset", [-200000, 20_000_000, 1 << 31])
def test_out_of_window_rst_is_invalid_and_keeps_flow(rp, offset):
    conv = established(rp)
    conv.c("PA", b"a" * 10)
    conv.s("A")
    r = conv.s("R", seq=conv.srv.nxt + offset, advance=False)
    assert (r.klass, r.reason) == ("INVALID", "tcp_rst_window")
    assert states(r) == EST
    # the connection carries on
    assert conv.c("PA", b"more").klass == "ESTABLISHED"
    assert conv.s("A").klass == "ESTABLISHED"
    assert rp.tracker.stats()["closed_rst"] == 0


def test_out_of_window_rst_dropped_in_enforce(replayer):
    rp = replayer(policy="enforce")
    conv = established(rp)
    r = conv.c("R", seq=conv.cli.nxt + 10_000_000, advance=False)
    assert (r.verdict, r.reason) == ("drop", "tcp_rst_window")
    assert conv.flow()["state"] == "ESTABLISHED"


def test_nothing_revives_a_reset_flow(replayer):
    """After an accepted RST, segments still in flight, the answers they draw and further
    RSTs pass when they fit the windows (netfilter's CLOSE), even under enforce, but the flow
    stays CLOSE: only a new SYN opens the 5-tuple again."""
    rp = replayer(policy="enforce")
    conv = established(rp)
    conv.s("R", advance=False)
    for send in (lambda: conv.c("PA", b"late"), lambda: conv.s("A"), lambda: conv.c("FA"),
                 lambda: conv.s("R", advance=False), lambda: conv.c("R", advance=False)):
        r = send()
        assert (r.klass, r.reason, r.verdict) == ("ESTABLISHED", None, "pass")
        assert states(r) == ("CLOSE", "CLOSE", "CLOSE")
    assert conv.flow()["state"] == "CLOSE"


def test_refused_syn_leaves_the_responder_no_window(replayer):
    """The responder refused the SYN with a RST/ACK (its RST sets no window): nothing it sends
    afterwards can fit a window, so a blind sender cannot push data through the closed flow."""
    rp = replayer(policy="enforce")
    conv = TcpConv(rp)
    conv.c("S")
    r = conv.s("RA", seq=0, ack=conv.cli.nxt, advance=False)
    assert states(r) == ("CLOSE", "CLOSE", "CLOSE")
    for seq in (123456789, 0, 1):
        r = conv.s("PA", b"injected", seq=seq, ack=conv.cli.nxt, advance=False)
        assert (r.klass, r.reason, r.verdict) == ("INVALID", "tcp_seq_window", "drop")
        assert states(r) == ("CLOSE", "CLOSE", "CLOSE")


def test_rst_to_a_late_ack_after_the_close(replayer):
    """Reordering delivers the client's data ACK after its FIN's ACK: the server, already
    closed, answers it with a RST at that ACK's number, one behind what the TIME_WAIT client
    expects, which TIME_WAIT ignores. It passes under the window rules and changes nothing
    (seen live under jitter, dropped by enforce until then); a RST far outside stays INVALID."""
    rp = replayer(policy="enforce")
    conv = established(rp)
    conv.s("PA", b"bye")
    late_ack = conv.srv.nxt
    conv.s("FA")
    r = conv.c("FA")
    conv.s("A")                                       # both FINs acknowledged: TIME_WAIT
    assert states(r)[0] in ("TIME_WAIT", "LAST_ACK")
    before = conv.flow()["state"]
    r = conv.s("R", seq=late_ack, advance=False)      # answering the ACK of the data
    assert (r.klass, r.verdict) == ("ESTABLISHED", "pass")
    assert conv.flow()["state"] == before == "TIME_WAIT"
    r = conv.s("R", seq=late_ack + 50_000_000, advance=False)
    assert (r.reason, r.verdict) == ("tcp_rst_window", "drop")


def test_after_a_reset_the_windows_still_hold(replayer):
    rp = replayer(policy="enforce")
    conv = established(rp)
    conv.s("R", advance=False)
    r = conv.c("PA", b"forged", seq=conv.cli.nxt + 50_000_000, advance=False)
    assert (r.reason, r.verdict) == ("tcp_seq_window", "drop")
    r = conv.c("R", seq=conv.cli.nxt + 50_000_000, advance=False)
    assert (r.reason, r.verdict) == ("tcp_seq_window", "drop")   # the window rules, as data
    r = conv.c("R", seq=conv.cli.nxt - 1000, advance=False)      # answering a late ACK
    assert (r.klass, r.verdict) == ("ESTABLISHED", "pass")
    r = conv.s("SA", seq=conv.srv.isn, ack=conv.cli.isn + 1, advance=False)
    assert (r.reason, r.verdict) == ("tcp_unexpected", "drop")
    assert states(r) == ("CLOSE", "CLOSE", "CLOSE")


def test_abort_with_data_lost_downstream_still_closes_the_receiver(replayer):
    """A sender aborts (RST at its SND.NXT) while segments it sent were lost after the
    tracker. The tracker, assuming delivery, takes the RST; the receiver, short of that data,
    does not (RFC 5961: not its RCV.NXT) and keeps ACKing its RCV.NXT; the aborted sender
    answers each with a RST at exactly that number, which resets the receiver. An enforcing
    tracker must let those through, or the receiver stays ESTABLISHED for ever."""
    rp = replayer(policy="enforce")
    conv = established(rp)
    acked = conv.cli.nxt
    for _ in range(3):
        assert conv.c("PA", b"x" * 1000).verdict == "pass"     # the last two get lost
    conv.s("A", ack=acked + 1000)
    r = conv.c("R", advance=False)                              # seq = SND.NXT
    assert states(r) == ("CLOSE", "CLOSE", "CLOSE")
    dup = conv.s("A", ack=acked + 1000)                         # the receiver's dup ACK
    rst = conv.c("R", seq=acked + 1000, advance=False)          # the sender's answer
    assert (dup.verdict, rst.verdict) == ("pass", "pass")
    assert (rst.klass, rst.reason) == ("ESTABLISHED", None)


def test_duplicate_acks_a_full_window_behind_are_valid(replayer):
    """The sender fills the receiver's whole window and the receiver dup-ACKs the left edge
    (RFC 5681's fast-retransmit trigger): the ACK is exactly a window behind what was sent,
    which netfilter's rule accepts (ack >= td_end - max window), and so must ctrack."""
    rp = replayer(policy="enforce")
    conv = TcpConv(rp)                           # both offer window scale 7
    conv.c("S"), conv.s("SA")
    conv.c("A", win=1000)                        # 1000 << 7 = 128000: the client's largest
    left = conv.srv.nxt
    for _ in range(100):                         # 100 x 1280 = 128000: the window, full
        assert conv.s("PA", b"y" * 1280).verdict == "pass"
    assert conv.srv.nxt - left == 1000 << 7
    for _ in range(3):
        r = conv.c("A", ack=left, win=1000)
        assert (r.klass, r.reason, r.verdict) == ("ESTABLISHED", None, "pass")
    r = conv.c("A", ack=left - 1, win=1000)      # one byte further back is too old
    assert (r.reason, r.verdict) == ("tcp_ack_window", "drop")


def test_new_syn_after_rst_opens_new_flow(rp):
    conv = established(rp)
    conv.c("R", advance=False)
    r = TcpConv(rp, cisn=424242, clock=conv.clock).c("S")
    assert r.klass == "NEW" and states(r) == ("SYN_SENT", "SYN_SENT", "SYN_RECV")


def test_data_before_handshake_completes_is_invalid(rp):
    conv = TcpConv(rp)
    conv.c("S")
    r = conv.c("PA", b"early", ack=0)
    assert r.klass == "INVALID"


def test_midstream_packet_without_pickup(replayer):
    rp = replayer(policy="enforce")
    conv = TcpConv(rp)
    conv.cli.nxt = 1001
    conv.srv.nxt = 5001
    r = conv.c("PA", b"data")
    assert (r.klass, r.reason, r.verdict, r.flow) == ("INVALID", "tcp_no_flow", "drop", None)
    assert rp.flows() == []


def test_midstream_pickup(replayer):
    rp = replayer(policy="enforce", pickup=True)
    conv = TcpConv(rp)
    conv.cli.nxt = 1001
    conv.srv.nxt = 5001
    r = conv.c("PA", b"data")
    assert (r.klass, r.verdict) == ("NEW", "pass")
    assert states(r) == EST
    assert conv.s("A").klass == "ESTABLISHED"
    assert conv.s("PA", b"x" * 5000).klass == "ESTABLISHED"
    # a RST or FIN never creates a flow, even with pickup
    other = TcpConv(rp, client=("10.9.0.1", 1234))
    assert other.c("RA").reason == "tcp_no_flow"
    assert other.c("FA").reason == "tcp_no_flow"


def test_sequence_beyond_window_is_invalid(rp):
    conv = established(rp)
    # the server advertised 65535 << 7 (both SYNs offered scale 7): far beyond that is invalid
    r = conv.c("PA", b"x", seq=conv.cli.nxt + (65535 << 7) + 1000, advance=False)
    assert (r.klass, r.reason) == ("INVALID", "tcp_seq_window")
    r = conv.c("PA", b"x", seq=conv.cli.nxt - 3_000_000_000 & 0xFFFFFFFF, advance=False)
    assert r.klass == "INVALID"
    assert conv.c("PA", b"ok").klass == "ESTABLISHED"


def test_ack_of_unsent_data_is_invalid(rp):
    conv = established(rp)
    r = conv.c("A", ack=conv.srv.nxt + 100000)
    assert (r.klass, r.reason) == ("INVALID", "tcp_ack_window")
    # further back than the client's largest window (65535 << 7)
    r = conv.c("A", ack=conv.srv.nxt - 20_000_000)
    assert (r.klass, r.reason) == ("INVALID", "tcp_ack_window")


def test_window_scaling_from_syn_options(rp):
    # both offer scale 7: a window field of 4096 means 512 KiB
    conv = TcpConv(rp)
    conv.handshake()
    conv.s("A", win=4096)
    r = conv.c("PA", b"x", seq=conv.cli.nxt + 400000, advance=False)
    assert r.klass == "ESTABLISHED", r.reason


def test_no_scaling_unless_both_offer_it(rp):
    conv = TcpConv(rp)
    conv.c("S")                                         # offers scale 7
    conv.s("SA", options=[("MSS", 1460)])               # does not: no scaling either way
    conv.c("A")
    conv.s("A", win=4096)                               # 4096 bytes, not 512 KiB
    r = conv.c("PA", b"x", seq=conv.cli.nxt + 400000, advance=False)
    assert (r.klass, r.reason) == ("INVALID", "tcp_seq_window")
    # within the SYN/ACK's 65535-byte window it is fine
    assert conv.c("PA", b"x", seq=conv.cli.nxt + 60000, advance=False).klass == "ESTABLISHED"


@pytest.mark.parametrize("cisn,sisn", [(0xFFFFFFF0, 0xFFFFFF00), (0xFFFFFFFF, 5), (0x7FFFFFF0, 0x80000010)])
def test_sequence_wraparound(rp, cisn, sisn):
    conv = TcpConv(rp, cisn=cisn, sisn=sisn)
    conv.handshake()
    for _ in range(4):   # crosses 2^32 on both sides
        assert conv.c("PA", b"d" * 100).klass == "ESTABLISHED"
        assert conv.s("PA", b"e" * 100).klass == "ESTABLISHED"
    assert conv.c("FA").klass == "ESTABLISHED"
    assert states(conv.s("FA")) == ("LAST_ACK", "TIME_WAIT", "LAST_ACK")
    assert states(conv.c("A")) == ("TIME_WAIT", "TIME_WAIT", "CLOSE")


def test_retransmitted_data_is_valid(rp):
    conv = established(rp)
    seq = conv.cli.nxt
    conv.c("PA", b"x" * 1000)
    r = conv.c("PA", b"x" * 1000, seq=seq, advance=False)
    assert r.klass == "ESTABLISHED"


def test_syn_in_established_is_remembered_and_can_restart(rp):
    conv = established(rp)
    conv.c("PA", b"before")
    # the client restarted (new ISN) without the tracker seeing the old connection end
    r = conv.c("S", seq=999999)
    assert r.klass == "ESTABLISHED" and r.verdict == "pass"
    assert states(r) == EST
    assert rp.tracker.stats()["ignored_syn"] == 1
    # the server answers the new SYN: the flow restarts from it
    r = conv.s("SA", seq=31337, ack=1000000)
    assert r.klass == "NEW"
    assert states(r) == ("SYN_RECV", "ESTABLISHED", "SYN_RECV")
    conv.cli.nxt, conv.srv.nxt = 1000000, 31338
    assert states(conv.c("A")) == EST


def test_syn_in_established_answered_by_challenge_ack(replayer):
    """A (spoofed) SYN in a live connection draws the server's challenge ACK: the old
    connection stands, and the remembered SYN is forgotten. A SYN/ACK for it later (a blind
    attacker's, knowing only the ports) must not restart the flow: netfilter restarts only when
    the SYN/ACK is the very next packet."""
    rp = replayer(policy="enforce")
    conv = established(rp)
    conv.c("PA", b"x" * 100)
    conv.c("S", seq=777777, advance=False)
    r = conv.s("A")   # RFC 5961 challenge ACK: the old connection stands
    assert r.klass == "ESTABLISHED" and states(r) == EST
    conv.c("PA", b"later", wait=30)
    r = conv.s("SA", seq=31337, ack=777778, advance=False, wait=30)
    assert (r.reason, r.verdict) == ("tcp_unexpected", "drop") and states(r) == EST
    r = conv.c("PA", b"EVIL", seq=777778, ack=31338, advance=False)
    assert (r.klass, r.verdict) == ("INVALID", "drop")
    for send in (lambda: conv.c("PA", b"legit"), lambda: conv.s("PA", b"reply")):
        r = send()
        assert (r.klass, r.verdict) == ("ESTABLISHED", "pass") and states(r) == EST


@pytest.mark.parametrize("old_end", ["reset-lost-downstream", "time-wait"])
def test_new_syn_to_a_peer_still_holding_the_old_connection(replayer, old_end):
    """The tracker saw the old connection end (a RST it passed, lost downstream; or TIME_WAIT)
    and took the client's new SYN as a new flow, but the server still holds the old connection.
    It answers the SYN with a challenge ACK (RFC 5961 section 4); the client, in SYN_SENT,
    answers that with a RST at its ACK number (RFC 9293 3.10.7.3), which frees the server; the
    client's SYN retransmission then opens the connection. An enforcing tracker must pass the
    ACK and the RST, and keep the new attempt in SYN_SENT through them."""
    rp = replayer(policy="enforce")
    conv = established(rp)
    conv.c("PA", b"x" * 100)
    conv.s("A")
    if old_end == "reset-lost-downstream":
        conv.c("R", advance=False)
    else:
        conv.s("FA"), conv.c("FA"), conv.s("A")
    old_cli, old_srv = conv.cli.nxt, conv.srv.nxt
    conv.cli.isn = conv.cli.nxt = 50
    assert conv.c("S", wait=1).klass == "NEW"
    ack = conv.s("A", seq=old_srv, ack=old_cli, advance=False)
    assert (ack.klass, ack.verdict) == ("ESTABLISHED", "pass")
    rst = conv.c("R", seq=old_cli, advance=False)
    assert (rst.klass, rst.verdict) == ("ESTABLISHED", "pass")
    assert states(rst) == ("SYN_SENT", "SYN_SENT", "SYN_RECV")
    r = conv.c("S", seq=50, advance=False, wait=1)             # the SYN retransmission
    assert states(r) == ("SYN_SENT", "SYN_SENT", "SYN_RECV")
    conv.srv.isn = conv.srv.nxt = 9000
    assert conv.s("SA").verdict == "pass"
    assert states(conv.c("A")) == EST
    # only the ACK's own number is an answer: another RST from the opener is judged as before,
    # and an ACK carrying data in SYN_SENT stays unexpected
    rp2 = replayer(policy="enforce")
    c2 = TcpConv(rp2)
    c2.c("S")
    assert c2.s("PA", b"data", seq=4000, ack=1001, advance=False).reason == "tcp_unexpected"


def test_flows_are_independent(rp):
    a = TcpConv(rp, client=("10.1.0.1", 1111))
    b = TcpConv(rp, client=("10.1.0.1", 2222), clock=a.clock)
    a.handshake()
    b.c("S")
    a.c("FA")
    assert b.flow()["state"] == "SYN_SENT"
    assert a.flow()["state"] == "FIN_WAIT"


@pytest.mark.parametrize("sender", ["client", "server"])
def test_in_window_rst_in_closing(rp, sender):
    conv = established(rp)
    ca, sa = conv.srv.nxt, conv.cli.nxt
    conv.c("FA", ack=ca)
    conv.s("FA", ack=sa)
    assert conv.flow()["orig_state"] == "CLOSING"
    r = (conv.c if sender == "client" else conv.s)("RA", advance=False)
    assert (r.klass, states(r)) == ("ESTABLISHED", ("CLOSE", "CLOSE", "CLOSE"))


@pytest.mark.parametrize("sender", ["client", "server"])
def test_in_window_rst_in_time_wait(rp, sender):
    conv = established(rp)
    conv.c("FA"); conv.s("FA"); conv.c("A")
    r = (conv.c if sender == "client" else conv.s)("R", advance=False)
    assert (r.klass, states(r)) == ("ESTABLISHED", ("CLOSE", "CLOSE", "CLOSE"))
    # the RST-closed flow stays visible in CLOSE for its (10 s) timeout, then goes
    assert conv.flow()["state"] == "CLOSE"
    rp.now_ns = conv.clock.advance(11)
    assert conv.flow() is None


def test_rst_without_ack_in_syn_sent_is_ignored(rp):
    # RFC 9293 3.10.7.3: in SYN-SENT a RST is acceptable only with an ACK of the SYN
    conv = TcpConv(rp)
    conv.c("S")
    r = conv.s("R", seq=0, advance=False)
    assert (r.klass, r.reason) == ("INVALID", "tcp_rst_window")
    assert states(r) == ("SYN_SENT", "SYN_SENT", "SYN_RECV")


def test_ecn_and_urgent_flags_are_valid(rp):
    conv = TcpConv(rp)
    assert conv.c("SEC").klass == "NEW"           # ECN-setup SYN
    assert conv.s("SAE").klass == "ESTABLISHED"   # ECN-setup SYN/ACK
    assert conv.c("A").klass == "ESTABLISHED"
    assert conv.c("PAU", b"!").klass == "ESTABLISHED"
    assert conv.s("AE").klass == "ESTABLISHED"
    assert conv.c("PAC", b"x").klass == "ESTABLISHED"


def test_tfo_syn_with_data(rp):
    conv = TcpConv(rp)
    r = conv.c("S", b"GET / HTTP/1.1\r\n\r\n",
               options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7), ("TFO", b"\x01" * 8)])
    assert r.klass == "NEW"
    # the server accepts the data: its SYN/ACK acknowledges SYN and data
    assert conv.s("SA").klass == "ESTABLISHED"
    assert states(conv.c("A")) == EST
    f = conv.flow()
    # SYN: 20 IP + 20 TCP + 20 options (19, padded) + 18 data; ACK: 40
    assert (f["packets"], f["bytes"][0]) == ([2, 1], 78 + 40)


def test_rst_with_the_fins_sequence_after_a_fin(rp):
    """The server closes, then answers a client segment that had not acknowledged its FIN with
    a RST carrying the FIN's own sequence number (the client's RCV.NXT - 1). Linux accepts it
    in CLOSE_WAIT (tcp_reset_check), and so does the tracker; one further below does not count.
    (Seen live: iperf3's data stream ends this way.)"""
    conv = established(rp)
    conv.s("FA")
    fin_seq = conv.srv.nxt - 1
    conv.c("A")
    assert states(conv.s("R", seq=fin_seq - 1, advance=False))[0] == "CLOSE_WAIT"
    r = conv.s("R", seq=fin_seq, advance=False)
    assert (r.klass, r.reason) == ("ESTABLISHED", None)
    assert states(r) == ("CLOSE", "CLOSE", "CLOSE")

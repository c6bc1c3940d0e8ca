"""ICMP and ICMPv6 errors through the real tracker: RELATED to the flow they quote, checked.

An error (destination unreachable, packet too big, time exceeded, ...) quotes the IP header and
the first 8 bytes of the packet that caused it. The tracker keys it by that quoted packet: a
known, unexpired flow makes it RELATED (for TCP, only when the quoted sequence number is one the
sender could have outstanding: RFC 5927), no flow makes it INVALID icmp_no_flow, a malformed
quote INVALID icmp_bad_inner. An error never changes the flow it is about, and ICMP that is not
an error (echo, neighbour discovery) stays untracked.
"""
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6ND_NS,
                                ICMPv6PacketTooBig, ICMPv6TimeExceeded, IPv6, IPv6ExtHdrDestOpt,
                                IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting)
from scapy.packet import Raw

from helpers.wire import C4, C6, S4, S6, U4, U4S, U6, U6S, Clock, TcpConv, eth, table, udp_frame

ROUTER = {4: "10.9.9.9", 6: "fd00:99::9"}
def l3_of(frame_bytes):
    """The IP packet inside an Ethernet frame (bytes)."""
    return bytes(frame_bytes)[14:]


def error4(quoted, to, type_=3, code=3, src=ROUTER[4], keep=None, mtu=0):
    """An ICMPv4 error from `src` to `to` quoting `quoted` (IP packet bytes), cut to IP header +
    8 bytes like RFC 792 asks, or to `keep` bytes."""
    if keep is None:
        keep = (quoted[0] & 0x0F) * 4 + 8
    return eth(IP(src=src, dst=to) / ICMP(type=type_, code=code, nexthopmtu=mtu)
               / Raw(quoted[:keep]))


def error6(quoted, to, kind=ICMPv6DestUnreach, src=ROUTER[6], keep=None, **kw):
    body = quoted if keep is None else quoted[:keep]
    return eth(IPv6(src=src, dst=to) / kind(**kw) / Raw(body))


def too_big(quoted, to, family):
    """The router's "fragmentation needed" (ICMP 3/4, MTU 1000) or "packet too big" (ICMPv6 2,
    MTU 1280) about `quoted`, sent to `to`."""
    if family == 4:
        return error4(quoted, to, 3, 4, mtu=1000)
    return error6(quoted, to, ICMPv6PacketTooBig, mtu=1280)


def udp_flow(rp, family, clock):
    c, s = (U4, U4S) if family == 4 else (U6, U6S)
    probe = udp_frame(*c, *s, b"query")
    assert rp.run(probe, clock.advance(0.001)).klass == "NEW"
    return probe, c, s


def tcp_established(rp, family, clock, data=b"x" * 100):
    c, s = (C4, S4) if family == 4 else (C6, S6)
    conv = TcpConv(rp, client=c, server=s, clock=clock)
    assert [r.klass for r in conv.handshake()] == ["NEW", "ESTABLISHED", "ESTABLISHED"]
    assert conv.c("PA", data).klass == "ESTABLISHED"
    return conv


def client_segment(conv, seq=None, data=b"x" * 100):
    """The L3 bytes of a segment the client sends (not run through the tracker)."""
    pkt, _ = conv.build(conv.cli, "PA", data, seq=seq)
    return l3_of(bytes(pkt))


# ---- RELATED --------------------------------------------------------------------------------
@pytest.mark.parametrize("family", [4, 6])
def test_port_unreachable_for_udp_is_related_and_changes_nothing(rp, family):
    clock = Clock()
    probe, c, s = udp_flow(rp, family, clock)
    before = table(rp)
    err = (error4(l3_of(probe), c[0], 3, 3, src=s[0]) if family == 4 else
           error6(l3_of(probe), c[0], ICMPv6DestUnreach, src=s[0], code=4))
    r = rp.run(err, clock.advance(0.001))
    assert (r.klass, r.reason, r.verdict) == ("RELATED", None, "pass")
    assert r.flow["state"] == "NEW"            # the error is no reply: still unreplied
    assert "about" in r.summary and f"{c[1]} >" in r.summary and "udp" in r.summary
    assert table(rp) == before                 # no counter, timeout or state touched
    st = rp.tracker.stats()
    assert st["class.related"] == 1 and st["bytes_class.related"] > 0


@pytest.mark.parametrize("family", [4, 6])
def test_router_says_packet_too_big_about_data_in_flight(rp, family):
    clock = Clock()
    conv = tcp_established(rp, family, clock)
    before = table(rp)
    quoted = client_segment(conv, seq=conv.cli.nxt - 100)    # the segment just sent
    err = too_big(quoted, conv.cli.addr, family)
    r = rp.run(err, clock.advance(0.001))
    assert (r.klass, r.reason) == ("RELATED", None)
    assert r.flow["state"] == "ESTABLISHED" and "tcp seq=" in r.summary
    router, mtu = (ROUTER[4], 1000) if family == 4 else (ROUTER[6], 1280)
    assert r.summary.startswith(f"icmp{'6' if family == 6 else ''} {router} > {conv.cli.addr} "
                                f"error type={3 if family == 4 else 2} code={4 if family == 4 else 0} "
                                f"mtu={mtu} about {conv.cli.addr if family == 4 else '[' + conv.cli.addr + ']'}:")
    assert table(rp) == before


@pytest.mark.parametrize("family", [4, 6])
def test_time_exceeded_for_a_traceroute_probe(rp, family):
    clock = Clock()
    probe, c, s = udp_flow(rp, family, clock)
    err = (error4(l3_of(probe), c[0], 11, 0) if family == 4 else
           error6(l3_of(probe), c[0], ICMPv6TimeExceeded, code=0))
    assert rp.run(err, clock.advance(0.001)).klass == "RELATED"


def test_unreachable_answering_a_syn(rp):
    clock = Clock()
    conv = TcpConv(rp, client=C4, server=S4, clock=clock)
    conv.c("S")
    syn = l3_of(bytes(conv.build(conv.cli, "S", seq=conv.cli.isn)[0]))
    r = rp.run(error4(syn, C4[0], 3, 1), clock.advance(0.001))      # host unreachable
    assert (r.klass, r.flow["state"]) == ("RELATED", "SYN_SENT")


def test_server_quoting_the_clients_whole_segment(rp):
    """Linux quotes as much as fits in 576 bytes, not just 8: the tracker reads what it needs."""
    clock = Clock()
    conv = tcp_established(rp, 4, clock)
    quoted = client_segment(conv, seq=conv.cli.nxt - 100)
    r = rp.run(error4(quoted, C4[0], 3, 10, keep=len(quoted)), clock.advance(0.001))
    assert r.klass == "RELATED"


def test_error_quoting_a_first_fragment_ipv6(rp):
    """A datagram the sender fragmented: the quote has a fragment header before the ports."""
    clock = Clock()
    probe, c, s = udp_flow(rp, 6, clock)
    udp = bytes(UDP(sport=c[1], dport=s[1]) / Raw(b"z" * 32))
    quoted = bytes(IPv6(src=c[0], dst=s[0]) / IPv6ExtHdrFragment(offset=0, m=1, id=9, nh=17)
                   / Raw(udp))
    r = rp.run(error6(quoted, c[0], ICMPv6TimeExceeded, code=1), clock.advance(0.001))
    assert r.klass == "RELATED"


QUOTED_EXT = {
    "destination-options": [IPv6ExtHdrDestOpt()],
    "hop-by-hop": [IPv6ExtHdrHopByHop()],
    "routing": [IPv6ExtHdrRouting()],
    "fragment-then-destination-options": [IPv6ExtHdrFragment(offset=0, m=1, id=3),
                                          IPv6ExtHdrDestOpt()],
}


@pytest.mark.parametrize("name", list(QUOTED_EXT))
def test_quoted_ipv6_extension_headers_are_walked(replayer, name):
    """Like Linux's icmpv6_notify, the tracker skips the quote's extension headers to reach
    its ports: RELATED for the live flow, and a forged error hidden behind them is judged like
    any other (before, it passed an enforcing tracker as UNTRACKED)."""
    rp = replayer(policy="enforce")
    clock = Clock()
    conv = tcp_established(rp, 6, clock)

    def quote(seq, sport=C6[1]):
        l3 = IPv6(src=C6[0], dst=S6[0])
        for h in QUOTED_EXT[name]:
            l3 = l3 / h
        return bytes(l3 / TCP(sport=sport, dport=S6[1], flags="PA", seq=seq, ack=conv.srv.nxt))

    def run(q):
        return rp.run(error6(q, C6[0], ICMPv6PacketTooBig, mtu=1280), clock.advance(0.001))

    r = run(quote(conv.cli.nxt - 100))
    assert (r.klass, r.verdict) == ("RELATED", "pass") and "tcp seq=" in r.summary
    r = run(quote(conv.cli.nxt + 1_000_000))
    assert (r.reason, r.verdict) == ("icmp_seq_window", "drop")
    r = run(quote(conv.cli.nxt - 100, sport=C6[1] + 1))
    assert (r.reason, r.verdict) == ("icmp_no_flow", "drop")


def test_quote_whose_extension_chain_hides_the_ports(replayer):
    """Seven quoted extension headers (more than the tracker follows), or a fragment header the
    quote's own length cuts (whatever bytes follow the packet): icmp_bad_inner, dropped."""
    rp = replayer(policy="enforce")
    clock = Clock()
    tcp_established(rp, 6, clock)
    l3 = IPv6(src=C6[0], dst=S6[0])
    for _ in range(7):
        l3 = l3 / IPv6ExtHdrDestOpt()
    long_chain = bytes(l3 / TCP(sport=C6[1], dport=S6[1]))
    r = rp.run(error6(long_chain, C6[0], ICMPv6PacketTooBig, mtu=1280), clock.advance(0.001))
    assert (r.reason, r.verdict) == ("icmp_bad_inner", "drop")
    frag = bytes(IPv6(src=C6[0], dst=S6[0]) / IPv6ExtHdrFragment(offset=0, m=1, id=7)
                 / TCP(sport=C6[1], dport=S6[1]))
    err = error6(frag, C6[0], ICMPv6PacketTooBig, keep=44, mtu=1280)
    for trailer in (b"", b"\xff" * 16):        # Ethernet padding beyond the IPv6 payload
        r = rp.run(err + trailer, clock.advance(0.001))
        assert (r.reason, r.verdict) == ("icmp_bad_inner", "drop")


def test_picked_up_flow_has_no_sequence_check(replayer):
    rp = replayer(pickup=True)
    clock = Clock()
    conv = TcpConv(rp, client=C4, server=S4, clock=clock)
    assert conv.c("A", b"mid-stream").klass == "NEW"
    quoted = client_segment(conv, seq=conv.cli.nxt + 5_000_000)
    assert rp.run(error4(quoted, C4[0], 3, 4), clock.advance(0.001)).klass == "RELATED"


def test_tc_entry_classifies_errors_too(replayer):
    rp = replayer(entry="ct_tc")
    clock = Clock()
    probe, c, s = udp_flow(rp, 4, clock)
    assert rp.run(error4(l3_of(probe), c[0], 3, 3, src=s[0]), clock.advance(0.001)).klass == "RELATED"
    assert rp.run(error4(l3_of(udp_frame(*c, "10.2.0.3", 53)), c[0]),
                  clock.advance(0.001)).reason == "icmp_no_flow"


# ---- INVALID --------------------------------------------------------------------------------
@pytest.mark.parametrize("policy, verdict", [("observe", "pass"), ("enforce", "drop")])
@pytest.mark.parametrize("family", [4, 6])
def test_error_about_no_flow(replayer, policy, verdict, family):
    rp = replayer(policy=policy)
    clock = Clock()
    probe, c, s = udp_flow(rp, family, clock)
    other = udp_frame(c[0], c[1] + 1, s[0], s[1])     # same hosts, a port never seen
    before = table(rp)
    err = (error4(l3_of(other), c[0]) if family == 4 else
           error6(l3_of(other), c[0], ICMPv6DestUnreach, code=4))
    r = rp.run(err, clock.advance(0.001))
    assert (r.klass, r.reason, r.verdict, r.flow) == ("INVALID", "icmp_no_flow", verdict, None)
    assert table(rp) == before
    assert rp.tracker.stats()["reason.icmp_no_flow"] == 1


def test_error_about_an_expired_flow(replayer):
    rp = replayer(timeouts={"UDP_NEW": 2})
    clock = Clock()
    probe, c, s = udp_flow(rp, 4, clock)
    assert rp.run(error4(l3_of(probe), c[0]), clock.advance(1)).klass == "RELATED"
    r = rp.run(error4(l3_of(probe), c[0]), clock.advance(2))
    assert (r.klass, r.reason) == ("INVALID", "icmp_no_flow")


@pytest.mark.parametrize("policy, verdict", [("observe", "pass"), ("enforce", "drop")])
@pytest.mark.parametrize("where", ["beyond-what-was-sent", "long-acknowledged"])
@pytest.mark.parametrize("family", [4, 6])
def test_forged_error_with_a_sequence_number_not_in_flight(replayer, policy, verdict, where, family):
    """RFC 5927: a blind attacker guessing the 4-tuple cannot guess a sequence number in flight;
    an error quoting any other is INVALID (under enforce, never reaches the endpoint)."""
    rp = replayer(policy=policy)
    clock = Clock()
    conv = tcp_established(rp, family, clock)
    seq = conv.cli.nxt + 1_000_000 if where == "beyond-what-was-sent" else conv.cli.nxt - 50_000_000
    quoted = client_segment(conv, seq=seq)
    before = table(rp)
    err = too_big(quoted, conv.cli.addr, family)
    r = rp.run(err, clock.advance(0.001))
    assert (r.klass, r.reason, r.verdict) == ("INVALID", "icmp_seq_window", verdict)
    assert table(rp) == before
    # control: the same error quoting the segment in flight is RELATED
    quoted = client_segment(conv, seq=conv.cli.nxt - 100)
    err = too_big(quoted, conv.cli.addr, family)
    assert rp.run(err, clock.advance(0.001)).klass == "RELATED"


def test_error_quoting_a_packet_the_server_never_sent(rp):
    """In SYN_SENT the server has sent nothing: an error quoting a server segment is forged."""
    clock = Clock()
    conv = TcpConv(rp, client=C4, server=S4, clock=clock)
    conv.c("S")
    quoted = l3_of(bytes(conv.build(conv.srv, "SA", seq=conv.srv.isn)[0]))
    r = rp.run(error4(quoted, S4[0], 3, 3), clock.advance(0.001))
    assert (r.klass, r.reason) == ("INVALID", "icmp_seq_window")


def _bad_inner_cases():
    probe = l3_of(udp_frame(*U4, *U4S, b"query"))
    probe6 = l3_of(udp_frame(*U6, *U6S, b"query"))
    return {
        "quote-shorter-than-ip-header": error4(probe, U4[0], keep=12),
        "quote-without-8-l4-bytes": error4(probe, U4[0], keep=24),
        "quoted-version-6-in-icmpv4": error4(probe6, U4[0], keep=48),
        "quoted-ihl-3": error4(bytes([0x43]) + probe[1:], U4[0]),
        "icmpv6-quote-shorter-than-ipv6-header": error6(probe6, U6[0], ICMPv6DestUnreach, keep=30),
        "icmpv6-quote-without-8-l4-bytes": error6(probe6, U6[0], ICMPv6DestUnreach, keep=44),
        "icmpv6-quoting-ipv4": error6(probe + bytes(20), U6[0], ICMPv6DestUnreach, keep=48),
    }


BAD_INNER = _bad_inner_cases()


@pytest.mark.parametrize("policy, verdict", [("observe", "pass"), ("enforce", "drop")])
@pytest.mark.parametrize("name", list(BAD_INNER))
def test_malformed_quote_is_invalid_and_touches_nothing(replayer, policy, verdict, name):
    rp = replayer(policy=policy)
    clock = Clock()
    udp_flow(rp, 4, clock)
    udp_flow(rp, 6, clock)
    before = table(rp)
    r = rp.run(BAD_INNER[name], clock.advance(0.001))
    assert (r.klass, r.reason, r.verdict, r.flow) == ("INVALID", "icmp_bad_inner", verdict, None)
    assert r.summary.startswith(("icmp 10.9.9.9 > 10.1.0.1 error type=",
                                 "icmp6 fd00:99::9 > fd00::1 error type="))
    assert table(rp) == before


@pytest.mark.parametrize("policy, verdict", [("observe", "pass"), ("enforce", "drop")])
@pytest.mark.parametrize("family", [4, 6])
def test_error_not_sent_to_the_quoted_packets_source(replayer, policy, verdict, family):
    """Errors go back to the sender of the offending packet. One quoting a live flow but
    addressed to a third host is forged or misrouted: INVALID icmp_misdirected (as netfilter's
    "outer daddr mismatch"). Control: the same error addressed to the sender is RELATED."""
    rp = replayer(policy=policy)
    clock = Clock()
    probe, c, s = udp_flow(rp, family, clock)
    third = "10.3.0.3" if family == 4 else "fd00:3::3"
    make = (lambda to: error4(l3_of(probe), to)) if family == 4 else (
        lambda to: error6(l3_of(probe), to, ICMPv6DestUnreach, code=4))
    before = table(rp)
    r = rp.run(make(third), clock.advance(0.001))
    assert (r.klass, r.reason, r.verdict) == ("INVALID", "icmp_misdirected", verdict)
    assert table(rp) == before
    assert rp.run(make(c[0]), clock.advance(0.001)).klass == "RELATED"


# ---- UNTRACKED ------------------------------------------------------------------------------
def _untracked_cases():
    ping = bytes(IP(src=C4[0], dst=S4[0]) / ICMP(type=8, id=1, seq=1))
    later_frag = bytes(IP(src=U4[0], dst=U4S[0], proto=17, frag=100) / Raw(bytes(16)))
    sctp = bytes(IP(src=C4[0], dst=S4[0], proto=132) / Raw(bytes(16)))
    return {
        "echo-request": eth(IP(src=C4[0], dst=S4[0]) / ICMP(type=8)),
        "echo-reply-v6": eth(IPv6(src=C6[0], dst=S6[0]) / ICMPv6EchoReply()),
        "neighbour-solicitation": eth(IPv6(src=C6[0], dst="ff02::1:ff00:2") / ICMPv6ND_NS(tgt=S6[0])),
        "error-about-a-ping": error4(ping, C4[0], 11, 0),
        "error-about-a-later-fragment": error4(later_frag, U4[0]),
        "error-about-sctp": error4(sctp, C4[0]),
    }


UNTRACKED = _untracked_cases()


@pytest.mark.parametrize("policy", ["observe", "enforce"])
@pytest.mark.parametrize("name", list(UNTRACKED))
def test_not_an_error_about_a_tracked_protocol(replayer, policy, name):
    rp = replayer(policy=policy)
    clock = Clock()
    udp_flow(rp, 4, clock)
    before = table(rp)
    r = rp.run(UNTRACKED[name], clock.advance(0.001))
    assert (r.klass, r.reason, r.verdict) == ("UNTRACKED", None, "pass")
    assert table(rp) == before


def test_quote_cut_by_the_capture_is_untracked_not_invalid(rp):
    """A capture's snaplen can cut the quoted header: the frame is short, the packet was not."""
    clock = Clock()
    probe, c, s = udp_flow(rp, 4, clock)
    err = error4(l3_of(probe), c[0], keep=28)
    r = rp.run(err[:14 + 20 + 8 + 10], clock.advance(0.001), wire_len=len(err))
    assert (r.klass, r.reason) == ("UNTRACKED", None)

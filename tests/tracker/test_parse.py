"""The tracker's parser (ct_parse in kernel/tracker.c) on crafted frames, through the real program.

Every malformed kind in enum ct_reason that comes from parsing is exercised with a frame that is
one defect away from a valid packet of a flow already in the table: the test checks the class,
the reason, the verdict and the statistics, and that the flow table is byte-for-byte unchanged
(the defect must stop the packet before it reaches any flow). The undamaged frame is then sent as
a control, and must change the table: otherwise "unchanged" would prove nothing.

Valid but unusual frames (IPv4 options, exotic TCP options, IPv6 extension headers, fragments,
VLAN tags, Ethernet padding, non-IP EtherTypes) are checked to be tracked, or left untracked, as
the tracker documents.
"""
import struct
from types import SimpleNamespace

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import (ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                                IPv6ExtHdrHopByHop, IPv6ExtHdrRouting)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from helpers.wire import (C4, C6, S4, S6, U4, U4S, U6, U6S, Clock, TcpConv, eth, states, table,
                  table_without_zeek,
                  udp_frame)

MACS = bytes.fromhex("020000000002" "020000000001")
ETH = 14
EST = ("ESTABLISHED", "ESTABLISHED", "ESTABLISHED")

# ---- helpers ----------------------------------------------------------------------------------
def poke(frame, off, data):
    """frame with `data` written at byte offset `off` (checksums are left stale on purpose:
    the tracker never reads them)."""
    frame = bytearray(frame)
    frame[off:off + len(data)] = data
    return bytes(frame)


def pppoe(frame, ppp=None, length=None, vertype=0x11):
    """An Ethernet frame's IP packet inside a PPPoE session frame (EtherType 0x8864): version/
    type, code 0, session 0x1234, length (PPP protocol + payload), PPP protocol 0x0021 (IPv4) or
    0x0057 (IPv6)."""
    payload = frame[ETH:]
    if ppp is None:
        ppp = 0x0021 if frame[12:14] == b"\x08\x00" else 0x0057
    n = len(payload) + 2 if length is None else length
    return frame[:12] + b"\x88\x64" + struct.pack("!BBHHH", vertype, 0, 0x1234, n, ppp) + payload


def mpls(frame, labels=1, bottom=True):
    """An Ethernet frame's IP packet under an MPLS label stack (EtherType 0x8847): labels 100,
    101, ..., TTL 64, the bottom-of-stack bit on the last one (unless bottom=False)."""
    stack = b"".join(struct.pack("!I", (100 + i) << 12 | (0x100 if bottom and i == labels - 1
                                                           else 0) | 64) for i in range(labels))
    return frame[:12] + b"\x88\x47" + stack + frame[ETH:]


class Rewriting:
    """Stands in for a Replayer in TcpConv, rewriting every frame before it is run (adds IP
    options, VLAN EtherTypes, padding...)."""

    def __init__(self, rp, fn):
        self.rp, self.fn = rp, fn

    def run(self, frame, ts_ns, *args, **kw):
        return self.rp.run(self.fn(bytes(frame)), ts_ns, *args, **kw)

    def flows(self):
        return self.rp.flows()


def bystanders(rp):
    """Four live flows, one per kind (TCP/UDP x IPv4/IPv6), all ESTABLISHED. The malformed
    frames below reuse their addresses and ports, so a parser that let one through would land
    on (and change) one of them."""
    clock = Clock()
    tcp4 = TcpConv(rp, client=C4, server=S4, clock=clock)
    tcp6 = TcpConv(rp, client=C6, server=S6, clock=clock)
    for conv in (tcp4, tcp6):
        assert [r.klass for r in conv.handshake()] == ["NEW", "ESTABLISHED", "ESTABLISHED"]
    for (c, s) in ((U4, U4S), (U6, U6S)):
        assert rp.run(udp_frame(*c, *s), clock.advance(0.001)).klass == "NEW"
        assert rp.run(udp_frame(*s, *c), clock.advance(0.001)).klass == "ESTABLISHED"
    assert len(table(rp)) == 4
    return SimpleNamespace(rp=rp, clock=clock, tcp4=tcp4, tcp6=tcp6)


def seg4(b, flags="PA", data=b"hello", **kw):
    """The client's next segment on the IPv4 TCP flow, as a scapy packet (not sent)."""
    return b.tcp4.build(b.tcp4.cli, flags, data, **kw)[0]


def seg6(b, flags="PA", data=b"hello", **kw):
    return b.tcp6.build(b.tcp6.cli, flags, data, **kw)[0]


def tcp6_via(b, *exts, flags="PA", data=b"hello"):
    """The IPv6 client's next segment behind the given extension headers."""
    tcp = seg6(b, flags, data)[TCP]
    l3 = IPv6(src=C6[0], dst=S6[0])
    for h in exts:
        l3 = l3 / h
    return eth(l3 / tcp)


def udp4(payload=b"query"):
    return udp_frame(*U4, *U4S, payload)


def udp6(payload=b"query"):
    return udp_frame(*U6, *U6S, payload)


def with_tcp_flags(frame, l4off, flags):
    return poke(frame, l4off + 13, bytes([flags]))


def syn_with_raw_options(b, opts):
    """A SYN on the IPv4 TCP flow's 5-tuple with a raw option block (padded to 4 bytes)."""
    opts = opts + b"\x00" * (-len(opts) % 4)
    pkt = seg4(b, "S", b"", options=[])
    raw = bytearray(bytes(pkt))
    doff = 5 + len(opts) // 4
    tcp = raw[ETH + 20:ETH + 40]
    tcp[12] = doff << 4
    ip = raw[ETH:ETH + 20]
    ip[2:4] = struct.pack("!H", 20 + doff * 4)
    return bytes(raw[:ETH]) + bytes(ip) + bytes(tcp) + opts


def add_ipv4_options(nwords):
    """A frame rewriter inserting nwords*4 bytes of IPv4 options (Router Alert, then NOPs)."""
    opts = (b"\x94\x04\x00\x00" + b"\x01" * 40)[:nwords * 4]

    def fn(frame):
        ip = bytearray(frame[ETH:ETH + 20])
        assert ip[0] == 0x45
        ip[0] = 0x40 | (5 + nwords)
        ip[2:4] = struct.pack("!H", struct.unpack("!H", ip[2:4])[0] + len(opts))
        return frame[:ETH] + bytes(ip) + opts + frame[ETH + 20:]
    return fn


def non_first_fragment4():
    return eth(IP(src=C4[0], dst=S4[0], proto=6, flags=0, frag=185) / Raw(b"z" * 64))


# ---- malformed frames: (id, reason, builder(bystanders) -> (bad frame, undamaged control)) ----
def _l2(b):
    good = bytes(seg4(b))
    return [
        ("l2-vlan-ethertype-no-tag", MACS + b"\x81\x00", good),
        ("l2-vlan-tag-half", MACS + b"\x81\x00\x00", good),
        ("l2-8021ad-ethertype-no-tag", MACS + b"\x88\xa8", good),
        ("l2-qinq-inner-tag-missing", MACS + b"\x88\xa8\x00\x64\x81\x00", good),
        # PPPoE: the session header cut short; a length too short for PPP's protocol field
        ("pppoe-header-cut", pppoe(good)[:ETH + 5], pppoe(good)),
        ("pppoe-protocol-cut", pppoe(good)[:ETH + 7], pppoe(good)),
        ("pppoe-length-below-2", pppoe(good, length=1), pppoe(good)),
        # MPLS: a label cut short; a stack whose bottom is the frame's end
        ("mpls-label-cut", mpls(good)[:ETH + 3], mpls(good)),
        ("mpls-second-label-cut", mpls(good, 2)[:ETH + 6], mpls(good, 2)),
        ("mpls-nothing-after-stack", mpls(good)[:ETH + 4], mpls(good)),
    ]


def _tags(b):
    tcp = seg4(b)[IP]
    good = eth(Dot1Q(vlan=20) / tcp, 0x88A8)
    return [
        ("three-8021q-tags", eth(Dot1Q(vlan=10) / Dot1Q(vlan=20) / Dot1Q(vlan=30) / tcp), good),
        ("8021ad-plus-two-8021q", eth(Dot1Q(vlan=10) / Dot1Q(vlan=20) / Dot1Q(vlan=30) / tcp,
                                      0x88A8), good),
        ("nine-tags", eth(Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / Dot1Q(vlan=4)
                          / Dot1Q(vlan=5) / Dot1Q(vlan=6) / Dot1Q(vlan=7) / Dot1Q(vlan=8) / tcp),
         good),
        # MPLS: nine labels (CT_MAX_MPLS_LABELS is 8), or eight without the bottom-of-stack bit
        ("mpls-nine-labels", mpls(eth(tcp), 9), mpls(eth(tcp), 8)),
        ("mpls-no-bottom-of-stack", mpls(eth(tcp), 8, bottom=False) + bytes(8), mpls(eth(tcp), 8)),
    ]


def _ip_truncated(b):
    g4, g6 = bytes(seg4(b)), bytes(seg6(b))
    tot4 = len(g4) - ETH
    return [
        ("ipv4-total-length-beyond-frame", poke(g4, ETH + 2, struct.pack("!H", tot4 + 1)), g4),
        ("ipv4-header-cut", g4[:ETH + 12], g4),
        ("ipv4-options-cut", add_ipv4_options(10)(g4)[:ETH + 40], g4),
        ("ipv6-payload-length-beyond-frame",
         poke(g6, ETH + 4, struct.pack("!H", len(g6) - ETH - 40 + 1)), g6),
        ("ipv6-header-cut", g6[:ETH + 30], g6),
    ]


def _ip_version(b):
    g4, g6 = bytes(seg4(b)), bytes(seg6(b))
    return [
        ("ipv4-ethertype-version-6", poke(g4, ETH, b"\x65"), g4),
        ("ipv4-ethertype-version-0", poke(g4, ETH, b"\x05"), g4),
        ("ipv6-ethertype-version-4", poke(g6, ETH, b"\x40"), g6),
    ]


def _ihl(b):
    g4 = bytes(seg4(b))
    return [(f"ihl-{n}", poke(g4, ETH, bytes([0x40 | n])), g4) for n in (0, 1, 4)]


def _ip_length(b):
    g4 = bytes(seg4(b))
    opt = add_ipv4_options(1)(g4)
    return [
        ("total-length-19", poke(g4, ETH + 2, struct.pack("!H", 19)), g4),
        ("total-length-0", poke(g4, ETH + 2, struct.pack("!H", 0)), g4),
        ("total-length-below-options", poke(opt, ETH + 2, struct.pack("!H", 23)), opt),
    ]


def _ip6_ext_truncated(b):
    g6 = bytes(seg6(b))
    # hop-by-hop header claiming 8 * (1 + 10) bytes; the packet has 8 + TCP
    hbh = tcp6_via(b, IPv6ExtHdrHopByHop())
    long_hbh = poke(hbh, ETH + 40 + 1, b"\x0a")
    # next header says hop-by-hop, payload length 4: not even the 8-byte minimum fits
    cut = eth(IPv6(src=C6[0], dst=S6[0], nh=0, plen=4) / Raw(b"\x06\x00\x00\x00"))
    # two headers fine, the routing header's length runs past the payload
    rh = poke(tcp6_via(b, IPv6ExtHdrDestOpt(), IPv6ExtHdrRouting()), ETH + 48 + 1, b"\x20")
    return [
        ("hbh-length-beyond-payload", long_hbh, g6),
        ("ext-header-cut", cut, g6),
        ("routing-length-beyond-payload", rh, g6),
    ]


def _ip6_ext_limit(b):
    hdrs = [IPv6ExtHdrHopByHop()] + [IPv6ExtHdrDestOpt() for _ in range(6)]
    return [("seven-ext-headers", tcp6_via(b, *hdrs), tcp6_via(b, *hdrs[:6]))]


def _l4_truncated(b):
    g4, g6 = bytes(seg4(b)), bytes(seg6(b))
    tcp4 = bytes(seg4(b, data=b"")[TCP])
    tcp6 = bytes(seg6(b, data=b"")[TCP])
    u4, u6 = udp4(), udp6()
    first_frag = IP(src=C4[0], dst=S4[0], proto=6, flags="MF", frag=0)
    frag6 = IPv6ExtHdrFragment(offset=0, m=1, nh=6, id=7)
    return [
        ("tcp4-header-cut", eth(IP(src=C4[0], dst=S4[0], proto=6) / Raw(tcp4[:10])), g4),
        ("tcp6-header-cut", eth(IPv6(src=C6[0], dst=S6[0], nh=6) / Raw(tcp6[:19])), g6),
        ("udp4-header-cut",
         eth(IP(src=U4[0], dst=U4S[0], proto=17) / Raw(u4[ETH + 20:ETH + 24])), u4),
        ("udp6-header-cut",
         eth(IPv6(src=U6[0], dst=U6S[0], nh=17) / Raw(u6[ETH + 40:ETH + 44])), u6),
        ("tiny-first-fragment-ipv4", eth(first_frag / Raw(tcp4[:8])), g4),
        ("tiny-first-fragment-ipv6", eth(IPv6(src=C6[0], dst=S6[0]) / frag6 / Raw(tcp6[:8])), g6),
        ("icmp-4-bytes", eth(IP(src=C4[0], dst=S4[0], proto=1) / Raw(b"\x08\x00\x00\x00")), g4),
        ("icmpv6-4-bytes", eth(IPv6(src=C6[0], dst=S6[0], nh=58) / Raw(b"\x80\x00\x00\x00")), g6),
    ]


def _doff(b):
    g4 = bytes(seg4(b, data=b"12345678"))   # 20 + 8 bytes: a data offset of 8 (32) overruns
    doff = ETH + 20 + 12
    return [
        ("doff-0", poke(g4, doff, b"\x00"), g4),
        ("doff-4", poke(g4, doff, b"\x40"), g4),
        ("doff-8-beyond-segment", poke(g4, doff, b"\x80"), g4),
        ("doff-15-beyond-segment", poke(g4, doff, b"\xf0"), g4),
    ]


def _options(b):
    # The control is a well-formed SYN on the live flow: it is remembered as an ignored SYN,
    # which changes the entry (a SYN with broken options must not get that far).
    good = syn_with_raw_options(b, b"\x02\x04\x05\xb4\x01\x03\x03\x07")
    return [
        ("mss-length-past-header", syn_with_raw_options(b, b"\x02\x08\x05\xb4"), good),
        ("length-0", syn_with_raw_options(b, b"\x1e\x00\x01\x01"), good),
        ("length-1", syn_with_raw_options(b, b"\xfd\x01\x01\x01"), good),
        ("kind-without-length-byte", syn_with_raw_options(b, b"\x01\x01\x01\x03"), good),
        ("unknown-kind-past-header", syn_with_raw_options(b, b"\x02\x04\x05\xb4\xfe\x10\x00\x00"),
         good),
    ]


def _flags(b):
    g4 = bytes(seg4(b))
    off = ETH + 20
    combos = {"syn-fin": 0x03, "syn-rst": 0x06, "syn-fin-ack": 0x13, "fin-alone": 0x01,
              "no-flags": 0x00, "all-flags": 0xFF, "xmas-fin-psh-urg": 0x29, "rst-fin": 0x05,
              "psh-alone": 0x08, "urg-alone": 0x20}
    return [(name, with_tcp_flags(g4, off, v), g4) for name, v in combos.items()]


def _udp_length(b):
    u4, u6 = udp4(b"query"), udp6(b"query")
    ulen4, ulen6 = ETH + 20 + 4, ETH + 40 + 4
    return [
        ("udp4-length-0", poke(u4, ulen4, b"\x00\x00"), u4),
        ("udp4-length-7", poke(u4, ulen4, b"\x00\x07"), u4),
        ("udp4-length-beyond-ip-payload", poke(u4, ulen4, struct.pack("!H", 8 + 5 + 1)), u4),
        ("udp6-length-beyond-ip-payload", poke(u6, ulen6, struct.pack("!H", 8 + 5 + 1)), u6),
    ]


GROUPS = [
    ("l2_truncated", _l2), ("l2_too_many_tags", _tags), ("ip_truncated", _ip_truncated),
    ("ip_bad_version", _ip_version), ("ip_bad_ihl", _ihl), ("ip_bad_length", _ip_length),
    ("ip6_ext_truncated", _ip6_ext_truncated), ("ip6_ext_limit", _ip6_ext_limit),
    ("l4_truncated", _l4_truncated), ("tcp_bad_doff", _doff), ("tcp_bad_options", _options),
    ("tcp_bad_flags", _flags), ("udp_bad_length", _udp_length),
]


def _case_ids():
    """(reason, group builder, case name) for every case. The builders need live flows, so the
    names are listed here from a throwaway namespace that only builds frames."""
    fake = SimpleNamespace(tcp4=TcpConv(None, client=C4, server=S4),
                           tcp6=TcpConv(None, client=C6, server=S6))
    out = []
    for reason, group in GROUPS:
        for name, _, _ in group(fake):
            out.append(pytest.param(reason, group, name, id=f"{reason}:{name}"))
    return out


CASES = _case_ids()


def _build(b, group, name):
    for n, bad, good in group(b):
        if n == name:
            return bad, good
    raise KeyError(name)


def test_every_parse_reason_is_covered():
    """Every enum ct_reason value a parser can return has a case here (table_full and the
    tcp_* window/state reasons come from the state machine, not the parser; the icmp_* ones,
    whose control is a RELATED packet that leaves the table as it is, in test_icmp.py)."""
    from ctrack.engine.defs import defs
    names = {n.lower() for n in defs().ct_reason.names()}
    parse = {r for r, _ in GROUPS}
    assert parse <= names
    state_machine = {"none", "tcp_no_flow", "tcp_seq_window", "tcp_ack_window", "tcp_rst_window",
                     "tcp_bad_synack", "tcp_unexpected", "table_full",
                     "icmp_bad_inner", "icmp_no_flow", "icmp_seq_window", "icmp_misdirected"}
    assert names - parse == state_machine


# ---- malformed frames ---------------------------------------------------------------------------
@pytest.mark.parametrize("reason, group, name", CASES)
def test_malformed_is_invalid_and_touches_no_flow(rp, reason, group, name):
    b = bystanders(rp)
    bad, good = _build(b, group, name)
    # A flag combination no TCP sends is still a packet of its flow for Zeek's history (I, Q):
    # the entry's Zeek record may change, nothing else may.
    see = table_without_zeek if reason == "tcp_bad_flags" else table
    before = see(rp)
    r = rp.run(bad, b.clock.advance(0.001))
    assert (r.klass, r.reason, r.verdict, r.flow) == ("INVALID", reason, "pass", None)
    assert see(rp) == before
    t = rp.trace[rp.trace.Key(0)]
    assert not t.parsed or reason == "tcp_bad_flags"

    # Statistics: on a fresh table, exactly one INVALID packet of this reason, no flow created.
    rp.tracker.reset()
    r = rp.run(bad, b.clock.advance(0.001))
    assert (r.klass, r.reason) == ("INVALID", reason)
    st = rp.tracker.stats()
    assert (st["packets"], st["class.invalid"], st[f"reason.{reason}"]) == (1, 1, 1)
    assert st["flows_created"] == 0 and st["action.pass"] == 1
    assert table(rp) == {}

    # Control: the undamaged frame reaches a flow (so the checks above could have failed).
    b = bystanders(rp)
    before = table(rp)
    r = rp.run(good, b.clock.advance(0.001))
    assert r.klass in ("NEW", "ESTABLISHED") and r.reason is None, r
    assert table(rp) != before


@pytest.mark.parametrize("reason, group, name", CASES)
def test_malformed_is_dropped_when_enforcing(replayer, reason, group, name):
    rp = replayer(policy="enforce")
    b = bystanders(rp)       # valid traffic passes an enforcing tracker
    bad, _ = _build(b, group, name)
    see = table_without_zeek if reason == "tcp_bad_flags" else table   # Zeek sees it (I, Q)
    before = see(rp)
    r = rp.run(bad, b.clock.advance(0.001))
    assert (r.klass, r.reason, r.verdict) == ("INVALID", reason, "drop")
    assert see(rp) == before
    st = rp.tracker.stats()
    assert st["action.drop"] == 1 and st[f"reason.{reason}"] == 1


@pytest.mark.parametrize("policy, verdict", [("observe", "pass"), ("enforce", "drop")])
@pytest.mark.parametrize("length", [0, 1, 12, 13])
def test_frame_shorter_than_ethernet(replayer, policy, verdict, length):
    """The kernel will not test-run a frame under 14 bytes; Replayer answers for the program
    (L2_TRUNCATED) without running it, so the statistics do not count it."""
    rp = replayer(policy=policy)
    b = bystanders(rp)
    before = table(rp)
    stats_before = rp.tracker.stats()
    r = rp.run(MACS[:length] if length <= 12 else MACS + b"\x08", b.clock.advance(0.001))
    assert (r.klass, r.reason, r.verdict, r.flow) == ("INVALID", "l2_truncated", verdict, None)
    assert table(rp) == before
    assert rp.tracker.stats() == stats_before


# ---- valid frames the parser must accept ---------------------------------------------------------
@pytest.mark.parametrize("ihl", range(6, 16), ids=lambda n: f"ihl-{n}")
def test_ipv4_options_are_skipped(rp, ihl):
    conv = TcpConv(Rewriting(rp, add_ipv4_options(ihl - 5)))
    assert [r.klass for r in conv.handshake()] == ["NEW", "ESTABLISHED", "ESTABLISHED"]
    r = conv.c("PA", b"x" * 100)
    assert (r.klass, states(r)) == ("ESTABLISHED", EST)
    # the payload is found after the options: the server's ACK of exactly those 100 bytes is
    # in window, one byte more would acknowledge data never sent
    assert conv.s("A").klass == "ESTABLISHED"
    r = conv.s("A", ack=conv.cli.nxt + 1)
    assert (r.klass, r.reason) == ("INVALID", "tcp_ack_window")
    opt = (ihl - 5) * 4
    f = conv.flow()
    assert f["packets"] == [3, 2]
    assert f["bytes"] == [60 + 40 + 140 + 3 * opt, 60 + 40 + 2 * opt]


MPTCP_CAPABLE = (30, b"\x00\x81" + bytes(range(8)))            # MP_CAPABLE v0 with a key
UNKNOWN_OPTIONS = {
    "rfc6994-exp-253": [("MSS", 1460), (253, b"\x12\x34\xab\xcd"), ("NOP", None), ("WScale", 7)],
    "rfc6994-exp-254-exid-only": [(254, b"\xf9\x89"), ("MSS", 1460), ("WScale", 7)],
    "mptcp-30": [("MSS", 1460), ("SAckOK", b""), MPTCP_CAPABLE, ("NOP", None), ("WScale", 7)],
    "tfo-34-cookie": [("MSS", 1460), (34, b"cookie!!"), ("SAckOK", b""), ("NOP", None),
                      ("WScale", 7)],
    "tfo-34-request": [(34, b""), ("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)),
                       ("NOP", None), ("WScale", 7)],
    "unassigned-kind-99": [(99, b"\x00" * 6), ("MSS", 1460), ("NOP", None), ("WScale", 7)],
}


def entry_of(rp):
    (k, v), = rp.tracker.flows.items()
    return v


@pytest.mark.parametrize("opts", list(UNKNOWN_OPTIONS.values()), ids=list(UNKNOWN_OPTIONS))
def test_unknown_syn_options_are_skipped(rp, opts):
    conv = TcpConv(rp)
    r = conv.c("S", options=opts)
    assert (r.klass, r.reason) == ("NEW", None)
    e = entry_of(rp)
    # MSS and window scale, wherever they sit relative to the unknown option, were read
    assert (e.dir[0].mss, e.dir[0].wscale) == (1460, 7)
    assert conv.s("SA").klass == "ESTABLISHED"
    assert states(conv.c("A")) == EST
    # With both sides scaling by 7 the client's 65535 window is 8 MiB: a server segment 1 MB
    # ahead is inside it. Unscaled (the option missed) it would be out of window.
    r = conv.s("PA", b"x" * 100, seq=conv.srv.nxt + 1_000_000, advance=False)
    assert (r.klass, r.reason) == ("ESTABLISHED", None)


def test_unknown_syn_options_without_wscale_control(rp):
    """The control for the test above: without window scale the same segment is out of window."""
    conv = TcpConv(rp)
    conv.c("S", options=[("MSS", 1460), (253, b"\x12\x34\xab\xcd")])
    conv.s("SA")
    conv.c("A")
    assert entry_of(rp).dir[0].wscale == 0
    r = conv.s("PA", b"x" * 100, seq=conv.srv.nxt + 1_000_000, advance=False)
    assert (r.klass, r.reason) == ("INVALID", "tcp_seq_window")


def test_options_are_not_parsed_outside_syns(rp):
    """The parser reads options in SYNs only (documented in ct_parse): a broken option block in
    an ACK is not its business."""
    conv = TcpConv(rp)
    conv.handshake()
    r = conv.c("PA", b"data", options=[(253, b"")])
    assert r.klass == "ESTABLISHED"
    pkt, _ = conv.build(conv.cli, "A", options=[("NOP", None)] * 4)
    raw = poke(bytes(pkt), ETH + 20 + 20, b"\x02\x09\x05\xb4")   # MSS of length 9 in 4 bytes
    assert rp.run(raw, conv.clock.advance(0.001)).klass == "ESTABLISHED"


EXT_CHAINS = {
    "hbh": [IPv6ExtHdrHopByHop()],
    "hbh-dstopts-frag0": [IPv6ExtHdrHopByHop(), IPv6ExtHdrDestOpt(),
                          IPv6ExtHdrFragment(offset=0, m=0, id=1)],
    "hbh-dstopts-frag0-more": [IPv6ExtHdrHopByHop(), IPv6ExtHdrDestOpt(),
                               IPv6ExtHdrFragment(offset=0, m=1, id=2)],
    "routing-dstopts": [IPv6ExtHdrRouting(addresses=["fd00::9"]), IPv6ExtHdrDestOpt()],
    "ah": [Raw(b"")],   # placeholder, built by hand below
    "six-headers": [IPv6ExtHdrHopByHop()] + [IPv6ExtHdrDestOpt() for _ in range(5)],
}


def ipv6_with_ext(chain_name):
    """A frame rewriter putting the named extension header chain in front of the TCP header."""
    def fn(frame):
        p = Ether(frame)
        tcp = p[TCP]
        del tcp.chksum
        base = IPv6(src=p[IPv6].src, dst=p[IPv6].dst)
        if chain_name == "ah":
            # AH: next header, length in 4-byte words minus 2 (24 bytes: 4), SPI, seq, 12-byte ICV
            ah = bytes([6, 4, 0, 0]) + struct.pack("!II", 0x100, 1) + bytes(12)
            l3 = IPv6(src=p[IPv6].src, dst=p[IPv6].dst, nh=51) / Raw(ah + bytes(tcp))
            return eth(l3)
        l3 = base
        for h in EXT_CHAINS[chain_name]:
            l3 = l3 / h.copy()
        return eth(l3 / tcp)
    return fn


@pytest.mark.parametrize("chain", list(EXT_CHAINS))
def test_ipv6_extension_headers_are_walked(rp, chain):
    conv = TcpConv(Rewriting(rp, ipv6_with_ext(chain)), client=C6, server=S6)
    res = conv.handshake()
    assert [r.klass for r in res] == ["NEW", "ESTABLISHED", "ESTABLISHED"]
    assert states(res[-1]) == EST
    r = conv.c("PA", b"x" * 10)
    assert (r.klass, r.reason) == ("ESTABLISHED", None)
    assert rp.tracker.stats()["fragments"] == 0


def test_ipv4_first_fragment_is_tracked_by_its_header(rp):
    b = bystanders(rp)
    pkt = seg4(b, data=b"x" * 64)
    pkt[IP].flags = "MF"
    r = rp.run(bytes(pkt), b.clock.advance(0.001))
    assert (r.klass, r.reason) == ("ESTABLISHED", None)


def send_fragmented(conv, family, flags="PA", size=2000):
    """The client's next segment of `size` bytes, in two IP fragments (the tracker sees the
    first, tracked by its TCP header, and passes the second untracked)."""
    client, server = (conv.cli.addr, conv.srv.addr)
    pkt, _ = conv.build(conv.cli, flags, b"x" * size)
    if family == 4:
        frags = [eth(f) for f in fragment(pkt[IP], fragsize=1480)]
    else:
        tcp = bytes(pkt[TCP])
        hdr = IPv6(src=client, dst=server)
        frags = [eth(hdr / IPv6ExtHdrFragment(nh=6, offset=0, m=1, id=77) / Raw(tcp[:1448])),
                 eth(hdr / IPv6ExtHdrFragment(nh=6, offset=1448 // 8, m=0, id=77)
                     / Raw(tcp[1448:]))]
    assert len(frags) == 2
    r = conv.rp.run(frags[0], conv.clock.advance(0.001))
    assert (r.klass, r.reason) == ("ESTABLISHED", None)
    assert conv.rp.run(frags[1], conv.clock.advance(0.001)).klass == "UNTRACKED"
    conv.cli.nxt += size + ("F" in flags)
    return r


def fragmented_conv(rp, family):
    client, server = (C4, S4) if family == 4 else (C6, S6)
    conv = TcpConv(rp, client=client, server=server)
    conv.handshake()
    return conv


@pytest.mark.parametrize("family", [4, 6])
def test_ack_of_fragmented_tcp_segment(rp, family):
    """No reassembly: the tracker sees only the first fragment's part of the segment, yet the
    peer's ACK of all of it must be valid."""
    conv = fragmented_conv(rp, family)
    send_fragmented(conv, family)
    r = conv.s("A")   # acknowledges the 2000 bytes the client sent
    assert (r.klass, r.reason) == ("ESTABLISHED", None)
    # That ACK settled where the segment ended: acknowledging one byte more is invalid again.
    r = conv.s("A", ack=conv.cli.nxt + 1, advance=False)
    assert (r.klass, r.reason) == ("INVALID", "tcp_ack_window")


@pytest.mark.parametrize("family", [4, 6])
def test_fragmented_segment_does_not_open_the_ack_window_wide(rp, family):
    """After a fragmented segment the peer's ACK may go past what the tracker saw, but not past
    the window the peer itself offered (8 MiB here: 65535 scaled by 7)."""
    conv = fragmented_conv(rp, family)
    send_fragmented(conv, family)
    r = conv.s("A", ack=conv.cli.nxt + 20_000_000, advance=False)
    assert (r.klass, r.reason) == ("INVALID", "tcp_ack_window")
    assert conv.s("A").klass == "ESTABLISHED"


@pytest.mark.parametrize("family", [4, 6])
def test_fragmented_segment_with_fin_closes_normally(rp, family):
    conv = fragmented_conv(rp, family)
    send_fragmented(conv, family, flags="FPA")
    r = conv.s("FA")   # acknowledges data and FIN, sends its own FIN
    assert (r.klass, r.reason, states(r)) == ("ESTABLISHED", None,
                                              ("LAST_ACK", "TIME_WAIT", "LAST_ACK"))
    assert states(conv.c("A")) == ("TIME_WAIT", "TIME_WAIT", "CLOSE")


@pytest.mark.parametrize("family", [4, 6])
def test_udp_first_fragment_is_tracked(rp, family):
    b = bystanders(rp)
    if family == 4:
        l3 = IP(src=U4[0], dst=U4S[0], flags="MF", frag=0)
        frag = l3 / UDP(sport=U4[1], dport=U4S[1], len=8 + 2000) / Raw(b"d" * 1000)
    else:
        l3 = IPv6(src=U6[0], dst=U6S[0]) / IPv6ExtHdrFragment(offset=0, m=1, id=9)
        frag = l3 / UDP(sport=U6[1], dport=U6S[1], len=8 + 2000) / Raw(b"d" * 1000)
    r = rp.run(eth(frag), b.clock.advance(0.001))
    assert (r.klass, r.reason) == ("ESTABLISHED", None)


@pytest.mark.parametrize("kind", ["ipv4", "ipv6", "ipv6-after-hbh"])
def test_non_first_fragment_is_untracked_and_counted(rp, kind):
    b = bystanders(rp)
    if kind == "ipv4":
        frame = non_first_fragment4()
    else:
        exts = [IPv6ExtHdrHopByHop()] if kind == "ipv6-after-hbh" else []
        l3 = IPv6(src=C6[0], dst=S6[0])
        for h in exts:
            l3 = l3 / h
        # the bytes look like a TCP header of the live flow: they must not be read as one
        frame = eth(l3 / IPv6ExtHdrFragment(offset=100, m=0, nh=6, id=3)
                    / Raw(bytes(seg6(b)[TCP])))
    before = table(rp)
    stats_before = rp.tracker.stats()
    r = rp.run(frame, b.clock.advance(0.001))
    assert (r.klass, r.reason, r.verdict, r.flow) == ("UNTRACKED", None, "pass", None)
    assert table(rp) == before
    st = rp.tracker.stats()
    assert st["fragments"] == stats_before["fragments"] + 1 == 1
    assert st["class.untracked"] == 1


def test_non_first_fragment_passes_when_enforcing(replayer):
    rp = replayer(policy="enforce")
    r = rp.run(non_first_fragment4(), 10**9)
    assert (r.klass, r.verdict) == ("UNTRACKED", "pass")


NON_IP = {
    "arp": eth(ARP(psrc="10.1.0.1", pdst="10.2.0.2")),
    "arp-in-vlan": eth(Dot1Q(vlan=5) / ARP(psrc="10.1.0.1", pdst="10.2.0.2")),
    # deeper than the tracker follows IP, but not IP: still not ours
    "arp-in-three-tags": eth(Dot1Q(vlan=5) / Dot1Q(vlan=6) / Dot1Q(vlan=7)
                             / ARP(psrc="10.1.0.1", pdst="10.2.0.2"), 0x88A8),
    "lldp": MACS[:6] + b"\x01\x80\xc2\x00\x00\x0e" + b"\x88\xcc" + bytes.fromhex(
        "0207040200000000010203070301020601780000"),
    "unknown-ethertype-88b5": MACS + b"\x88\xb5" + b"\x45" * 46,
    "ipx-8137": MACS + b"\x81\x37" + bytes(46),
    "icmp-echo": eth(IP(src=C4[0], dst=S4[0]) / ICMP()),
    "icmpv6-echo": eth(IPv6(src=C6[0], dst=S6[0]) / ICMPv6EchoRequest()),
    "sctp-ipv4": eth(IP(src=C4[0], dst=S4[0], proto=132) / Raw(bytes(12))),
    "ipv6-no-next-header": eth(IPv6(src=C6[0], dst=S6[0], nh=59)),
    # PPPoE: discovery (0x8863), PPP's own control (LCP 0xc021), a version/type not 0x11
    "pppoe-discovery-8863": MACS + b"\x88\x63" + bytes.fromhex("1109000000000101") + bytes(38),
    "pppoe-lcp": pppoe(eth(IP(src=C4[0], dst=S4[0]) / TCP(sport=C4[1], dport=S4[1])), ppp=0xc021),
    "pppoe-bad-version": pppoe(eth(IP(src=C4[0], dst=S4[0]) / TCP(sport=C4[1], dport=S4[1])),
                               vertype=0x21),
    # MPLS: after the stack, neither IPv4 nor IPv6 (a pseudowire's control word, then Ethernet)
    "mpls-pseudowire": mpls(MACS + b"\x08\x00" + bytes(4) + bytes(eth(IP(src=C4[0], dst=S4[0])
                                                                        / TCP(sport=C4[1], dport=S4[1])))),
}


@pytest.mark.parametrize("policy", ["observe", "enforce"])
@pytest.mark.parametrize("frame", list(NON_IP.values()), ids=list(NON_IP))
def test_not_tracked_passes_untouched(replayer, policy, frame):
    rp = replayer(policy=policy)
    b = bystanders(rp)
    before = table(rp)
    r = rp.run(frame, b.clock.advance(0.001))
    assert (r.klass, r.reason, r.verdict, r.flow) == ("UNTRACKED", None, "pass", None)
    assert table(rp) == before
    assert rp.tracker.stats()["class.untracked"] == 1


def set_outer_ethertype(value):
    def fn(frame):
        assert frame[12:14] == b"\x81\x00"
        return frame[:12] + struct.pack("!H", value) + frame[14:]
    return fn


@pytest.mark.parametrize("vlans, outer", [((10,), 0x8100), ((100, 10), 0x88A8),
                                          ((100, 10), 0x8100)],
                         ids=["8021q", "qinq-8021ad", "qinq-double-8021q"])
@pytest.mark.parametrize("family", [4, 6])
def test_vlan_tagged_conversation(rp, vlans, outer, family):
    client, server = (C4, S4) if family == 4 else (C6, S6)
    conv = TcpConv(Rewriting(rp, set_outer_ethertype(outer)), client=client, server=server,
                   vlans=vlans)
    assert states(conv.c("S")) == ("SYN_SENT", "SYN_SENT", "SYN_RECV")
    assert states(conv.s("SA")) == ("SYN_RECV", "ESTABLISHED", "SYN_RECV")
    assert states(conv.c("A")) == EST
    assert states(conv.c("FA")) == ("FIN_WAIT", "FIN_WAIT1", "CLOSE_WAIT")
    assert states(conv.s("FA")) == ("LAST_ACK", "TIME_WAIT", "LAST_ACK")
    assert states(conv.c("A")) == ("TIME_WAIT", "TIME_WAIT", "CLOSE")
    # the same addresses without tags are the same flow: VLANs are not part of the key
    assert len(rp.flows()) == 1


ENCAPS = {"pppoe": pppoe, "mpls-1": mpls, "mpls-3": lambda f: mpls(f, 3),
          "vlan-pppoe": lambda f: f[:12] + b"\x81\x00\x00\x0a" + pppoe(f)[12:],
          "vlan-mpls-2": lambda f: f[:12] + b"\x81\x00\x00\x0a" + mpls(f, 2)[12:]}


@pytest.mark.parametrize("encap", list(ENCAPS))
@pytest.mark.parametrize("family", [4, 6])
def test_pppoe_and_mpls_conversation(rp, encap, family):
    """IPv4 and IPv6 inside PPPoE sessions and under MPLS label stacks (provider-edge links),
    behind a VLAN tag too: the same flow as without them, the same states, IP-layer bytes."""
    client, server = (C4, S4) if family == 4 else (C6, S6)
    conv = TcpConv(Rewriting(rp, ENCAPS[encap]), client=client, server=server)
    assert states(conv.c("S")) == ("SYN_SENT", "SYN_SENT", "SYN_RECV")
    assert states(conv.s("SA")) == ("SYN_RECV", "ESTABLISHED", "SYN_RECV")
    assert states(conv.c("A")) == EST
    assert states(conv.c("PA", b"hello")) == EST
    (f,) = rp.flows()
    ip = 20 if family == 4 else 40
    assert f["packets"] == [3, 1] and f["bytes"][0] == 3 * (ip + 20) + 20 + 5   # + SYN options
    plain = TcpConv(rp, client=client, server=server, clock=conv.clock)
    plain.cli.nxt, plain.srv.nxt = conv.cli.nxt, conv.srv.nxt
    assert plain.s("A").klass == "ESTABLISHED" and len(rp.flows()) == 1   # the same flow


def pad_to(extra):
    def fn(frame):
        return frame + b"\xee" * extra
    return fn


@pytest.mark.parametrize("extra", [6, 200], ids=["min-frame-pad", "200-byte-trailer"])
@pytest.mark.parametrize("family", [4, 6])
def test_ethernet_padding_is_not_counted(rp, extra, family):
    client, server = (C4, S4) if family == 4 else (C6, S6)
    hdr = 40 if family == 4 else 60
    conv = TcpConv(Rewriting(rp, pad_to(extra)), client=client, server=server)
    conv.handshake()
    r = conv.c("PA", b"abc")
    assert (r.klass, r.reason) == ("ESTABLISHED", None)
    # the trailer is not payload: the server may acknowledge exactly 3 bytes, not more
    r = conv.s("A", ack=conv.cli.nxt + 1, advance=False)
    assert (r.klass, r.reason) == ("INVALID", "tcp_ack_window")
    assert conv.s("A").klass == "ESTABLISHED"
    f = conv.flow()
    assert f["bytes"] == [(hdr + 20) + hdr + (hdr + 3), (hdr + 20) + hdr]

    u = udp_frame(*U4, *U4S, b"q") if family == 4 else udp_frame(*U6, *U6S, b"q")
    assert rp.run(u + b"\x00" * extra, conv.clock.advance(0.001)).klass == "NEW"
    (uf,) = [x for x in rp.flows() if x["proto"] == "udp"]
    assert uf["bytes"] == [(hdr - 20) + 8 + 1, 0]


def test_big_tcp_total_length_zero(rp):
    """BIG TCP: an IPv4 GSO packet over 64 KiB carries total length 0; the tracker takes the
    packet's length instead (here the replay's wire length beside a cut frame)."""
    conv = TcpConv(rp)
    conv.handshake()
    size = 100_000
    pkt, _ = conv.build(conv.cli, "PA", b"x" * 2000)
    frame = poke(bytes(pkt), ETH + 2, b"\x00\x00")
    r = rp.run(frame, conv.clock.advance(0.001), wire_len=ETH + size)
    assert (r.klass, r.reason) == ("ESTABLISHED", None)
    assert conv.flow()["bytes"][0] == 60 + 40 + size
    # the server may acknowledge all of it (payload = size - 40)
    r = conv.s("A", ack=conv.cli.nxt + size - 40, advance=False)
    assert (r.klass, r.reason) == ("ESTABLISHED", None)


@pytest.mark.parametrize("caplen, klass, reason", [
    (ETH + 20 + 12, "INVALID", "l4_truncated"),   # cut inside the TCP header
    (ETH + 20 + 20, "ESTABLISHED", None),         # tcpdump -s 54: headers only
    (96, "ESTABLISHED", None),                     # tcpdump -s 96
], ids=["cut-in-tcp-header", "cut-after-tcp-header", "snaplen-96"])
def test_snaplen_cut_frame_is_judged_by_its_wire_length(rp, caplen, klass, reason):
    """A capture's frame cut by its snaplen comes with its length on the wire: the IP total
    length is checked against that, and the bytes counted are the IP total length."""
    conv = TcpConv(rp)
    conv.handshake()
    pkt, _ = conv.build(conv.cli, "PA", b"x" * 500)
    full = bytes(pkt)
    r = rp.run(full[:caplen], conv.clock.advance(0.001), wire_len=len(full))
    assert (r.klass, r.reason) == (klass, reason)
    if klass == "ESTABLISHED":
        assert conv.flow()["bytes"][0] == 60 + 40 + 540
        # and the segment's 500 bytes count as sent: the server may acknowledge them
        r = conv.s("A", ack=conv.cli.nxt + 500, advance=False)
        assert (r.klass, r.reason) == ("ESTABLISHED", None)
    # without its wire length the cut frame is an IP packet longer than its frame
    rp.tracker.reset()
    r = rp.run(full[:caplen], conv.clock.advance(0.001))
    assert (r.klass, r.reason) == ("INVALID", "ip_truncated")


def test_big_tcp_ipv6_payload_length_zero(rp):
    """IPv6 BIG TCP / jumbogram: payload length 0 on a packet over 64 KiB; the packet's length
    stands in for it."""
    conv = TcpConv(rp, client=C6, server=S6)
    conv.handshake()
    size = 100_000
    pkt, _ = conv.build(conv.cli, "PA", b"x" * 2000)
    frame = poke(bytes(pkt), ETH + 4, b"\x00\x00")
    r = rp.run(frame, conv.clock.advance(0.001), wire_len=ETH + size)
    assert (r.klass, r.reason) == ("ESTABLISHED", None)
    assert conv.flow()["bytes"][0] == 80 + 60 + size
    r = conv.s("A", ack=conv.cli.nxt + size - 60, advance=False)
    assert (r.klass, r.reason) == ("ESTABLISHED", None)


@pytest.mark.parametrize("nops", [0, 5, 11, 33])
def test_syn_options_read_whatever_their_number(rp, nops):
    """The option walk reads every item of a 40-byte option block, NOPs included: a window scale
    and an MSS behind 33 NOPs (as middleboxes leave them after blanking options they strip) are
    still read."""
    conv = TcpConv(rp)
    r = conv.c("S", options=[("NOP", None)] * nops + [("WScale", 7), ("MSS", 1400)])
    assert r.klass == "NEW"
    e = entry_of(rp)
    assert (e.dir[0].wscale, e.dir[0].mss) == (7, 1400)


def test_ecn_and_accecn_flags_are_valid(rp):
    """ECN negotiation sets ECE/CWR in the SYN and ECE in the SYN/ACK (RFC 3168); AccECN also
    sets AE, the bit before CWR in byte 12 (RFC 9768). None of them makes a combination
    invalid; URG with ACK and PSH is a valid data segment too."""
    conv = TcpConv(rp)
    assert conv.c("SEC").klass == "NEW"
    syn, _ = conv.sent[-1]
    assert bytes(syn[TCP])[13] == 0xC2
    r = conv.s("SAE")
    assert (r.klass, r.reason) == ("ESTABLISHED", None)
    pkt, _ = conv.build(conv.cli, "A")
    ae = poke(bytes(pkt), ETH + 20 + 12, bytes([bytes(pkt)[ETH + 20 + 12] | 0x01]))
    r = rp.run(ae, conv.clock.advance(0.001))
    assert (r.klass, r.reason, states(r)) == ("ESTABLISHED", None, EST)
    r = conv.c("PAU", b"!")
    assert (r.klass, r.reason) == ("ESTABLISHED", None)


def test_syn_options_cut_by_snaplen_are_read_as_far_as_they_go(rp):
    """An old capture cut at 68 bytes (tcpdump -s 68) holds only part of a SYN's options: the
    replay reads what is there instead of calling the SYN truncated, and the flow is tracked."""
    conv = TcpConv(rp)
    pkt, _ = conv.build(conv.cli, "S", options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)),
                                                   ("NOP", None), ("WScale", 7)])
    raw = bytes(pkt)
    conv.cli.nxt += 1
    r = rp.run(raw[:68], conv.clock.advance(0.001), wire_len=len(raw))
    assert (r.klass, r.reason) == ("NEW", None)
    e = entry_of(rp)
    assert e.dir[0].mss == 1460
    # a frame that is not known to be cut short stays malformed
    other = TcpConv(rp, client=("10.1.0.7", 999))
    pkt, _ = other.build(other.cli, "S")
    r = rp.run(bytes(pkt)[:68], other.clock.advance(0.001))
    assert r.reason in ("ip_truncated", "l4_truncated")

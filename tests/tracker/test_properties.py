"""Property tests (hypothesis): arbitrary and mutated frames against the real program.

Before each example four bystander flows are live (TCP and UDP, IPv4 and IPv6). Then one frame
is thrown at the tracker: random bytes, random bytes behind a plausible EtherType, or a real frame
of those conversations with bytes flipped, set, inserted, deleted or cut off.

What must hold, whatever the frame:
  * the program runs (the kernel never refuses it) and the result is well formed: a known class,
    a reason exactly when INVALID, a verdict that follows the policy;
  * a frame only ever acts on its own flow. The trace map says whether the program parsed the
    frame as TCP/UDP and which key it built. Every table entry that appears, disappears or
    changes by a single byte must have that key. A mutated frame that still parses to a
    bystander's 5-tuple may legitimately update the bystander (a retransmission, an ignored SYN,
    a window update, an in-window RST...); any other bystander stays byte-identical. (The table
    is far from full, so no eviction can legitimately remove someone else's entry.)
  * a frame that did not parse (not TCP/UDP, or malformed) changes nothing at all;
  * the statistics count it exactly once, under its class.
"""
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st
from hypothesis.errors import InvalidArgument
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Dot1Q, Ether

from ctrack.engine.defs import defs

from helpers.replayers import get_replayer
from helpers.wire import Clock, TcpConv, udp_frame

# Every class the program may answer, from kernel/ctrack.h (RELATED included: a mutated frame may
# become an ICMP error quoting a bystander).
CLASSES = set(defs().ct_class.names())
PARSE_REASONS = {"l2_truncated", "l2_too_many_tags", "ip_truncated", "ip_bad_version",
                 "ip_bad_ihl", "ip_bad_length", "ip6_ext_truncated", "ip6_ext_limit",
                 "l4_truncated", "tcp_bad_doff", "tcp_bad_options", "tcp_bad_flags",
                 "udp_bad_length"}
# the header's names, so that a renamed reason fails here rather than silently never matching
assert PARSE_REASONS <= {n.lower() for n in defs().ct_reason.names()}
MACS = bytes.fromhex("020000000002" "020000000001")
CONFIGS = {"observe": dict(), "enforce-pickup": dict(policy="enforce", pickup=True)}


class Recorder:
    """A Replayer stand-in for TcpConv that only records (frame, timestamp)."""

    def __init__(self):
        self.frames = []

    def run(self, frame, ts_ns, *a, **kw):
        self.frames.append((bytes(frame), ts_ns))


def _conversations():
    """The bystanders' frames (in order, with timestamps) and a pool of real frames to mutate."""
    rec = Recorder()
    clock = Clock()
    t4 = TcpConv(rec, client=("10.1.0.1", 40000), server=("10.2.0.2", 80), clock=clock)
    t4.handshake()
    t4.c("PA", b"GET / HTTP/1.1\r\n\r\n")
    t4.s("PA", b"HTTP/1.1 200 OK\r\n\r\n")
    t6 = TcpConv(rec, client=("fd00::1", 40001), server=("fd00::2", 443), clock=clock)
    t6.handshake()
    t6.s("PA", b"x" * 100)
    u4 = [udp_frame("10.1.0.1", 5353, "10.2.0.2", 53, b"q"),
          udp_frame("10.2.0.2", 53, "10.1.0.1", 5353, b"answer")]
    u6 = [udp_frame("fd00::1", 5353, "fd00::2", 53, b"q6")]
    for f in u4 + u6:
        rec.run(f, clock.advance(0.001))
    setup = list(rec.frames)

    # More real frames of the same flows, in shapes that reach other parser paths.
    extra = [bytes(t4.build(t4.cli, "FA")[0]), bytes(t4.build(t4.srv, "RA")[0]),
             bytes(t6.build(t6.cli, "A")[0]), bytes(t4.build(t4.cli, "S", seq=777)[0])]
    tcp6 = t6.build(t6.cli, "PA", b"hello")[0]
    extra.append(bytes(Ether() / IPv6(src="fd00::1", dst="fd00::2") / IPv6ExtHdrHopByHop()
                       / IPv6ExtHdrFragment(offset=0, m=0, id=5) / tcp6[TCP]))
    tcp4 = t4.build(t4.cli, "PA", b"more")[0]
    extra.append(bytes(Ether(type=0x88A8) / Dot1Q(vlan=100) / Dot1Q(vlan=10) / tcp4[IP]))
    extra.append(bytes(Ether() / IP(src="10.1.0.1", dst="10.2.0.2", options=[]) / tcp4[TCP]))
    # a new flow's SYN (to create one) and a UDP reply on IPv6
    fresh = TcpConv(rec, client=("10.9.0.1", 1234), server=("10.2.0.2", 80), clock=clock)
    extra.append(bytes(fresh.build(fresh.cli, "S")[0]))
    extra.append(udp_frame("fd00::2", 53, "fd00::1", 5353, b"a6"))
    return setup, [f for f, _ in setup] + extra, clock.now


SETUP, BASES, T_SETUP = _conversations()


def note(what):
    """hypothesis.event() (shown by --hypothesis-show-statistics), also outside @given."""
    try:
        event(what)
    except InvalidArgument:
        pass


def table(rp):
    return {bytes(k): bytes(v) for k, v in rp.tracker.flows.items()}


def fresh_replayer(config):
    """The config's replayer, reset, with the bystanders established. Returns (rp, table)."""
    rp = get_replayer(**CONFIGS[config])
    for frame, ts in SETUP:
        r = rp.run(frame, ts)
        assert r.klass in ("NEW", "ESTABLISHED"), r
    before = table(rp)
    assert len(before) == 4
    return rp, before


def check_frame(config, frame, dt):
    rp, before = fresh_replayer(config)
    stats_before = rp.tracker.stats()
    r = rp.run(frame, T_SETUP + int(dt * 1e9))
    after = table(rp)
    enforce = config.startswith("enforce")
    note(f"{r.klass} {r.reason or ''}".strip())   # --hypothesis-show-statistics shows the mix

    # A well-formed result.
    assert r.klass in CLASSES
    assert (r.reason is None) == (r.klass != "INVALID")
    assert r.verdict == ("drop" if enforce and r.klass == "INVALID" else "pass")
    if r.klass in ("NEW", "ESTABLISHED"):
        assert r.flow is not None and r.flow["state"] != "NONE"
    if r.klass == "UNTRACKED":
        assert r.flow is None

    if len(frame) < 14:
        # Not run at all (the kernel will not test-run it): nothing may have moved.
        assert (r.klass, r.reason) == ("INVALID", "l2_truncated")
        assert after == before and rp.tracker.stats() == stats_before
        return

    t = rp.trace[rp.trace.Key(0)]
    if r.reason == "tcp_bad_flags":
        # INVALID before any flow; its flow's Zeek history alone records it (I, Q): the table
        # is byte-identical but for Zeek's records.
        E = rp.tracker.flows.Leaf
        o, n = E.zeek.offset, E.zeek.size
        blank = lambda tb: {k: v[:o] + bytes(n) + v[o + n:] for k, v in tb.items()}
        assert blank(after) == blank(before)
    elif not t.parsed or r.klass == "UNTRACKED" or r.reason in PARSE_REASONS:
        # Nothing for a flow: the whole table is byte-identical.
        assert not t.parsed
        assert after == before
    else:
        key = bytes(t.key)
        touched = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        assert touched <= {key}, "a frame changed another flow's entry"
        if key in before:
            note("acted on a bystander" if touched else "matched a bystander, no change")
        if r.klass in ("NEW", "ESTABLISHED"):
            assert key in after

    # Counted once, under its class.
    st_after = rp.tracker.stats()
    assert st_after["packets"] == stats_before["packets"] + 1
    cls = f"class.{r.klass.lower()}"
    assert st_after[cls] == stats_before[cls] + 1
    if r.reason:
        assert st_after[f"reason.{r.reason}"] == stats_before[f"reason.{r.reason}"] + 1


# ---- strategies ----------------------------------------------------------------------------------
# Seconds after the bystanders' last packet: within every timeout, past UDP_NEW (30 s) and past
# UDP_ESTABLISHED (120 s), so expired entries meet frames too.
GAPS = st.sampled_from([0.001, 1.0, 45.0, 200.0])

random_frames = st.one_of(
    st.binary(min_size=0, max_size=200),
    st.tuples(st.sampled_from([0x0800, 0x86DD, 0x8100, 0x88A8, 0x0806, 0x88CC]),
              st.binary(min_size=0, max_size=160)).map(
        lambda tp: MACS + tp[0].to_bytes(2, "big") + tp[1]),
    # a plausible IPv4/IPv6 first byte, then anything
    st.tuples(st.sampled_from([(0x0800, 0x45), (0x0800, 0x46), (0x86DD, 0x60)]),
              st.binary(min_size=0, max_size=120)).map(
        lambda tp: MACS + tp[0][0].to_bytes(2, "big") + bytes([tp[0][1]]) + tp[1]),
)


@st.composite
def mutated_frames(draw):
    buf = bytearray(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        n = len(buf)
        # headers are where the parser looks: aim there most of the time
        pos = st.one_of(st.integers(0, max(0, min(n, 90) - 1)), st.integers(0, max(0, n - 1)))
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if op == "flip" and n:
            buf[draw(pos)] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and n:
            buf[draw(pos)] = draw(st.sampled_from([0x00, 0xFF, 0x01, 0x05, 0x06, 0x11, 0x3A,
                                                   0x2C, 0x81, 0x88]) | st.integers(0, 255))
        elif op == "insert":
            i = draw(pos) if n else 0
            buf[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and n:
            i = draw(pos)
            del buf[i:i + draw(st.integers(1, 8))]
        elif op == "truncate" and n:
            del buf[draw(pos):]
    return bytes(buf)


PROPERTY = settings(max_examples=400, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_bystanders_are_established_by_the_setup():
    rp, before = fresh_replayer("observe")
    states = sorted((f["proto"], f["family"], f["state"]) for f in rp.flows())
    assert states == [("tcp", 4, "ESTABLISHED"), ("tcp", 6, "ESTABLISHED"),
                      ("udp", 4, "ESTABLISHED"), ("udp", 6, "NEW")]


@pytest.mark.parametrize("config", list(CONFIGS))
@PROPERTY
@given(frame=random_frames, dt=GAPS)
def test_random_frames(config, frame, dt):
    check_frame(config, frame, dt)


@pytest.mark.parametrize("config", list(CONFIGS))
@PROPERTY
@given(frame=mutated_frames(), dt=GAPS)
def test_mutated_frames(config, frame, dt):
    check_frame(config, frame, dt)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("index", range(len(BASES)))
def test_unmutated_bases_follow_the_property(config, index):
    """The bases themselves: each acts on its own flow only (and most do act on it)."""
    check_frame(config, BASES[index], 0.001)

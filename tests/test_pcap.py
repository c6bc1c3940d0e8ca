"""Captures in, verdicts out: ctrack/engine/pcap.py's reader and `ctrack replay` on files written by
this test (struct), by scapy, by Wireshark's tools (editcap) and by dumpcap on loopback.

The same conversation (TCP and UDP, IPv4 and IPv6, a 20 kB GRO-sized segment, an orderly close)
is written in every container and link type the reader claims: each must replay to exactly what
the Ethernet pcap replays to (bytes are counted at the IP layer, so even the byte counters must
agree). Then the awkward files: snaplen cuts, files cut mid-record, corrupt lengths, unsupported
link types. The last test captures real kernel TCP on loopback and replays it.
"""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scapy.utils import wrpcap, wrpcapng
from scapy.layers.l2 import Ether

from ctrack.errors import CtrackError
from ctrack.engine.pcap import read_capture
from wire import Clock, TcpConv, udp_frame

CTRACK = shutil.which("ctrack")
EDITCAP = shutil.which("editcap")
DUMPCAP = shutil.which("dumpcap")


# ---- the conversation -------------------------------------------------------------------------
class Recorder:
    """A Replayer stand-in for TcpConv that records (timestamp ns, Ethernet frame)."""

    def __init__(self):
        self.frames = []

    def run(self, frame, ts_ns, *a, **kw):
        self.frames.append((ts_ns, bytes(frame)))


def conversation(family, rec, clock):
    c, s = (("10.1.0.1", 40000), ("10.2.0.2", 80)) if family == 4 else \
        (("fd00::1", 40000), ("fd00::2", 80))
    t = TcpConv(rec, client=c, server=s, clock=clock, dt=0.01)
    t.handshake()
    t.c("PA", b"GET / HTTP/1.1\r\n\r\n")
    t.s("A")
    t.s("PA", b"x" * 20000)          # a GRO super-packet: more than a test run takes (3000)
    t.c("A")
    rec.run(udp_frame(c[0], 5353, s[0], 53, b"query"), clock.advance(0.01))
    rec.run(udp_frame(s[0], 53, c[0], 5353, b"answer!"), clock.advance(0.01))
    t.c("FA")
    t.s("FA")
    t.c("A")


def _frames():
    rec, clock = Recorder(), Clock()
    conversation(4, rec, clock)
    n4 = len(rec.frames)
    conversation(6, rec, clock)
    return rec.frames, n4


FRAMES, N4 = _frames()      # IPv4 frames first, then IPv6


# ---- writers ------------------------------------------------------------------------------------
def pcap_file(records, linktype=1, nanos=False, endian="<", snaplen=262144):
    """records: (ts_ns, data, orig_len)."""
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)
    for ts, data, orig in records:
        sec, ns = divmod(ts, 10**9)
        out += struct.pack(endian + "IIII", sec, ns if nanos else ns // 1000, len(data), orig)
        out += data
    return out


def _pad4(b):
    return b + b"\x00" * (-len(b) % 4)


def ng_block(e, btype, body):
    body = _pad4(body)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def ng_opt(e, code, value):
    return struct.pack(e + "HH", code, len(value)) + _pad4(value)


def ng_shb(e):
    return ng_block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def ng_idb(e, linktype, tsresol=None, tsoffset=None, name=None):
    opts = b""
    if name:
        opts += ng_opt(e, 2, name.encode())
    if tsresol is not None:
        opts += ng_opt(e, 9, bytes([tsresol]))
    if tsoffset is not None:
        opts += ng_opt(e, 14, struct.pack(e + "q", tsoffset))
    if opts:
        opts += ng_opt(e, 0, b"")
    return ng_block(e, 1, struct.pack(e + "HHI", linktype, 0, 262144) + opts)


def ng_epb(e, ifid, ticks, data, orig):
    return ng_block(e, 6, struct.pack(e + "IIIII", ifid, ticks >> 32, ticks & 0xFFFFFFFF,
                                      len(data), orig) + data)


def ng_spb(e, data, orig):
    return ng_block(e, 3, struct.pack(e + "I", orig) + data)


def ng_ticks(ts_ns, tsresol):
    """Timestamp in ticks of if_tsresol (None: the default, microseconds)."""
    if tsresol is None:
        return ts_ns // 1000
    if tsresol & 0x80:
        return ts_ns * (1 << (tsresol & 0x7F)) // 10**9
    return ts_ns * 10**tsresol // 10**9


def ng_ts(ticks, tsresol):
    """What a reader must make of those ticks, in ns (exact integer arithmetic)."""
    if tsresol is None:
        return ticks * 1000
    if tsresol & 0x80:
        return ticks * 10**9 // (1 << (tsresol & 0x7F))
    return ticks * 10**9 // 10**tsresol


# Link types: Ethernet frame -> that link type's record. AF_INET6 differs per BSD.
def to_link(lt, frame, af6=24, null_endian="<"):
    et, payload = frame[12:14], frame[14:]
    v6 = et == b"\x86\xdd"
    if lt == 1:
        return frame
    if lt == 113:   # Linux cooked: packet type, ARPHRD, address length, address (8), protocol
        return struct.pack("!HHH", 0, 1, 6) + frame[6:12] + b"\x00\x00" + et + payload
    if lt == 276:   # cooked v2: protocol, reserved, ifindex, ARPHRD, packet type, addr len, addr
        return et + b"\x00\x00" + struct.pack("!IHBB", 2, 1, 4, 6) + frame[6:12] + b"\x00\x00" \
            + payload
    if lt in (101, 228, 229):
        return payload
    if lt == 0:
        return struct.pack(null_endian + "I", af6 if v6 else 2) + payload
    if lt == 108:
        return struct.pack("!I", af6 if v6 else 2) + payload
    raise ValueError(lt)


def link_records(lt, frames=FRAMES, **kw):
    out = []
    for ts, f in frames:
        rec = to_link(lt, f, **kw)
        out.append((ts, rec, len(rec)))
    return out


# ---- running the CLI -----------------------------------------------------------------------------
def ctrack(*args, timeout=120):
    return subprocess.run([CTRACK, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def replay_json(path, *flags):
    r = ctrack("replay", "--json", *flags, path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return json.loads(r.stdout)


def one_line_error(r, *words, code=1):
    """A CLI failure the way ctrack promises it: one line on stderr, the exit code, no traceback,
    nothing on stdout."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert r.stdout == ""
    return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The Ethernet pcap's replay, checked once for what the conversation must give."""
    path = tmp_path_factory.mktemp("ref") / "ethernet.pcap"
    path.write_bytes(pcap_file(link_records(1)))
    doc = replay_json(path)
    assert len(doc["packets"]) == len(FRAMES)
    assert all(p["reason"] is None and p["verdict"] == "pass" for p in doc["packets"])
    flows = {(f["proto"], f["family"]): f for f in doc["flows"]}
    assert set(flows) == {("tcp", 4), ("udp", 4), ("tcp", 6), ("udp", 6)}
    for fam, hdr in ((4, 40), (6, 60)):
        tcp = flows[("tcp", fam)]
        assert (tcp["state"], tcp["orig_state"], tcp["reply_state"]) == \
            ("TIME_WAIT", "TIME_WAIT", "CLOSE")
        assert tcp["packets"] == [6, 4]
        # the 20 kB segment counts whole, though only 3000 bytes of it ran
        assert tcp["bytes"][1] == (hdr + 20) + hdr + (hdr + 20000) + hdr
        udp = flows[("udp", fam)]
        assert (udp["state"], udp["packets"]) == ("ESTABLISHED", [1, 1])
    return doc


def subset(doc, family):
    """The reference restricted to one family's packets and flows (IPv4 packets come first),
    indices renumbered as a file holding only those packets would number them."""
    pk = doc["packets"][:N4] if family == 4 else doc["packets"][N4:]
    pk = [dict(p, index=i) for i, p in enumerate(pk)]
    return {"packets": pk, "flows": [f for f in doc["flows"] if f["family"] == family]}


# ---- the reader, in process ----------------------------------------------------------------------
PCAP_VARIANTS = {"usec-le": (False, "<"), "usec-be": (False, ">"), "nsec-le": (True, "<"),
                 "nsec-be": (True, ">")}


@pytest.mark.parametrize("nanos, endian", list(PCAP_VARIANTS.values()), ids=list(PCAP_VARIANTS))
def test_pcap_magic_and_byte_order(tmp_path, nanos, endian):
    p = tmp_path / "c.pcap"
    recs = [(ts + 123, f, len(f)) for ts, f in FRAMES]   # +123 ns: visible only in ns captures
    p.write_bytes(pcap_file(recs, nanos=nanos, endian=endian))
    got = list(read_capture(p))
    assert [f.data for f in got] == [f for _, f, _ in recs]
    assert [f.index for f in got] == list(range(len(recs)))
    assert [f.wire_len for f in got] == [len(f) for _, f, _ in recs]
    want = [ts if nanos else ts // 1000 * 1000 for ts, _, _ in recs]
    assert [f.ts_ns for f in got] == want


def test_pcap_link_type_with_fcs_bits(tmp_path):
    """The header's link type field carries FCS information above its 16 bits (P flag, length
    in 16-bit words): Ethernet with a 4-byte FCS on every frame is still Ethernet."""
    p = tmp_path / "fcs.pcap"
    recs = [(ts, f + b"\xde\xad\xbe\xef", len(f) + 4) for ts, f in FRAMES]
    p.write_bytes(pcap_file(recs, linktype=(2 << 28) | (1 << 26) | 1))
    got = list(read_capture(p))
    assert [f.data for f in got] == [f for _, f, _ in recs]


NG_VARIANTS = {
    "le-usec-default": ("<", None),
    "le-nsec": ("<", 9),
    "be-nsec": (">", 9),
    "le-msec": ("<", 3),
    "le-binary-2^-20": ("<", 0x80 | 20),
}


@pytest.mark.parametrize("endian, tsresol", list(NG_VARIANTS.values()), ids=list(NG_VARIANTS))
def test_pcapng_resolution_and_byte_order(tmp_path, endian, tsresol):
    p = tmp_path / "c.pcapng"
    body = ng_shb(endian) + ng_idb(endian, 1, tsresol)
    ticks = [ng_ticks(ts + 123456789, tsresol) for ts, _ in FRAMES]
    for t, (_, f) in zip(ticks, FRAMES):
        body += ng_epb(endian, 0, t, f, len(f))
    p.write_bytes(body)
    got = list(read_capture(p))
    assert [f.data for f in got] == [f for _, f in FRAMES]
    # exact to the nanosecond: a float would lose the last digits of a 2023 timestamp
    assert [f.ts_ns for f in got] == [ng_ts(t, tsresol) for t in ticks]


def test_pcapng_two_interfaces_other_blocks_and_sections(tmp_path):
    """Interface 0 Ethernet at the default microseconds, interface 1 Linux cooked v2 in ns with
    a 10 s if_tsoffset; name resolution, statistics, custom and secrets blocks in between; a
    Simple Packet Block; a second section that redefines interface 0 as raw IP."""
    e = "<"
    nrb = ng_block(e, 4, struct.pack(e + "HH", 1, 8) + bytes([10, 1, 0, 1]) + b"cli\x00"
                   + struct.pack(e + "HH", 0, 0))
    isb = ng_block(e, 5, struct.pack(e + "III", 0, 0, 0))
    custom = ng_block(e, 0x00000BAD, struct.pack(e + "I", 32473) + b"private")
    dsb = ng_block(e, 0x0000000A, struct.pack(e + "II", 0x544C534B, 4) + b"keys")
    out = ng_shb(e) + ng_idb(e, 1, name="eth0") + nrb + ng_idb(e, 276, 9, tsoffset=10)
    want = []
    frames = FRAMES[:N4]
    half = len(frames) // 2
    for i, (ts, f) in enumerate(frames[:half]):
        if i % 2:
            out += ng_epb(e, 1, ts - 10 * 10**9, to_link(276, f), len(to_link(276, f)))
            want.append((ts, f[12:]))
        else:
            out += ng_epb(e, 0, ts // 1000, f, len(f))
            want.append((ts // 1000 * 1000, f[12:]))
        out += isb if i == 2 else custom if i == 3 else dsb if i == 4 else b""
    spb_frame = frames[half][1]
    out += ng_spb(e, spb_frame, len(spb_frame))
    want.append((want[-1][0], spb_frame[12:]))   # no timestamp: the previous packet's
    out += ng_shb(e) + ng_idb(e, 101, 9)
    for ts, f in frames[half + 1:]:
        out += ng_epb(e, 0, ts, f[14:], len(f) - 14)
        want.append((ts, f[12:]))
    p = tmp_path / "multi.pcapng"
    p.write_bytes(out)
    got = list(read_capture(p))
    # Ethernet addresses are synthesised for cooked and raw records: compare from the EtherType
    assert [(f.ts_ns, f.data[12:]) for f in got] == want
    assert [f.index for f in got] == list(range(len(frames)))
    assert [f.wire_len for f in got] == [len(f) for _, f in frames]


LINKS = {
    "sll-113": (113, {}), "sll2-276": (276, {}), "raw-101": (101, {}),
    "null-0-le-af6-24": (0, {"af6": 24}), "null-0-be-af6-30": (0, {"af6": 30, "null_endian": ">"}),
    "null-0-le-af6-28": (0, {"af6": 28}), "null-0-linux-af6-10": (0, {"af6": 10}),
    "loop-108": (108, {"af6": 24}),
}


@pytest.mark.parametrize("lt, kw", list(LINKS.values()), ids=list(LINKS))
def test_link_types_become_ethernet(tmp_path, lt, kw):
    p = tmp_path / "c.pcap"
    p.write_bytes(pcap_file(link_records(lt, **kw), linktype=lt))
    got = list(read_capture(p))
    assert [f.data[12:] for f in got] == [f[12:] for _, f in FRAMES]
    assert [f.wire_len for f in got] == [len(f) for _, f in FRAMES]


def test_scapy_written_captures(tmp_path):
    pkts = []
    for ts, f in FRAMES:
        p = Ether(f)
        p.time = ts / 1e9
        pkts.append(p)
    wrpcap(str(tmp_path / "s.pcap"), pkts, nano=True)
    wrpcapng(str(tmp_path / "s.pcapng"), pkts)
    for name, step in (("s.pcap", 1000), ("s.pcapng", 1000)):
        got = list(read_capture(tmp_path / name))
        assert [f.data for f in got] == [f for _, f in FRAMES]
        # scapy goes through a float: within a microsecond is all it promises
        assert all(abs(g.ts_ns - ts) <= step for g, (ts, _) in zip(got, FRAMES))


@pytest.mark.parametrize("cut", ["mid-data", "mid-header", "after-file-header"])
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_file_cut_mid_record_stops_cleanly(tmp_path, fmt, cut):
    """A capture whose writer was killed: every whole record is read, then the reader stops."""
    recs = link_records(1)
    if fmt == "pcap":
        whole = pcap_file(recs[:-1])
        head = 24
        last = pcap_file(recs[-1:])[24:]
        hdr = 16
    else:
        whole = ng_shb("<") + ng_idb("<", 1, 9)
        for ts, f, n in recs[:-1]:
            whole += ng_epb("<", 0, ts, f, n)
        head = len(ng_shb("<") + ng_idb("<", 1, 9))
        ts, f, n = recs[-1]
        last = ng_epb("<", 0, ts, f, n)
        hdr = 8
    if cut == "after-file-header":
        data, n = whole[:head], 0
    else:
        keep = len(last) // 2 if cut == "mid-data" else hdr // 2
        data, n = whole + last[:keep], len(recs) - 1
    p = tmp_path / f"cut.{fmt}"
    p.write_bytes(data)
    warnings = []
    assert len(list(read_capture(p, warn=warnings.append))) == n
    if cut == "after-file-header":
        assert warnings == []    # no record begun: an empty capture, not a cut one
    else:
        assert len(warnings) == 1 and f"{n} whole packet{'' if n == 1 else 's'} read" in warnings[0]


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_corrupt_record_length_is_an_error_not_an_allocation(tmp_path, fmt):
    if fmt == "pcap":
        data = pcap_file([]) + struct.pack("<IIII", 0, 0, 0xFFFFFFF0, 0xFFFFFFF0) + bytes(64)
    else:
        data = ng_shb("<") + ng_idb("<", 1) + struct.pack("<II", 6, 0xFFFFFFF0) + bytes(64)
    p = tmp_path / f"corrupt.{fmt}"
    p.write_bytes(data)
    with pytest.raises(CtrackError, match="corrupt"):
        list(read_capture(p))
    one_line_error(ctrack("replay", p), "corrupt")


@pytest.mark.parametrize("data, words", [
    (pcap_file([])[:10], "truncated pcap file header"),
    (pcap_file([]) + struct.pack("<IIII", 0, 0, 0xFFFFFFF0, 0xFFFFFFF0), "corrupt pcap record 0"),
    (pcap_file([(0, b"\x08" * 40, 40)], linktype=105), "unsupported link type 105"),
    (ng_shb("<") + ng_idb("<", 1) + struct.pack("<II", 6, 0xFFFFFFF0), "corrupt pcapng block"),
], ids=["cut-in-file-header", "corrupt-record", "link-type", "corrupt-pcapng-block"])
def test_every_capture_error_names_the_file(tmp_path, data, words):
    """Like "no such file" or "not a pcap": each reader error starts with the file's name."""
    p = tmp_path / "bad.cap"
    p.write_bytes(data)
    with pytest.raises(CtrackError, match="^" + str(p) + ": " + words):
        list(read_capture(p))
    line = one_line_error(ctrack("replay", p), words)
    assert line.startswith(f"ctrack: {p}: "), line


CORRUPT_NG = {
    "epb-without-body": lambda: ng_shb("<") + ng_idb("<", 1) + ng_block("<", 6, b""),
    "idb-without-body": lambda: ng_shb("<") + ng_block("<", 1, b""),
    "spb-without-body": lambda: ng_shb("<") + ng_idb("<", 1) + ng_block("<", 3, b""),
    "packet-block-short": lambda: ng_shb("<") + ng_idb("<", 1) + ng_block("<", 2, bytes(8)),
    "shb-length-0": lambda: struct.pack("<III", 0x0A0D0D0A, 0, 0x1A2B3C4D) + bytes(40),
    "shb-length-huge": lambda: struct.pack("<III", 0x0A0D0D0A, 0xFFFFFFF0, 0x1A2B3C4D)
    + bytes(40),
    "shb-bad-byte-order-magic": lambda: struct.pack("<II", 0x0A0D0D0A, 28) + b"abcd" + bytes(40),
}


@pytest.mark.parametrize("make", list(CORRUPT_NG.values()), ids=list(CORRUPT_NG))
def test_corrupt_pcapng_blocks_are_errors(tmp_path, make):
    """Blocks too short for their own fixed fields are corruption: a one-line CtrackError, never
    a struct.error traceback (nor a silently empty replay)."""
    p = tmp_path / "corrupt.pcapng"
    p.write_bytes(make())
    with pytest.raises(CtrackError, match="corrupt"):
        list(read_capture(p))


def test_corrupt_pcapng_block_on_the_command_line(tmp_path):
    p = tmp_path / "corrupt.pcapng"
    p.write_bytes(CORRUPT_NG["epb-without-body"]())
    one_line_error(ctrack("replay", "--json", p), "corrupt")


def _small_captures():
    recs = link_records(1, FRAMES[:4])
    ng = ng_shb("<") + ng_idb("<", 1, 9) + ng_idb("<", 276, tsoffset=5)
    for i, (ts, f, n) in enumerate(recs):
        rec = to_link(276, f) if i % 2 else f
        ng += ng_epb("<", i % 2, ts if i % 2 == 0 else ts // 1000, rec, len(rec))
    ng += ng_spb("<", recs[0][1], recs[0][2])
    return [pcap_file(recs), pcap_file(recs, nanos=True, endian=">"),
            pcap_file(link_records(0, FRAMES[:4]), linktype=0), ng]


def _structure(cap):
    """(offsets of the bytes that describe the file, (offset, endian) of each length field).
    Damage there is what finds a reader's bugs; damage in packet bytes is the tracker's."""
    fields, lengths = [], []
    if cap[:4] == b"\x0a\x0d\x0d\x0a":
        off = 0
        while off + 8 <= len(cap):
            fields += range(off, min(off + 36, len(cap)))
            lengths.append((off + 4, "<"))
            off += struct.unpack_from("<I", cap, off + 4)[0]
    else:
        endian = "<" if cap[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        fields += range(24)
        off = 24
        while off + 16 <= len(cap):
            fields += range(off, off + 16)
            lengths += [(off + 8, endian), (off + 12, endian)]
            off += 16 + struct.unpack_from(endian + "I", cap, off + 8)[0]
    return cap, fields, lengths


SMALL_CAPTURES = [_structure(c) for c in _small_captures()]
LENGTHS = [0, 1, 4, 8, 11, 12, 13, 16, 20, 24, 28, 32, 0x7FFFFFFF, 0xFFFFFFFF]


@st.composite
def damaged_captures(draw):
    base, fields, lengths = draw(st.sampled_from(SMALL_CAPTURES))
    buf = bytearray(base)
    for _ in range(draw(st.integers(1, 5))):
        n = len(buf)
        if not n:
            break
        op = draw(st.sampled_from(["length", "set", "flip", "insert", "delete", "truncate"]))
        if op == "length":
            # a block or record length rewritten: too small for its fields, or absurd
            at, endian = draw(st.sampled_from(lengths))
            if at + 4 <= n:
                buf[at:at + 4] = struct.pack(endian + "I", draw(st.sampled_from(LENGTHS)))
            continue
        i = draw(st.sampled_from([f for f in fields if f < n] or [0]) | st.integers(0, n - 1))
        if op == "set":
            buf[i] = draw(st.sampled_from([0, 0xFF, 1, 2, 4, 6, 12, 16, 20, 28]) |
                          st.integers(0, 255))
        elif op == "flip":
            buf[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            buf[i:i] = draw(st.binary(min_size=1, max_size=12))
        elif op == "delete":
            del buf[i:i + draw(st.integers(1, 12))]
        else:
            del buf[i:]
    return bytes(buf)


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=damaged_captures())
def test_damaged_captures_read_or_fail_in_one_line(tmp_path, data):
    """Whatever the damage, the reader yields well-formed frames or raises CtrackError (the CLI
    turns that into one line); never struct.error, ValueError, MemoryError..."""
    p = tmp_path / "damaged.cap"
    p.write_bytes(data)
    try:
        for fr in read_capture(p):
            assert isinstance(fr.data, bytes) and isinstance(fr.ts_ns, int)
            assert fr.wire_len >= len(fr.data) and fr.index >= 0
    except CtrackError as exc:
        assert "\n" not in str(exc)


# ---- ctrack replay: every container and link type replays like the Ethernet pcap ----------------
@pytest.mark.parametrize("lt, kw", list(LINKS.values()), ids=list(LINKS))
def test_replay_link_type_matches_ethernet(tmp_path, reference, lt, kw):
    p = tmp_path / "c.pcap"
    p.write_bytes(pcap_file(link_records(lt, **kw), linktype=lt))
    assert replay_json(p) == reference


def test_replay_ethernet_with_fcs_matches_ethernet(tmp_path, reference):
    p = tmp_path / "fcs.pcap"
    recs = [(ts, f + b"\xde\xad\xbe\xef", len(f) + 4) for ts, f in FRAMES]
    p.write_bytes(pcap_file(recs, linktype=(2 << 28) | (1 << 26) | 1))
    assert replay_json(p) == reference


@pytest.mark.parametrize("lt, family", [(228, 4), (229, 6)], ids=["ipv4-228", "ipv6-229"])
def test_replay_single_family_link_type(tmp_path, reference, lt, family):
    frames = FRAMES[:N4] if family == 4 else FRAMES[N4:]
    p = tmp_path / "c.pcap"
    p.write_bytes(pcap_file(link_records(lt, frames), linktype=lt))
    assert replay_json(p) == subset(reference, family)


def test_replay_pcapng_two_interfaces_matches_ethernet(tmp_path, reference):
    """ns and µs interfaces of different link types in one file: the µs interface rounds the
    clock, which moves no verdict (the conversation's gaps are milliseconds)."""
    e = "<"
    out = ng_shb(e) + ng_idb(e, 1) + ng_idb(e, 113, 9)
    for i, (ts, f) in enumerate(FRAMES):
        if i % 2:
            rec = to_link(113, f)
            out += ng_epb(e, 1, ts, rec, len(rec))
        else:
            out += ng_epb(e, 0, ts // 1000, f, len(f))
    p = tmp_path / "two.pcapng"
    p.write_bytes(out)
    assert replay_json(p) == reference


@pytest.mark.skipif(not EDITCAP, reason="editcap (wireshark-common) not installed")
def test_replay_editcap_pcapng_and_snaplen(tmp_path, reference):
    """Files written by Wireshark's own tools: the pcap converted to pcapng (ns), and cut to a
    96-byte snaplen as `tcpdump -s 96` would: caplen < origlen on every long packet."""
    src = tmp_path / "ethernet.pcap"
    src.write_bytes(pcap_file(link_records(1), nanos=True))
    ng, cut = tmp_path / "conv.pcapng", tmp_path / "cut96.pcap"
    subprocess.run([EDITCAP, "-F", "pcapng", src, ng], check=True, capture_output=True)
    subprocess.run([EDITCAP, "-s", "96", src, cut], check=True, capture_output=True)
    assert open(ng, "rb").read(4) == b"\x0a\x0d\x0d\x0a"
    frames = list(read_capture(cut))
    assert max(len(f.data) for f in frames) == 96
    assert sum(f.wire_len > len(f.data) for f in frames) == 2   # the 20 kB segments
    assert replay_json(ng) == reference
    assert replay_json(cut) == reference


def test_replay_snaplen_cut_inside_l4_headers(tmp_path, reference):
    """A snaplen of 54 cuts every IPv6 frame inside its TCP or UDP header: the tracker says so
    (l4_truncated, never ip_truncated: the wire length vouches for the IP length). The IPv4
    frames, left whole, replay as before."""
    recs = [(ts, f if i < N4 else f[:54], len(f)) for i, (ts, f) in enumerate(FRAMES)]
    p = tmp_path / "s54.pcap"
    p.write_bytes(pcap_file(recs, snaplen=54))
    doc = replay_json(p)
    assert doc["packets"][:N4] == reference["packets"][:N4]
    assert {p["reason"] for p in doc["packets"][N4:]} == {"l4_truncated"}
    assert [f["family"] for f in doc["flows"]] == [4, 4]


def test_replay_file_cut_mid_record(tmp_path, reference):
    recs = link_records(1)
    data = pcap_file(recs)
    p = tmp_path / "cut.pcap"
    p.write_bytes(data[:-10])
    r = ctrack("replay", "--json", p)
    assert r.returncode == 0 and "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    assert doc["packets"] == reference["packets"][:-1]


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_unsupported_link_type(tmp_path, fmt):
    p = tmp_path / f"wifi.{fmt}"
    if fmt == "pcap":
        p.write_bytes(pcap_file([(0, b"\x08" * 40, 40)], linktype=105))
    else:
        p.write_bytes(ng_shb("<") + ng_idb("<", 105) + ng_epb("<", 0, 0, b"\x08" * 40, 40))
    with pytest.raises(CtrackError, match="unsupported link type 105"):
        list(read_capture(p))
    one_line_error(ctrack("replay", p), "unsupported link type 105")


def test_pcapng_packet_of_undeclared_interface(tmp_path):
    p = tmp_path / "bad.pcapng"
    f = FRAMES[0][1]
    p.write_bytes(ng_shb("<") + ng_idb("<", 1) + ng_epb("<", 3, 0, f, len(f)))
    one_line_error(ctrack("replay", p), "interface 3")


# ---- the capture's clock drives the timeouts ----------------------------------------------------
@pytest.mark.parametrize("gap, second_class, packets", [(3.0, "NEW", [1, 0]),
                                                        (1.0, "ESTABLISHED", [2, 0])],
                         ids=["idle-past-timeout", "within-timeout"])
def test_udp_timeout_follows_capture_timestamps(tmp_path, gap, second_class, packets):
    t0 = 1_700_000_000 * 10**9
    f = udp_frame("10.1.0.1", 5353, "10.2.0.2", 53, b"q")
    p = tmp_path / "udp.pcap"
    p.write_bytes(pcap_file([(t0, f, len(f)), (t0 + int(gap * 1e9), f, len(f))], nanos=True))
    r = ctrack("replay", "--timeout", "UDP_NEW=2", p)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[2:4] == ["VERDICT", "CLASS"]   # the header
    assert lines[1].split()[2:4] == ["pass", "NEW"], r.stdout
    assert lines[2].split()[2:4] == ["pass", second_class], r.stdout
    doc = replay_json(p, "--timeout", "UDP_NEW=2")
    (flow,) = doc["flows"]
    assert (flow["state"], flow["packets"]) == ("NEW", packets)
    # without the override UDP_NEW is 30 s: both gaps keep the flow
    (flow,) = replay_json(p)["flows"]
    assert flow["packets"] == [2, 0]


def test_tcp_idle_timeout_then_pickup(tmp_path):
    """ESTABLISHED=5 and 10 s of silence: the next ACK finds no flow (tcp_no_flow, dropped when
    enforcing) unless pickup (observe's default, or --pickup) lets it open a new one."""
    rec, clock = Recorder(), Clock()
    t = TcpConv(rec, clock=clock)
    t.handshake()
    t.c("PA", b"hi", wait=10.0)
    p = tmp_path / "idle.pcap"
    p.write_bytes(pcap_file([(ts, f, len(f)) for ts, f in rec.frames], nanos=True))
    doc = replay_json(p, "--timeout", "ESTABLISHED=5", "--no-pickup")
    assert doc["packets"][3]["reason"] == "tcp_no_flow" and doc["flows"] == []
    doc = replay_json(p, "--timeout", "ESTABLISHED=5", "--policy", "enforce")
    assert (doc["packets"][3]["reason"], doc["packets"][3]["verdict"]) == ("tcp_no_flow", "drop")
    doc = replay_json(p, "--timeout", "ESTABLISHED=5")   # observe: pickup by default
    assert doc == replay_json(p, "--timeout", "ESTABLISHED=5", "--pickup")
    assert doc["packets"][3]["reason"] is None
    assert doc["packets"][3]["flow"]["state"] == "ESTABLISHED"
    (flow,) = doc["flows"]
    assert flow["packets"] == [1, 0]   # a new flow, picked up mid-stream
    doc = replay_json(p)
    assert doc["packets"][3]["reason"] is None and doc["flows"][0]["packets"] == [3, 1]


# ---- real kernel TCP, captured on loopback -------------------------------------------------------
def _free_port(family=socket.AF_INET):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        return s.getsockname()[1]


def _tcp_exchange(host, port, family, payload, rst=False):
    """One connection to ourselves: the client sends payload, the server echoes its length, the
    client closes first (or aborts with an RST), then the server."""
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(1)
    done = threading.Event()

    def serve():
        conn, _ = srv.accept()
        n = 0
        while True:
            try:
                b = conn.recv(65536)
            except ConnectionResetError:   # the client aborted (SO_LINGER 0)
                break
            if not b:
                break
            n += len(b)
            if n >= len(payload):
                conn.sendall(str(n).encode())
        conn.close()
        done.set()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    cli = socket.create_connection((host, port), timeout=5)
    cli.sendall(payload)
    assert cli.recv(100) == str(len(payload)).encode()
    if rst:
        cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    cli.close()
    done.wait(5)
    srv.close()
    th.join(5)


def _pcapng_first_linktype(path):
    data = open(path, "rb").read(4096)
    shb_len = struct.unpack_from("<I", data, 4)[0]
    assert struct.unpack_from("<I", data, shb_len)[0] == 1   # an Interface Description Block
    return struct.unpack_from("<H", data, shb_len + 8)[0]


@pytest.mark.skipif(not DUMPCAP, reason="dumpcap not installed")
@pytest.mark.parametrize("iface, linktype", [("lo", 1), ("any", 113)],
                         ids=["lo-ethernet", "any-linux-cooked"])
def test_real_loopback_capture(tmp_path, iface, linktype):
    """dumpcap on lo (Ethernet framing) or on `any` (Linux cooked framing) while this process
    talks to itself over 127.0.0.1 and ::1 (the filter keeps only this test's ports; traffic
    on loopback only, bounded to a few seconds): what the kernel really sends, replayed."""
    ports = [_free_port(), _free_port(), _free_port(socket.AF_INET6), _free_port()]
    probe_port = _free_port()
    capfilter = " or ".join(f"port {p}" for p in ports + [probe_port])
    path = tmp_path / "lo.pcapng"
    cap = subprocess.Popen([DUMPCAP, "-i", iface, "-f", capfilter, "-a", "duration:30",
                            "-w", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # dumpcap announces "Capturing on" before its socket sees anything: probe with UDP
        # datagrams until one shows in the file (dumpcap flushes it every 100 ms)
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(100):
            probe.sendto(b"probe", ("127.0.0.1", probe_port))
            time.sleep(0.05)
            if path.exists() and any(True for _ in read_capture(path)):
                break
        else:
            pytest.fail("dumpcap captured nothing in 5 s")
        probe.close()
        big = os.urandom(300_000)   # loopback's 64 KiB MTU: GSO-sized segments in the capture
        _tcp_exchange("127.0.0.1", ports[0], socket.AF_INET, big)
        _tcp_exchange("127.0.0.1", ports[1], socket.AF_INET, b"bye", rst=True)
        _tcp_exchange("::1", ports[2], socket.AF_INET6, b"hello over v6" * 100)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        v.bind(("127.0.0.1", ports[3]))
        u.sendto(b"ping", ("127.0.0.1", ports[3]))
        data, addr = v.recvfrom(100)
        v.sendto(b"pong", addr)
        assert u.recv(100) == b"pong"
        u.close()
        v.close()
        time.sleep(0.5)   # let the last packets reach the capture
    finally:
        cap.send_signal(signal.SIGINT)    # our own dumpcap, by its pid
        try:
            cap.wait(10)
        except subprocess.TimeoutExpired:
            cap.kill()
            cap.wait()
    assert _pcapng_first_linktype(path) == linktype
    frames = list(read_capture(path))
    assert len(frames) > 20
    assert any(f.wire_len > 3000 for f in frames), "no GSO-sized segment was captured"

    doc = replay_json(path)
    bad = [p for p in doc["packets"] if p["reason"] is not None]
    assert bad == []
    by_port = {}
    for f in doc["flows"]:
        by_port[f["orig"]["dport"]] = f
    assert set(by_port) == set(ports + [probe_port])

    # the handshake, packet by packet, on the first connection (after the UDP probes)
    tcp = [p["flow"] for p in doc["packets"] if p["flow"] and p["flow"]["orig_state"]]
    first = tcp[:3]
    assert [(f["state"], f["orig_state"], f["reply_state"]) for f in first] == [
        ("SYN_SENT", "SYN_SENT", "SYN_RECV"), ("SYN_RECV", "ESTABLISHED", "SYN_RECV"),
        ("ESTABLISHED", "ESTABLISHED", "ESTABLISHED")]
    for port, fam in ((ports[0], 4), (ports[2], 6)):
        f = by_port[port]
        assert (f["proto"], f["family"]) == ("tcp", fam)
        # the client closed first: it waits in TIME_WAIT, the server is CLOSED
        assert (f["state"], f["orig_state"], f["reply_state"]) == \
            ("TIME_WAIT", "TIME_WAIT", "CLOSE"), f
    assert by_port[ports[0]]["bytes"][0] > 300_000
    rst = by_port[ports[1]]
    assert (rst["state"], rst["orig_state"], rst["reply_state"]) == ("CLOSE", "CLOSE", "CLOSE")
    udp = by_port[ports[3]]
    assert (udp["proto"], udp["state"], udp["packets"]) == ("udp", "ESTABLISHED", [1, 1])

    # Zeek's view of the same real connections (worked out from Zeek's rules): the client's
    # data (D), the server's ACKs (a) and answer (d), both FINs, the client's first: SF; the
    # aborted one ends with the client's RST: RSTO; UDP both ways SF (Dd), the probes S0 (D).
    # The 300 KB blast may fill the server's receive buffer: its zero window is a "w" (seen
    # here: ShADawdFf), as Zeek would log it.
    for port in (ports[0], ports[2]):
        z = by_port[port]
        assert z["conn_state"] == "SF" and z["history"].startswith("ShAD"), z
        assert set("ShADadFf") <= set(z["history"]) <= set("ShADadFfw"), z
        assert z["history"].index("F") < z["history"].index("f"), z
    assert (rst["conn_state"], rst["history"]) == ("RSTO", "ShADadR"), rst
    assert (udp["conn_state"], udp["history"]) == ("SF", "Dd")
    assert (by_port[probe_port]["conn_state"], by_port[probe_port]["history"]) == ("S0", "D")
    rows = [json.loads(x) for x in ctrack("replay", "-o", "zeek", path).stdout.splitlines()]
    assert len(rows) == 5 and {r["id.resp_p"] for r in rows} == set(ports + [probe_port])
    big = next(r for r in rows if r["id.resp_p"] == ports[0])
    assert big["orig_bytes"] == 300_000 and big["resp_bytes"] == len("300000")   # seq space

    # The same capture cut to 96 bytes a packet replays to the same verdicts and counters.
    if EDITCAP:
        cut = tmp_path / "lo96.pcapng"
        subprocess.run([EDITCAP, "-s", "96", path, cut], check=True, capture_output=True)
        assert replay_json(cut) == doc

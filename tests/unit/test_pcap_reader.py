"""ctrack/engine/pcap.py's reader, in process (no root, no BPF): pcap in both byte orders and
resolutions, pcapng with several interfaces, blocks and sections, every link type the reader
claims turned into Ethernet, scapy's files, files cut mid-record, corrupt lengths and blocks, and
arbitrarily damaged captures (hypothesis). The same captures replayed by the real tracker are
tests/tracker/test_pcap_replay.py's."""
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scapy.utils import wrpcap, wrpcapng
from scapy.layers.l2 import Ether

from ctrack.errors import CtrackError
from ctrack.engine.pcap import read_capture
from helpers.captures import (CORRUPT_NG, FRAMES, LINKS, N4, link_records, ng_block, ng_epb,
                              ng_idb, ng_shb, ng_spb, ng_ticks, ng_ts, pcap_file, to_link)


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


@pytest.mark.parametrize("make", list(CORRUPT_NG.values()), ids=list(CORRUPT_NG))
def test_corrupt_pcapng_blocks_are_errors(tmp_path, make):
    """Blocks too short for their own fixed fields are corruption: a one-line CtrackError, never
    a struct.error traceback (nor a silently empty replay)."""
    p = tmp_path / "corrupt.pcapng"
    p.write_bytes(make())
    with pytest.raises(CtrackError, match="corrupt"):
        list(read_capture(p))


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

"""Captures for the pcap tests: one reference conversation (TCP and UDP, IPv4 and IPv6, a 20 kB
GRO-sized segment, an orderly close) as Ethernet frames, and writers for every container and link
type ctrack's reader claims (pcap in both byte orders and resolutions, pcapng blocks, link-layer
headers), written with struct so that each byte is the test's own. Shared by
tests/unit/test_pcap_reader.py (the reader, in process) and tests/tracker/test_pcap_replay.py
(`ctrack replay` on the same files)."""
import struct

from helpers.wire import Clock, TcpConv, udp_frame


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


LINKS = {
    "sll-113": (113, {}), "sll2-276": (276, {}), "raw-101": (101, {}),
    "null-0-le-af6-24": (0, {"af6": 24}), "null-0-be-af6-30": (0, {"af6": 30, "null_endian": ">"}),
    "null-0-le-af6-28": (0, {"af6": 28}), "null-0-linux-af6-10": (0, {"af6": 10}),
    "loop-108": (108, {"af6": 24}),
}


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

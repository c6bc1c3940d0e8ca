"""Reads pcap and pcapng captures and hands out Ethernet frames with nanosecond timestamps.

Link types other than Ethernet are given a synthetic Ethernet header so the tracker sees what it
would see on a wire: Linux cooked captures (SLL, SLL2: `tcpdump -i any`), raw IP, BSD loopback.
Frames keep their captured length and carry their original length (a snaplen cut or a GRO
super-packet larger than a test run accepts is replayed with its true length).
"""
import struct
from dataclasses import dataclass

from ctrack.errors import CtrackError
from ctrack.text import plural

ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
_ZERO_MACS = bytes(12)

LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LOOP = 0, 1, 101, 108
LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2 = 113, 228, 229, 276
DLT_RAW_ALIASES = (12, 14)   # DLT_RAW as some systems number it
SUPPORTED = {
    LINKTYPE_ETHERNET: "Ethernet", LINKTYPE_LINUX_SLL: "Linux cooked (SLL)",
    LINKTYPE_LINUX_SLL2: "Linux cooked v2 (SLL2)", LINKTYPE_RAW: "raw IP", 12: "raw IP",
    14: "raw IP", LINKTYPE_IPV4: "raw IPv4", LINKTYPE_IPV6: "raw IPv6",
    LINKTYPE_NULL: "BSD loopback", LINKTYPE_LOOP: "OpenBSD loopback",
}


# No capture tool writes a record anywhere near this big (Wireshark's own limit is 256 KiB, BIG
# TCP packets stay under 512 KiB): a larger length is corruption, not a packet to read into memory.
MAX_RECORD = 16 * 1024 * 1024


@dataclass
class Frame:
    index: int
    ts_ns: int
    data: bytes          # an Ethernet frame as the tracker would see it (maybe cut short)
    wire_len: int        # its full length on the wire, Ethernet header included


def _eth(ethertype, payload):
    return _ZERO_MACS + struct.pack("!H", ethertype) + payload


def _ip_ethertype(payload):
    v = payload[0] >> 4 if payload else 0
    return ETH_P_IPV6 if v == 6 else ETH_P_IP


def to_ethernet(linktype, data, orig_len):
    """(frame, wire_len) for one captured record, or None to skip a record that carries no
    packet for the tracker (an SLL record of a non-IP protocol keeps its protocol)."""
    if linktype == LINKTYPE_ETHERNET:
        return data, orig_len
    if linktype == LINKTYPE_LINUX_SLL:
        if len(data) < 16:
            return data, orig_len   # malformed: the tracker will say so
        proto = struct.unpack_from("!H", data, 14)[0]
        return _eth(proto, data[16:]), orig_len - 16 + 14
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(data) < 20:
            return data, orig_len
        proto = struct.unpack_from("!H", data, 0)[0]
        return _eth(proto, data[20:]), orig_len - 20 + 14
    if linktype in (LINKTYPE_RAW,) + DLT_RAW_ALIASES:
        return _eth(_ip_ethertype(data), data), orig_len + 14
    if linktype == LINKTYPE_IPV4:
        return _eth(ETH_P_IP, data), orig_len + 14
    if linktype == LINKTYPE_IPV6:
        return _eth(ETH_P_IPV6, data), orig_len + 14
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(data) < 4:
            return data, orig_len
        # NULL: host byte order family; LOOP: network order. 2 = AF_INET, 24/28/30 = AF_INET6.
        fam = struct.unpack_from("<I" if linktype == LINKTYPE_NULL else "!I", data, 0)[0]
        if linktype == LINKTYPE_NULL and fam > 0xFFFF:
            fam = struct.unpack_from(">I", data, 0)[0]   # written on a big-endian host
        ethertype = ETH_P_IP if fam == 2 else ETH_P_IPV6 if fam in (10, 24, 28, 30) else 0
        return _eth(ethertype, data[4:]), orig_len - 4 + 14
    raise CtrackError(f"unsupported link type {linktype}; ctrack reads "
                      + ", ".join(sorted(set(SUPPORTED.values()))))


def _read_pcap(f, head, cut):
    magic = head[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    else:
        endian = ">"
    nanos = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    rest = f.read(20)
    if len(rest) < 20:
        raise CtrackError("truncated pcap file header")
    # The link type is the low 16 bits; the top bits may say an FCS follows each frame
    # (harmless here: the tracker goes by the IP length, as with Ethernet padding).
    linktype = struct.unpack(endian + "I", rest[16:20])[0] & 0xFFFF
    if linktype not in SUPPORTED:
        to_ethernet(linktype, b"", 0)   # raises the one-line error
    rec = struct.Struct(endian + "IIII")
    index = 0
    while True:
        h = f.read(16)
        if len(h) < 16:
            if h:
                cut(index)
            return
        sec, frac, incl, orig = rec.unpack(h)
        if incl > MAX_RECORD:
            raise CtrackError(f"corrupt pcap record {index}: captured length {incl} bytes")
        data = f.read(incl)
        if len(data) < incl:
            cut(index)   # tcpdump killed mid-write: stop at the last whole packet
            return
        ts = sec * 1_000_000_000 + (frac if nanos else frac * 1000)
        conv = to_ethernet(linktype, data, max(orig, incl))
        if conv is not None:
            yield Frame(index, ts, conv[0], conv[1])
        index += 1


def _tsresol(r):
    """if_tsresol -> (numerator, denominator) of nanoseconds per tick, kept as integers: a float
    cannot hold a nanosecond timestamp (2^53 ns is only 104 days)."""
    if r & 0x80:
        return 1_000_000_000, 1 << (r & 0x7F)
    return (10 ** (9 - r), 1) if r <= 9 else (1, 10 ** (r - 9))


# Smallest body (after type and length, before the trailing length) of the blocks read here.
_MIN_BODY = {1: 8, 2: 20, 3: 4, 6: 20}


def _read_pcapng(f, head, cut):
    endian = "<"
    interfaces = []   # (linktype, (ns per tick as numerator, denominator), offset ns)
    index = 0
    last_ts = 0
    pending = head
    while True:
        hdr = pending if pending else f.read(8)
        pending = b""
        if len(hdr) < 8:
            if hdr:
                cut(index)
            return
        btype = struct.unpack(endian + "I", hdr[:4])[0]
        if btype == 0x0A0D0D0A:   # Section Header Block: its byte order applies to the section
            bom = f.read(4)
            if len(bom) < 4:
                return
            if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                raise CtrackError("corrupt pcapng section header (byte-order magic)")
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            blen = struct.unpack(endian + "I", hdr[4:8])[0]
            if blen < 28 or blen > MAX_RECORD or blen % 4:
                raise CtrackError(f"corrupt pcapng section header length {blen}")
            if len(f.read(blen - 12)) < blen - 12:
                cut(index)
                return
            interfaces = []
            continue
        blen = struct.unpack(endian + "I", hdr[4:8])[0]
        if blen < 12 or blen > MAX_RECORD:
            raise CtrackError(f"corrupt pcapng block length {blen}")
        body = f.read(blen - 8)
        if len(body) < blen - 8:
            cut(index)   # a capture cut mid-block: stop at the last whole packet
            return
        body = body[:-4]
        if len(body) < _MIN_BODY.get(btype, 0):
            raise CtrackError(f"corrupt pcapng block of type {btype}: {len(body)} bytes of body")
        if btype == 1:   # Interface Description Block
            linktype = struct.unpack_from(endian + "H", body, 0)[0]
            tick = (1000, 1)   # default resolution: microseconds
            offset_ns = 0
            off = 8
            while off + 4 <= len(body):
                code, olen = struct.unpack_from(endian + "HH", body, off)
                if code == 0:
                    break
                if code == 9 and olen >= 1 and off + 5 <= len(body):   # if_tsresol
                    tick = _tsresol(body[off + 4])
                elif code == 14 and olen == 8 and off + 12 <= len(body):   # if_tsoffset, seconds
                    offset_ns = struct.unpack_from(endian + "q", body, off + 4)[0] * 1_000_000_000
                off += 4 + ((olen + 3) & ~3)
            if linktype not in SUPPORTED:
                to_ethernet(linktype, b"", 0)
            interfaces.append((linktype, tick, offset_ns))
        elif btype in (6, 2):   # Enhanced Packet Block, (obsolete) Packet Block
            if btype == 6:
                ifid, tsh, tsl, caplen, orig = struct.unpack_from(endian + "IIIII", body, 0)
            else:
                ifid, _drops, tsh, tsl, caplen, orig = struct.unpack_from(endian + "HHIIII", body,
                                                                          0)
            if ifid >= len(interfaces):
                raise CtrackError(f"pcapng packet for undeclared interface {ifid}")
            linktype, (num, den), offset_ns = interfaces[ifid]
            ts = ((tsh << 32) | tsl) * num // den + offset_ns
            last_ts = ts
            data = body[20:20 + caplen]
            conv = to_ethernet(linktype, data, max(orig, len(data)))
            if conv is not None:
                yield Frame(index, ts, conv[0], conv[1])
            index += 1
        elif btype == 3:   # Simple Packet Block: no timestamp, interface 0
            if not interfaces:
                raise CtrackError("pcapng packet before any interface description")
            orig = struct.unpack_from(endian + "I", body, 0)[0]
            data = body[4:4 + orig]
            conv = to_ethernet(interfaces[0][0], data, max(orig, len(data)))
            if conv is not None:
                yield Frame(index, last_ts, conv[0], conv[1])
            index += 1
        # every other block (name resolution, statistics, custom) carries no packet


def read_capture(path, warn=None):
    """Yields Frame objects from a pcap or pcapng file. CtrackError for a missing file, a file
    that is not a capture, or an unsupported link type. A file cut in the middle of a record
    (a capture still being written, or its writer killed) yields the whole records before the
    cut and calls warn(message), as tcpdump and tshark say so too."""
    def cut(index):
        if warn:
            warn(f"{path}: the capture is cut short in the middle of a record; "
                 f"{plural(index, 'whole packet')} read")
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise CtrackError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CtrackError(f"{path}: is a directory, not a capture file") from None
    except PermissionError:
        raise CtrackError(f"{path}: permission denied") from None
    with f:
        head = f.read(4)
        try:
            if head in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                        b"\xa1\xb2\x3c\x4d"):
                yield from _read_pcap(f, head, cut)
            elif head == b"\x0a\x0d\x0d\x0a":
                yield from _read_pcapng(f, head + f.read(4), cut)
            else:
                raise CtrackError("not a pcap or pcapng capture")
        except CtrackError as exc:
            # the readers say what is wrong; every such line also names the file, here
            raise CtrackError(f"{path}: {exc}") from None

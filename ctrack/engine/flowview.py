"""Flow rows (ctrack.live.maps.RowLayout tuples) as people read them: endpoints, names, durations,
sizes, and conntrack's one-line form. Shared by ctrack list and ctrack-top.

Times are relative to the tracker's clock (ctrack.engine.tracker.kernel_now_ns): age since the first
packet, idle since the last, and time left before the entry expires.
"""
import socket

from ctrack.text import addr_text

from .defs import defs
from .flows import PROTO_NAMES

def orig(row, L):
    """(src, sport, dst, dport) in the flow's original direction."""
    s = row[L.ORIG_SIDE] & 1
    a = (row[L.ADDR0], row[L.ADDR1])
    p = (row[L.PORT0], row[L.PORT1])
    fam = row[L.FAMILY]
    return addr_text(fam, a[s]), p[s], addr_text(fam, a[s ^ 1]), p[s ^ 1]


def endpoint_text(addr, port, family):
    return f"[{addr}]:{port}" if family == 6 else f"{addr}:{port}"


class Names:
    """Short names of states, endpoint states, protocols and close reasons (from ctrack.h)."""

    def __init__(self):
        d = defs()
        self.state = d.ct_state.name
        self.ep = d.ct_tcp_endpoint.name
        self.close = d.ct_close_reason.name
        self.tcp = socket.IPPROTO_TCP
        self.f_assured = d.macros["CT_F_ASSURED"]
        self.f_seen_reply = d.macros["CT_F_SEEN_REPLY"]

    def proto(self, p):
        return PROTO_NAMES.get(p, str(p))

    def endpoints(self, row, L):
        """'ESTABLISHED/ESTABLISHED' for TCP, '' for UDP."""
        if row[L.PROTO] != self.tcp:
            return ""
        return f"{self.ep(row[L.STATE0])}/{self.ep(row[L.STATE1])}"


def zeek_text(z):
    """Zeek's conn_state and history as one cell: 'SF ShADadFf' ('-' for an empty history;
    '-' alone from a tracker built --no-zeek)."""
    if z["conn_state"] is None:
        return "-"
    return f"{z['conn_state']} {z['history'] or '-'}"


def duration(ns):
    """Compact duration: 850ms, 42s, 3m07s, 2h05m, 5d03h; '-' for negative."""
    if ns is None or ns < 0:
        return "-"
    s = ns / 1e9
    if s < 1:
        return f"{int(s * 1000)}ms"
    s = int(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _scaled(v, base, suffixes):
    """v in the largest unit below base: 950, 12.3k, 1.2M (one decimal under 100)."""
    v = float(v)
    for suffix in suffixes:
        if abs(v) < base or suffix == suffixes[-1]:
            return f"{v:.0f}{suffix}" if suffix == "" or v >= 100 else f"{v:.1f}{suffix}"
        v /= base


def size(n, unit="B"):
    """1.2K, 34M, ... (powers of 1024 for bytes; 1000 for rates: see rate())."""
    return _scaled(n, 1024, ("", "K", "M", "G", "T")) + unit


def rate(v):
    """Decimal SI rate: 0, 950, 12.3k, 1.2M, ... (the caller appends the unit)."""
    return _scaled(v, 1000, ("", "k", "M", "G", "T"))


def row_srtt_us(row, L):
    """The flow's end-to-end smoothed RTT (µs, the two halves' sum) or None (see ctrack.engine.rtt)."""
    if not (row[L.RTTN0] and row[L.RTTN1]):
        return None
    return (row[L.SRTT8_0] >> 3) + (row[L.SRTT8_1] >> 3)


def conntrack_line(row, L, names, now_ns):
    """conntrack -L's form: proto, number, seconds left, state (TCP), original tuple and its
    counters, [UNREPLIED], reply tuple and its counters, [ASSURED]."""
    src, sport, dst, dport = orig(row, L)
    p = row[L.PROTO]
    left = max(0, (row[L.EXPIRES] - now_ns) // 1_000_000_000)
    parts = [f"{names.proto(p):<8} {p} {left}"]
    if p == names.tcp:
        parts.append(names.state(row[L.STATE]))
    parts.append(f"src={src} dst={dst} sport={sport} dport={dport} "
                 f"packets={row[L.PKTS0]} bytes={row[L.BYTES0]}")
    if not row[L.FLAGS] & names.f_seen_reply:
        parts.append("[UNREPLIED]")
    parts.append(f"src={dst} dst={src} sport={dport} dport={sport} "
                 f"packets={row[L.PKTS1]} bytes={row[L.BYTES1]}")
    if row[L.FLAGS] & names.f_assured:
        parts.append("[ASSURED]")
    return " ".join(parts)

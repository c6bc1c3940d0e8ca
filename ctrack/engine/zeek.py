"""Zeek's conn.log view of a flow: conn_state, history, byte counts, and conn.log's JSON rows.

The tracker keeps, per flow, a record of every packet through Zeek's own rules (struct ct_zeek in
kernel/ctrack.h, updated in kernel/lib/zeek.h): both endpoints' Zeek states, the history letters,
and the sequence numbers Zeek sizes a TCP endpoint by. This module turns that record into what
conn.log says, as Zeek's scripts/base/protocols/conn/main.zeek does (conn_state, set_conn) and its
TCP_Endpoint::Size (orig_bytes / resp_bytes: sequence space, not a sum of payloads).

    decode(zeek, proto)  -> {"conn_state", "history", "orig_bytes", "resp_bytes", ...}
    conn_row(...)        -> one conn.log JSON object (ctrack replay -o zeek)

Names of the endpoint states come from enum ct_zeek_state; nothing is retyped here.

A tracker built without the record (--no-zeek, -DCT_NO_ZEEK) leaves it all zeroes, which no
packet ever leaves behind in the other builds (each sets an endpoint state and the record's time):
summary() then gives conn_state and history null, so readers of maps and events need not know the
build (as a --no-rtt build's zeroed RTT reads as nulls).
"""
import hashlib
import re
import socket

from .defs import defs

# A history that started with an originator SYN and saw its RST before any reply (main.zeek)
_RSTOS0 = re.compile(r"^\^?S[^HAFGIQ]*R.*")
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _states():
    e = defs().ct_zeek_state
    return e, {v: k[len(e.prefix):] for k, v in e.items.items()}


def history(z):
    """The history string of a struct ct_zeek (ctypes)."""
    return bytes(z.history[:z.hist_len]).decode("ascii", "replace") if z.hist_len else ""


def _no_data_acked(x):
    return x.ack_seq in (x.start_seq, (x.start_seq + 1) & 0xFFFFFFFF)


def tcp_size(x, peer):
    """TCP_Endpoint::Size: the sequence space an endpoint used, less its SYN and FIN (kept modulo
    2^32: a connection past 4 GiB one way wraps)."""
    e, _ = _states()
    if (x.prev_state == e.CT_ZEEK_SYN_SENT and x.state == e.CT_ZEEK_RESET and
            peer.state == e.CT_ZEEK_INACTIVE and not _no_data_acked(x)):
        return 0   # a half-open connection discovered and aborted
    last = (x.last_seq - x.start_seq) & 0xFFFFFFFF
    ack = (x.ack_seq - x.start_seq) & 0xFFFFFFFF
    size = last if last > ack else ack
    if size:
        size -= 1
    if x.flags & defs().CT_ZD_FIN and size:
        size -= 1
    return size


def conn_state(proto, o, r, orig_size, resp_size, hist):
    """main.zeek's conn_state() from the two endpoints' final states."""
    e, _ = _states()
    os_, rs = o.state, r.state
    if proto == socket.IPPROTO_UDP:
        if os_ == e.CT_ZEEK_ACTIVE:
            return "SF" if rs == e.CT_ZEEK_ACTIVE else "S0"
        return "SHR" if rs == e.CT_ZEEK_ACTIVE else "OTH"
    inactive = (e.CT_ZEEK_INACTIVE, e.CT_ZEEK_PARTIAL)
    o_inactive, r_inactive = os_ in inactive, rs in inactive
    if rs == e.CT_ZEEK_RESET:
        if (os_ in (e.CT_ZEEK_SYN_SENT, e.CT_ZEEK_SYN_ACK_SENT) or
                (os_ == e.CT_ZEEK_RESET and orig_size == 0 and resp_size == 0)):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os_ == e.CT_ZEEK_RESET:
        if r_inactive:
            return "RSTOS0" if _RSTOS0.match(hist) else "OTH"
        return "RSTO"
    if rs == e.CT_ZEEK_CLOSED and os_ == e.CT_ZEEK_CLOSED:
        return "SF"
    if os_ == e.CT_ZEEK_CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == e.CT_ZEEK_CLOSED:
        return "SHR" if o_inactive else "S3"
    if os_ == e.CT_ZEEK_SYN_SENT and rs == e.CT_ZEEK_INACTIVE:
        return "S0"
    if os_ == e.CT_ZEEK_ESTABLISHED and rs == e.CT_ZEEK_ESTABLISHED:
        return "S1"
    return "OTH"


def decode(z, proto):
    """A struct ct_zeek (ctypes) as a dict: conn_state, history, orig_bytes, resp_bytes (payload
    sizes as Zeek gives them), the endpoints' Zeek state names, and the packets and IP bytes the
    tracker judged INVALID (its own counters leave them out; conn.log counts them)."""
    _, names = _states()
    o, r = z.dir[0], z.dir[1]
    hist = history(z)
    if proto == socket.IPPROTO_TCP:
        ob, rb = tcp_size(o, r), tcp_size(r, o)
    else:
        ob, rb = o.payload, r.payload
    return {"conn_state": conn_state(proto, o, r, ob, rb, hist), "history": hist,
            "orig_bytes": ob, "resp_bytes": rb,
            "orig_zeek_state": names.get(o.state, str(o.state)),
            "resp_zeek_state": names.get(r.state, str(r.state)),
            "invalid_pkts": [o.extra_pkts, r.extra_pkts],
            "invalid_ip_bytes": [o.extra_bytes, r.extra_bytes],
            "last_ts_ns": z.last_ts}


def kept(z):
    """Whether the tracker kept this record: False for a --no-zeek build's (all zeroes)."""
    return any(bytes(z))


def summary(z, proto):
    """{"conn_state", "history"}: what flow objects and events carry; both None when the
    tracker kept no record (--no-zeek)."""
    if not kept(z):
        return {"conn_state": None, "history": None}
    d = decode(z, proto)
    return {"conn_state": d["conn_state"], "history": d["history"]}


def uid(proto, orig, ts_ns):
    """A conn.log uid: "C" and 17 base-62 characters, from the connection's identity and start
    (Zeek's are random; these are stable, so two runs of one capture agree)."""
    h = hashlib.sha256(f"{proto}|{orig['src']}|{orig['sport']}|{orig['dst']}|{orig['dport']}|"
                       f"{ts_ns}".encode()).digest()
    n = int.from_bytes(h[:16], "big")
    out = []
    for _ in range(17):
        n, c = divmod(n, 62)
        out.append(_B62[c])
    return "C" + "".join(out)


def conn_row(proto, orig, first_ns, packets, ip_bytes, z):
    """One conn.log record in Zeek's JSON form (set_conn in main.zeek): duration, orig_bytes and
    resp_bytes only when the duration is positive, history only when not empty. packets and
    ip_bytes are the tracker's [orig, reply] counters; the INVALID packets it left out are added
    back (conn.log counts every packet)."""
    d = decode(z, proto)
    last = max(z.last_ts, first_ns)
    row = {"ts": round(first_ns / 1e9, 6), "uid": uid(proto, orig, first_ns),
           "id.orig_h": orig["src"], "id.orig_p": orig["sport"],
           "id.resp_h": orig["dst"], "id.resp_p": orig["dport"],
           "proto": {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp"}.get(proto, str(proto))}
    if last > first_ns:
        row["duration"] = round((last - first_ns) / 1e9, 6)
        row["orig_bytes"] = d["orig_bytes"]
        row["resp_bytes"] = d["resp_bytes"]
    row["conn_state"] = d["conn_state"]
    if d["history"]:
        row["history"] = d["history"]
    row["orig_pkts"] = packets[0] + d["invalid_pkts"][0]
    row["orig_ip_bytes"] = ip_bytes[0] + d["invalid_ip_bytes"][0]
    row["resp_pkts"] = packets[1] + d["invalid_pkts"][1]
    row["resp_ip_bytes"] = ip_bytes[1] + d["invalid_ip_bytes"][1]
    return row

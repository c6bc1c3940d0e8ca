"""Turns flow-table entries (BCC's ctypes views of struct ct_key / ct_entry) into flow objects.

The flow object is the one `ctrack replay --json` prints under "flows" (and `ctrack list --json`
prints): proto, family, orig {src, sport, dst, dport}, state, orig_state, reply_state,
packets [orig, reply], bytes [orig, reply], rtt (ctrack.engine.rtt), tcp_options (ctrack.engine.tcpopts), and
Zeek's conn_state and history (ctrack/engine/zeek.py). Names come from kernel/ctrack.h via ctrack.engine.defs.
"""
import socket

from ctrack.text import addr_text

from . import zeek
from .defs import defs

PROTO_NAMES = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp"}


def endpoint(key, side):
    """(address text, port) of one key side."""
    return addr_text(key.family, key.addr[side].v6), socket.ntohs(key.port[side])


def key_tuple(key):
    """A hashable, readable identity of a key: (proto, family, (a0, p0), (a1, p1))."""
    return (key.proto, key.family, endpoint(key, 0), endpoint(key, 1))


def orig_tuple(key, orig_side):
    src, sport = endpoint(key, orig_side)
    dst, dport = endpoint(key, orig_side ^ 1)
    return {"src": src, "sport": sport, "dst": dst, "dport": dport}


def flow_states(entry, proto):
    """(state, orig_state, reply_state): overall and endpoint names; endpoints None for UDP."""
    d = defs()
    state = d.ct_state.name(entry.state)
    if proto != socket.IPPROTO_TCP:
        return state, None, None
    ep = d.ct_tcp_endpoint
    return state, ep.name(entry.dir[0].state), ep.name(entry.dir[1].state)


def flow_object(key, entry):
    """The flow as a JSON-ready dict (see module docstring)."""
    state, o_state, r_state = flow_states(entry, key.proto)
    obj = {
        "proto": PROTO_NAMES.get(key.proto, str(key.proto)),
        "family": key.family,
        "orig": orig_tuple(key, entry.orig_side),
        "state": state,
        "orig_state": o_state,
        "reply_state": r_state,
        "packets": [entry.dir[0].packets, entry.dir[1].packets],
        "bytes": [entry.dir[0].bytes, entry.dir[1].bytes],
        **zeek.summary(entry.zeek, key.proto),
    }
    obj.update(flow_extras(key, entry))
    return obj


def flow_extras(key, entry):
    """TCP's passive RTT ("rtt", ctrack.engine.rtt) and SYN options ("tcp_options", ctrack.engine.tcpopts);
    both None for UDP."""
    from .rtt import rtt_object
    from .tcpopts import options_object
    tcp = key.proto == socket.IPPROTO_TCP
    return {"rtt": rtt_object(entry) if tcp else None, "tcp_options": options_object(key, entry)}


def flow_details(entry):
    """What the flow object leaves out, for people: flags, times, close reason, windows."""
    d = defs()
    flags = [name[len("CT_F_"):].lower() for name, bit in d.macros.items()
             if name.startswith("CT_F_") and entry.flags & bit]
    return {
        "flags": flags,
        "first_seen_ns": entry.first_seen,
        "last_seen_ns": entry.last_seen,
        "expires_ns": entry.expires,
        "close_reason": d.ct_close_reason.name(entry.close_reason).lower()
        if entry.close_reason else None,
        "wscale": [entry.dir[0].wscale, entry.dir[1].wscale],
        "mss": [entry.dir[0].mss, entry.dir[1].mss],
    }


def read_flows(table, now_ns=None, include_expired=False):
    """[(key, entry)] from a flows map. Expired entries count as absent (as in the kernel)
    unless include_expired; now_ns is the tracker's clock (capture time in replays)."""
    out = []
    for k, v in table.items():
        if not include_expired and now_ns is not None and now_ns >= v.expires:
            continue
        out.append((k, v))
    out.sort(key=lambda kv: (kv[1].first_seen, key_tuple(kv[0])))
    return out


def format_flow_line(obj):
    """One line a flow, conntrack-like: proto, state, orig tuple, endpoint states, counters."""
    o = obj["orig"]
    fam6 = obj["family"] == 6
    src = f"[{o['src']}]:{o['sport']}" if fam6 else f"{o['src']}:{o['sport']}"
    dst = f"[{o['dst']}]:{o['dport']}" if fam6 else f"{o['dst']}:{o['dport']}"
    eps = f" {obj['orig_state']}/{obj['reply_state']}" if obj["orig_state"] else ""
    from .rtt import rtt_text
    from .tcpopts import options_text
    extra = " ".join(t for t in (rtt_text(obj.get("rtt")), options_text(obj.get("tcp_options"))) if t)
    return (f"{obj['proto']:<4} {obj['state']:<12} {src} -> {dst}{eps} "
            f"pkts={obj['packets'][0]}/{obj['packets'][1]} bytes={obj['bytes'][0]}/{obj['bytes'][1]}"
            + (f" zeek={obj['conn_state']}:{obj['history'] or '-'}" if obj["conn_state"] else "")
            + (" " + extra if extra else ""))

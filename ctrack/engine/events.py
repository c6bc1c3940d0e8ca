"""Flow events from the tracker's ring buffer (struct ct_event), decoded into dicts.

    {"ts_ns", "type": "new"|"state"|"closed"|"destroy", "event": "NEW"|"UPDATE"|"DESTROY",
     "proto", "family", "orig": {...}, "state", "old_state", "orig_state", "reply_state",
     "reason" (closed, destroy), "packets": [o, r], "bytes": [o, r],
     "rtt": {"handshake_us", "srtt_us", "min_us", "samples"} (TCP flows that ended or left the table, else null),
     "conn_state", "history"}

"type" says what happened, "event" is its conntrack message type:
    new      NEW      a flow opened
    state    UPDATE   its state changed
    closed   UPDATE   the connection ended: reason fin or rst (its entry stays until its
                      TIME_WAIT/CLOSE timeout, as in conntrack)
    destroy  DESTROY  the entry left the table, once per entry: reason timeout, evicted,
                      reopened (a new flow took the 5-tuple) or flushed

conn_state and history are Zeek's (ctrack/engine/zeek.py), as of the event; closed and destroy events
carry the flow's last record (conn_state and history as conn.log would give them).
"""
import contextlib
import ctypes
import signal
import socket
import threading

from . import zeek
from .defs import defs
from .flows import PROTO_NAMES, orig_tuple
from .rtt import rtt_text, summary_object


EVENT_NAMES = {"new": "NEW", "state": "UPDATE", "closed": "UPDATE", "destroy": "DESTROY"}


def decode_event(ev):
    """One ring-buffer record (BCC's ctypes view of struct ct_event) as a dict."""
    d = defs()
    k = ev.key
    tcp = k.proto == socket.IPPROTO_TCP
    ep = d.ct_tcp_endpoint
    etype = d.ct_event_type.name(ev.type).lower()
    out = {
        "ts_ns": ev.ts,
        "type": etype,
        "event": EVENT_NAMES.get(etype, etype.upper()),
        "proto": PROTO_NAMES.get(k.proto, str(k.proto)),
        "family": k.family,
        "orig": orig_tuple(k, ev.orig_side),
        "state": d.ct_state.name(ev.state),
        "old_state": d.ct_state.name(ev.old_state) if etype == "state" else None,
        "orig_state": ep.name(ev.orig_state) if tcp else None,
        "reply_state": ep.name(ev.reply_state) if tcp else None,
        "reason": d.ct_close_reason.name(ev.close_reason).lower()
        if etype in ("closed", "destroy") else None,
        "packets": [ev.packets[0], ev.packets[1]],
        "bytes": [ev.bytes[0], ev.bytes[1]],
        **zeek.summary(ev.zeek, k.proto),
    }
    # the end event carries the flow's RTT (ctrack.engine.rtt's flow-level part)
    out["rtt"] = summary_object(ev.rtt) if tcp and etype in ("closed", "destroy") else None
    return out


class EventReader:
    """Collects events from a tracker's `events` ring buffer: poll() returns new ones."""

    def __init__(self, bpf, table="events"):
        self.bpf = bpf
        self.table = bpf[table]
        # struct ct_event's ctypes type, from the program's own layout map
        self.event_type = bpf["event_layout"].Leaf
        self.pending = []
        self.table.open_ring_buffer(self._on_event)

    def _on_event(self, ctx, data, size):
        # a copy only; decoding happens in poll(), outside the ctypes callback
        self.pending.append(ctypes.string_at(data, min(size, ctypes.sizeof(self.event_type))))
        return 0

    def poll(self, timeout_ms=0):
        with _signals_deferred() as caught:
            self.bpf.ring_buffer_poll(timeout_ms)
        raw, self.pending = self.pending, []
        E = self.event_type
        out = [decode_event(E.from_buffer_copy(r.ljust(ctypes.sizeof(E), b"\0"))) for r in raw]
        early, self._early = getattr(self, "_early", []), []
        out = early + out
        if caught:
            # A handler that raises (KeyboardInterrupt) loses this return value: keep the
            # events for the next poll(). One that returns (a stop flag) has them returned now.
            self._early = out
            handler, signum = caught[0]
            handler(signum, None)
            self._early = []
        return out


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT/SIGTERM handlers off while BCC polls the ring buffer: a Python handler that
    raises (Ctrl-C's KeyboardInterrupt, cli_main's SIGTERM) inside a ctypes callback is printed
    and dropped by ctypes, and the tool would not stop. Yields a list that receives the
    (original handler, signal) to run afterwards. Main thread only (elsewhere, a no-op)."""
    caught = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        h = signal.getsignal(sig)
        if callable(h):
            saved[sig] = h
            signal.signal(sig, lambda signum, frame, h=h: caught.append((h, signum)))
    try:
        yield caught
    finally:
        for sig, h in saved.items():
            signal.signal(sig, h)


def format_event(e):
    """conntrack -E style: [NEW] / [UPDATE] / [DESTROY] and the flow."""
    tag = f"[{EVENT_NAMES[e['type']]}]"
    o = e["orig"]
    eps = f" {e['orig_state']}/{e['reply_state']}" if e["orig_state"] else ""
    why = f" reason={e['reason']}" if e["reason"] else ""
    rtt = rtt_text(e.get("rtt"))
    why += f" {rtt}" if rtt else ""
    if e["type"] in ("closed", "destroy") and e.get("conn_state"):
        why += f" conn_state={e['conn_state']} history={e['history'] or '-'}"
    return (f"{tag:>9} {e['proto']} {e['state']}{eps} src={o['src']} dst={o['dst']} "
            f"sport={o['sport']} dport={o['dport']} packets={e['packets'][0]}/{e['packets'][1]} "
            f"bytes={e['bytes'][0]}/{e['bytes'][1]}{why}")


def add_time_arguments(p):
    """-t/-T for the tools that print events (ctrack events, ctrack run): one meaning in both."""
    p = p.add_mutually_exclusive_group()
    p.add_argument("-t", "--timestamp", action="store_true",
                   help="prefix each event with its wall-clock time in seconds since the epoch, "
                        "[1700000000.123456] (conntrack -E -o timestamp)")
    p.add_argument("-T", "--time", action="store_true",
                   help="prefix each event with its wall-clock time of day, HH:MM:SS.uuuuuu")


def wall_time(ev, meta):
    """Wall-clock seconds of an event. Its ts_ns is CLOCK_MONOTONIC (bpf_ktime_get_ns, read
    when the event is emitted); the tracker's description pairs time.time() with
    time.monotonic_ns(), the same clock, read when it started."""
    return meta["started"] + (ev["ts_ns"] - meta["started_monotonic_ns"]) / 1e9


def time_prefix(ev, meta, args):
    """The -t / -T prefix of an event line ("" without either)."""
    if not (getattr(args, "timestamp", False) or getattr(args, "time", False)):
        return ""
    import time
    wall = wall_time(ev, meta)
    if args.timestamp:
        return f"[{wall:.6f}] "
    return time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int(wall * 1e6) % 1000000:06d} "

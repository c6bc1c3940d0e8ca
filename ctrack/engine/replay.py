"""Replays frames through the real tracker with BPF_PROG_TEST_RUN, on the capture's clock.

A Replayer owns a tracker built with replay=True: before each frame it writes the frame's
timestamp (and true length) into the `trace` map, runs the XDP entry point on the frame, and
reads back what the kernel concluded. Used by `ctrack replay` and by the tests.

A packet that ends a flow in its entry (a new SYN reusing the 5-tuple, a packet arriving after the
flow expired, a flow evicted to make room) leaves that flow's final record in the trace; the
Replayer keeps them, so conn_rows() has one row per connection over the whole capture.
"""
import socket
from dataclasses import dataclass
from typing import Optional

from .defs import defs
from ctrack.errors import CtrackError
from ctrack.text import addr_text
from .flows import PROTO_NAMES, endpoint, flow_object, orig_tuple, read_flows
from .packetinfo import decode_frame, empty_fields
from ctrack.bpf.testrun import TestRunner
from . import zeek

ETH_HLEN = 14
# An XDP test run takes at most a page less head and tail room per frame. Longer frames (GRO
# super-packets in captures) are run cut to this length with their true length beside them:
# the tracker reads headers only, and judges lengths by the true length.
MAX_RUN_BYTES = 3000


@dataclass
class PacketResult:
    index: int
    ts_ns: int
    klass: str              # UNTRACKED, NEW, ESTABLISHED, INVALID, RELATED
    reason: Optional[str]   # lower-case reason name when INVALID, else None
    verdict: str            # pass / drop
    flow: Optional[dict]    # {"state", "orig_state", "reply_state"} after the packet, or None
    described: object       # a text, or the packet's trace, turned into text only when asked
                            # for (--json never asks: a third of its run time went there)
    trace: object = None    # the packet's trace (struct ct_trace), None if it was not run
    frame: bytes = b""      # the frame, decoded here only when the tracker did not parse it

    @property
    def summary(self):
        """Who sent what, as the kernel parsed it (or, for what it did not parse, as the frame
        says: the EtherType or IP protocol, the addresses)."""
        if not isinstance(self.described, str):
            if self.described.parsed:
                self.described = Replayer.describe(self.described)
            else:
                self.described = decode_frame(self.frame)[1]
        return self.described

    def fields(self):
        """proto, family, src, sport, dst, dport, tcp_flags, payload_len, icmp, quoted: what
        the packet is, from the kernel's trace when it parsed the packet, else from the frame."""
        t = self.trace
        if t is None:
            return empty_fields()
        if not t.parsed:
            return decode_frame(self.frame)[0]
        return Replayer.trace_fields(t)

    def json(self):
        out = {"index": self.index, "verdict": self.verdict, "reason": self.reason,
               "flow": self.flow, "class": self.klass.lower(), "ts_ns": self.ts_ns,
               "time": round(self.ts_ns / 1e9, 6)}
        out.update(self.fields())
        return out


_TCP_FLAG_LETTERS = ((0x02, "S"), (0x01, "F"), (0x04, "R"), (0x08, "P"), (0x10, "."), (0x20, "U"))


def _flags_text(f):
    return "".join(letter for bit, letter in _TCP_FLAG_LETTERS if f & bit) or "none"


class Replayer:
    def __init__(self, tracker, entry="ct_xdp"):
        """entry: the program to run, ct_xdp (default) or ct_tc. Frames cut short by a capture
        carry their true length only into ct_xdp (ct_tc takes skb->len)."""
        if not tracker.config.replay:
            raise ValueError("the tracker must be built with TrackerConfig(replay=True)")
        self.tracker = tracker
        self.defs = defs()
        self.runner = TestRunner(tracker.fn(entry).fd)
        self.trace = tracker.bpf["trace"]
        self.now_ns = 0
        self.ended = []   # struct ct_event copies: flows that ended in an entry reused since

    def run(self, frame, ts_ns, wire_len=0, index=0):
        """Runs one Ethernet frame at tracker time ts_ns. Returns a PacketResult."""
        d = self.defs
        self.now_ns = ts_ns
        frame = bytes(frame)
        wire_len = max(wire_len, len(frame))
        if len(frame) < ETH_HLEN:
            # The kernel refuses to test-run a frame shorter than an Ethernet header; such a
            # frame is what the program would call L2_TRUNCATED.
            return self._verdict_without_run(index, ts_ns, d.ct_reason.CT_REASON_L2_TRUNCATED)
        if len(frame) > MAX_RUN_BYTES:
            frame = frame[:MAX_RUN_BYTES]
        tr = self.trace.Leaf()
        tr.now = ts_ns
        tr.wire_len = wire_len if wire_len > len(frame) else 0
        self.trace[self.trace.Key(0)] = tr
        try:
            self.runner.run(frame)
        except OSError as exc:
            raise CtrackError(f"the kernel refused to run frame {index}: {exc.strerror}") from None
        t = self.trace[self.trace.Key(0)]
        if t.has_ended:
            ev = t.ended
            self.ended.append(type(ev).from_buffer_copy(ev))
        flow = None
        if t.has_flow:
            tcp = t.key.proto == socket.IPPROTO_TCP
            ep = d.ct_tcp_endpoint
            flow = {"state": d.ct_state.name(t.state),
                    "orig_state": ep.name(t.orig_state) if tcp else None,
                    "reply_state": ep.name(t.reply_state) if tcp else None}
        reason = d.ct_reason.name(t.reason).lower() if t.reason else None
        verdict = "drop" if t.action == d.ct_action.CT_ACTION_DROP else "pass"
        return PacketResult(index, ts_ns, d.ct_class.name(t.klass), reason, verdict, flow, t, t,
                            frame)

    def _verdict_without_run(self, index, ts_ns, reason_value):
        d = self.defs
        enforce = self.tracker.config.policy == "enforce"
        return PacketResult(index, ts_ns, d.ct_class.name(d.ct_class.CT_CLASS_INVALID),
                            d.ct_reason.name(reason_value).lower(),
                            "drop" if enforce else "pass", None, "frame shorter than Ethernet")

    @staticmethod
    def trace_fields(t):
        """The JSON packet fields of a packet the kernel parsed (trace.parsed 1, 2 or 3)."""
        f = empty_fields()
        k = t.key
        f["family"] = k.family
        tcp = k.proto == socket.IPPROTO_TCP
        if t.parsed == 1:
            f["proto"] = PROTO_NAMES.get(k.proto, str(k.proto))
            f["src"], f["sport"] = endpoint(k, t.side)
            f["dst"], f["dport"] = endpoint(k, t.side ^ 1)
            f["tcp_flags"] = _flags_text(t.tcp_flags) if tcp else None
            f["payload_len"] = t.datalen
            return f
        # an ICMP error: its own addresses, type and code; and what it quotes (parsed 2)
        f["proto"] = "icmp6" if k.family == 6 else "icmp"
        f["src"], f["dst"] = addr_text(k.family, t.icmp_outer[0].v6), addr_text(k.family, t.icmp_outer[1].v6)
        f["icmp"] = {"type": t.icmp_type, "code": t.icmp_code}
        mtu = Replayer._icmp_mtu(t)
        if mtu is not None:
            f["icmp"]["mtu"] = mtu
        if t.parsed == 2:
            src, sport = endpoint(k, t.side)
            dst, dport = endpoint(k, t.side ^ 1)
            f["quoted"] = {"proto": PROTO_NAMES.get(k.proto, str(k.proto)), "src": src,
                           "sport": sport, "dst": dst, "dport": dport}
            if tcp:
                f["quoted"]["seq"] = t.seq
        return f

    @staticmethod
    def _icmp_mtu(t):
        """The MTU an error reports: RFC 1191's "fragmentation needed", RFC 8201's "packet too
        big"; None for other errors."""
        fam = t.key.family
        if fam == 4 and (t.icmp_type, t.icmp_code) == (3, 4):
            return t.icmp_rest & 0xFFFF
        if fam == 6 and t.icmp_type == 2:
            return t.icmp_rest
        return None

    @staticmethod
    def describe(t):
        """A packet's trace (struct ct_trace) as one line of text."""
        if not t.parsed:
            return "-"
        k = t.key
        if t.parsed == 3:
            return Replayer._icmp_text(t)
        src, sport = endpoint(k, t.side)
        dst, dport = endpoint(k, t.side ^ 1)
        if k.family == 6:
            src, dst = f"[{src}]", f"[{dst}]"
        if t.parsed == 2:
            # an ICMP error: the key, side and seq are those of the packet it quotes
            quoted = f"{src}:{sport} > {dst}:{dport} " + (
                f"tcp seq={t.seq}" if k.proto == socket.IPPROTO_TCP else "udp")
            return f"{Replayer._icmp_text(t)} about {quoted}"
        if k.proto == socket.IPPROTO_TCP:
            return (f"{src}:{sport} > {dst}:{dport} tcp [{_flags_text(t.tcp_flags)}] "
                    f"seq={t.seq} ack={t.ack} win={t.win} len={t.datalen}")
        return f"{src}:{sport} > {dst}:{dport} udp len={t.datalen}"

    @staticmethod
    def _icmp_text(t):
        """An ICMP error's own part: who sent it to whom, type, code, and the MTU it reports
        (RFC 1191's "fragmentation needed", RFC 8201's "packet too big")."""
        fam = t.key.family
        src, dst = addr_text(fam, t.icmp_outer[0].v6), addr_text(fam, t.icmp_outer[1].v6)
        text = f"{'icmp6' if fam == 6 else 'icmp'} {src} > {dst} error type={t.icmp_type} code={t.icmp_code}"
        mtu = Replayer._icmp_mtu(t)
        if mtu is not None:
            text += f" mtu={mtu}"
        return text

    def flows(self):
        """Flow objects in the table now (expired ones count as absent)."""
        return [flow_object(k, v) for k, v in read_flows(self.tracker.flows, self.now_ns)]

    def conn_rows(self):
        """Zeek conn.log rows (ctrack.engine.zeek.conn_row), one per connection the replay saw: those
        that ended in an entry later reused or evicted, then every entry in the table, expired
        ones included (their connection is over, as Zeek's would have timed out). By start."""
        rows = []
        for ev in self.ended:
            rows.append(zeek.conn_row(ev.key.proto, orig_tuple(ev.key, ev.orig_side), ev.first_seen,
                                      list(ev.packets), list(ev.bytes), ev.zeek))
        for k, v in read_flows(self.tracker.flows, self.now_ns, include_expired=True):
            rows.append(zeek.conn_row(k.proto, orig_tuple(k, v.orig_side), v.first_seen,
                                      [v.dir[0].packets, v.dir[1].packets],
                                      [v.dir[0].bytes, v.dir[1].bytes], v.zeek))
        rows.sort(key=lambda r: (r["ts"], r["uid"]))
        return rows

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
from .errors import CtrackError
from .flows import addr_text, endpoint, flow_object, orig_tuple, read_flows
from .testrun import TestRunner
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

    @property
    def summary(self):
        """Who sent what, as the kernel parsed it."""
        if not isinstance(self.described, str):
            self.described = Replayer.describe(self.described)
        return self.described

    def json(self):
        return {"index": self.index, "verdict": self.verdict, "reason": self.reason,
                "flow": self.flow}


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
        return PacketResult(index, ts_ns, d.ct_class.name(t.klass), reason, verdict, flow, t)

    def _verdict_without_run(self, index, ts_ns, reason_value):
        d = self.defs
        enforce = self.tracker.config.policy == "enforce"
        return PacketResult(index, ts_ns, "INVALID", d.ct_reason.name(reason_value).lower(),
                            "drop" if enforce else "pass", None, "frame shorter than Ethernet")

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
        return f"{src}:{sport} > {dst}:{dport} udp"

    @staticmethod
    def _icmp_text(t):
        """An ICMP error's own part: who sent it to whom, type, code, and the MTU it reports
        (RFC 1191's "fragmentation needed", RFC 8201's "packet too big")."""
        fam = t.key.family
        src, dst = addr_text(fam, t.icmp_outer[0]), addr_text(fam, t.icmp_outer[1])
        text = f"{'icmp6' if fam == 6 else 'icmp'} {src} > {dst} error type={t.icmp_type} code={t.icmp_code}"
        if fam == 4 and (t.icmp_type, t.icmp_code) == (3, 4):
            text += f" mtu={t.icmp_rest & 0xFFFF}"
        elif fam == 6 and t.icmp_type == 2:
            text += f" mtu={t.icmp_rest}"
        return text

    def flows(self):
        """Flow objects in the table now (expired ones count as absent)."""
        return [flow_object(k, v) for k, v in read_flows(self.tracker.flows, self.now_ns)]

    def conn_rows(self):
        """Zeek conn.log rows (ctrack.zeek.conn_row), one per connection the replay saw: those
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

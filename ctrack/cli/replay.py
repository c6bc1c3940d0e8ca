"""`ctrack replay`: runs a pcap/pcapng capture through the real tracker (BPF_PROG_TEST_RUN) on
the capture's clock; prints each packet's verdict and flow state, then the flow table."""
import argparse
import json
import sys

from ctrack.engine.pcap import read_capture
from ctrack.engine.replay import Replayer
from ctrack.engine.tracker import Tracker, TrackerConfig, add_pickup_arguments, default_pickup, parse_timeouts
from ctrack.engine.flows import format_flow_line
from ctrack.errors import CtrackError

EXAMPLES = """examples:
  ctrack replay handshake.pcap
  ctrack replay --json trace.pcapng | jq '.flows'
  ctrack replay --policy enforce attack.pcap      # what an enforcing tracker would drop
  ctrack replay --pickup --policy enforce midstream.pcap
  ctrack replay --no-pickup trace.pcap            # mid-stream segments INVALID tcp_no_flow
  ctrack replay -o zeek trace.pcap > conn.log     # Zeek's conn.log (JSON lines), one row per connection
  ctrack replay --timeout TIME_WAIT=5 --timeout UDP_NEW=2 trace.pcap

timeouts (seconds; names as in kernel/ctrack.h): SYN_SENT SYN_RECV ESTABLISHED FIN_WAIT
  CLOSE_WAIT LAST_ACK TIME_WAIT CLOSE SYN_SENT2 UNACK UDP_NEW UDP_ESTABLISHED

output: a header line, then one line a packet in fixed columns: NO (index in the capture),
TIME (seconds since the first packet), VERDICT (pass/drop), CLASS (NEW, ESTABLISHED, RELATED,
INVALID, UNTRACKED), REASON (why INVALID), STATE (the flow's overall state after the packet),
ENDPOINTS (opener's/responder's TCP states), then the packet as the tracker parsed it, tcpdump
style (`len=` the TCP or UDP payload); what it does not track is named by IP protocol or
EtherType (arp, igmp, lldp, ...). "-": nothing to say. Then the flow table, TCP flows with
their passive RTT (rtt= smoothed, min=, hs= handshake, n= samples: sums of the halves
tracker->responder->tracker and tracker->opener->tracker, on the capture's clock) and the
options each side's SYN offered (opts=opener/responder).
--json prints {"packets": [...], "flows": [...]}; each packet object has index, time, ts_ns,
class, verdict, reason, flow, proto, family, src, sport, dst, dport, tcp_flags, payload_len,
icmp, quoted (see README: "ctrack replay --json").
-o zeek prints one conn.log object a line (ts, uid, id.orig_h, id.orig_p, id.resp_h, id.resp_p,
proto, duration, orig_bytes, resp_bytes, conn_state, history, orig_pkts, orig_ip_bytes, resp_pkts,
resp_ip_bytes): every connection of the capture, also those that ended and whose entry was
reused, evicted, or expired (not with --no-zeek, whose flows carry conn_state and history
null). Pickup: on under observe, off under enforce (--pickup/--no-pickup).
"""


def add_parser(sub):
    p = sub.add_parser("replay", help="run a capture through the tracker, offline",
                       description="Replay a pcap or pcapng capture through the real tracker "
                                   "program (BPF_PROG_TEST_RUN), using the capture's timestamps "
                                   "as the tracker's clock.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help="pcap or pcapng capture")
    p.add_argument("--policy", choices=("observe", "enforce"), default="observe",
                   help="observe: pass everything (default); enforce: drop INVALID packets")
    add_pickup_arguments(p)
    p.add_argument("--timeout", action="append", metavar="STATE=SECONDS", default=[],
                   help="override one per-state timeout (repeatable)")
    p.add_argument("--table-size", type=int, metavar="N", help="flow table capacity (default 65536)")
    p.add_argument("--no-rtt", action="store_true", help="build the tracker without passive RTT")
    p.add_argument("--no-syn-options", action="store_true",
                   help="build the tracker without the SYNs' TCP options summary")
    p.add_argument("--no-zeek", action="store_true",
                   help="build the tracker without Zeek's conn_state/history record (flows show "
                        "them as null; -o zeek is refused)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON document")
    out.add_argument("-o", "--output", choices=("text", "json", "zeek"), default="text",
                     help="text (default), json (same as --json), or zeek: the capture's "
                          "connections as Zeek's conn.log, JSON lines (see ctrack/engine/zeek.py)")
    p.set_defaults(func=run)


def run(args):
    if args.output == "json":
        args.json = True
    if args.output == "zeek" and args.no_zeek:
        raise CtrackError("-o zeek needs Zeek's record, which --no-zeek leaves out: drop one of them")
    cfg = TrackerConfig(policy=args.policy, pickup=default_pickup(args.policy, args.pickup),
                        timeouts=parse_timeouts(args.timeout), table_size=args.table_size,
                        replay=True, rtt=not args.no_rtt, synopts=not args.no_syn_options,
                        zeek=not args.no_zeek)
    frames = read_capture(args.file, warn=lambda msg: print(f"ctrack: warning: {msg}",
                                                            file=sys.stderr))
    first = next(frames, None)   # reads the header now: a bad file fails before compiling
    columns = _columns()
    with Tracker(cfg) as tracker:
        rp = Replayer(tracker)
        packets = []
        t0 = first.ts_ns if first else 0
        out = sys.stdout

        def handle(fr):
            res = rp.run(fr.data, fr.ts_ns, fr.wire_len, fr.index)
            if args.output == "zeek":
                return
            if args.json:
                packets.append(res.json())
            else:
                out.write(_packet_line(res, t0, columns) + "\n")

        if not args.json and args.output != "zeek":
            out.write(_header(columns) + "\n")
        if first is not None:
            handle(first)
            for fr in frames:
                handle(fr)
        if args.output == "zeek":
            out.write("".join(json.dumps(row) + "\n" for row in rp.conn_rows()))
            return 0
        flows = rp.flows()
        if args.json:
            # dumps, not dump: dump streams through the pure-Python encoder (4x slower here)
            out.write(json.dumps({"packets": packets, "flows": flows}) + "\n")
        else:
            out.write(f"\nflows ({len(flows)}):\n")
            for f in flows:
                out.write("  " + format_flow_line(f) + "\n")
    return 0


def _columns():
    """The fixed columns of a packet line before the packet itself: (header, width, right
    aligned, value of (result, t0)). Widths come from the longest names in kernel/ctrack.h, so
    every line lines up whatever it holds; a new column is one more item here."""
    from ctrack.engine.defs import defs
    d = defs()
    longest = lambda enum: max(len(n) for n in enum.names())   # noqa: E731
    ep = longest(d.ct_tcp_endpoint)
    return [
        ("NO", 5, True, lambda r, t0: str(r.index)),
        ("TIME", 10, True, lambda r, t0: f"{(r.ts_ns - t0) / 1e9:.6f}"),
        ("VERDICT", 7, False, lambda r, t0: r.verdict),
        ("CLASS", longest(d.ct_class), False, lambda r, t0: r.klass),
        ("REASON", longest(d.ct_reason), False, lambda r, t0: r.reason or "-"),
        ("STATE", longest(d.ct_state), False, lambda r, t0: r.flow["state"] if r.flow else "-"),
        ("ENDPOINTS", 2 * ep + 1, False,
         lambda r, t0: f"{r.flow['orig_state']}/{r.flow['reply_state']}"
         if r.flow and r.flow["orig_state"] else "-"),
    ]


def _header(columns):
    cells = [h.rjust(w) if right else h.ljust(w) for h, w, right, _ in columns]
    return " ".join(cells) + " PACKET"


def _packet_line(res, t0, columns):
    cells = [(v(res, t0).rjust(w) if right else v(res, t0).ljust(w)) for _, w, right, v in columns]
    return " ".join(cells) + " " + res.summary

"""`ctrack replay`: runs a pcap/pcapng capture through the real tracker (BPF_PROG_TEST_RUN) on
the capture's clock; prints each packet's verdict and flow state, then the flow table."""
import argparse
import json
import sys

from .pcap import read_capture
from .replay import Replayer
from .tracker import Tracker, TrackerConfig, parse_timeouts
from .flows import format_flow_line

EXAMPLES = """examples:
  ctrack replay handshake.pcap
  ctrack replay --json trace.pcapng | jq '.flows'
  ctrack replay --policy enforce attack.pcap      # what an enforcing tracker would drop
  ctrack replay --pickup --policy enforce midstream.pcap
  ctrack replay --timeout TIME_WAIT=5 --timeout UDP_NEW=2 trace.pcap

timeouts (seconds; names as in kernel/ctrack.h): SYN_SENT SYN_RECV ESTABLISHED FIN_WAIT
  CLOSE_WAIT LAST_ACK TIME_WAIT CLOSE SYN_SENT2 UNACK UDP_NEW UDP_ESTABLISHED

output: one line a packet: index, seconds since the first packet, the packet as the tracker
parsed it, verdict (pass/drop), class (NEW/ESTABLISHED/RELATED/INVALID/UNTRACKED) and reason, and the
flow's overall state with the opener's/responder's endpoint states. Then the flow table, TCP
flows with their passive RTT (rtt= smoothed, min=, hs= handshake, n= samples: sums of the halves
tracker->responder->tracker and tracker->opener->tracker, on the capture's clock) and the options
each side's SYN offered (opts=opener/responder).
--json prints {"packets": [...], "flows": [...]} (see README: "ctrack replay --json").
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
    p.add_argument("--pickup", action="store_true",
                   help="create flows from mid-stream ACKs instead of calling them INVALID")
    p.add_argument("--timeout", action="append", metavar="STATE=SECONDS", default=[],
                   help="override one per-state timeout (repeatable)")
    p.add_argument("--table-size", type=int, metavar="N", help="flow table capacity (default 65536)")
    p.add_argument("--no-rtt", action="store_true", help="build the tracker without passive RTT")
    p.add_argument("--no-syn-options", action="store_true",
                   help="build the tracker without the SYNs' TCP options summary")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=run)


def run(args):
    cfg = TrackerConfig(policy=args.policy, pickup=args.pickup,
                        timeouts=parse_timeouts(args.timeout), table_size=args.table_size,
                        replay=True, rtt=not args.no_rtt, synopts=not args.no_syn_options)
    frames = read_capture(args.file, warn=lambda msg: print(f"ctrack: warning: {msg}",
                                                            file=sys.stderr))
    first = next(frames, None)   # reads the header now: a bad file fails before compiling
    with Tracker(cfg) as tracker:
        rp = Replayer(tracker)
        packets = []
        t0 = first.ts_ns if first else 0
        out = sys.stdout

        def handle(fr):
            res = rp.run(fr.data, fr.ts_ns, fr.wire_len, fr.index)
            if args.json:
                packets.append(res.json())
            else:
                out.write(_packet_line(res, t0) + "\n")

        if first is not None:
            handle(first)
            for fr in frames:
                handle(fr)
        flows = rp.flows()
        if args.json:
            # dumps, not dump: dump streams through the pure-Python encoder (4x slower here)
            out.write(json.dumps({"packets": packets, "flows": flows}) + "\n")
        else:
            out.write(f"\nflows ({len(flows)}):\n")
            for f in flows:
                out.write("  " + format_flow_line(f) + "\n")
    return 0


def _packet_line(res, t0):
    what = res.klass + (f" {res.reason}" if res.reason else "")
    flow = ""
    if res.flow:
        f = res.flow
        flow = f["state"] + (f" ({f['orig_state']}/{f['reply_state']})" if f["orig_state"] else "")
    return f"{res.index:>5} {(res.ts_ns - t0) / 1e9:10.6f}  {res.summary}  {res.verdict} {what}  {flow}"

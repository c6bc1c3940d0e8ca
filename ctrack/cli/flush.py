"""`ctrack flush` and `ctrack delete`: remove flows from a running tracker's table, like
`conntrack -F` and `conntrack -D`, with the filters of `ctrack list`.

The removal runs in the kernel (kernel/collector.c's XDP program in FLUSH mode, run with
BPF_PROG_TEST_RUN): each entry is claimed under its lock, removed, and reported
`[DESTROY] ... reason=flushed` in the tracker's event stream. What was removed is printed with its final counters. A flow removed
while its connection is alive is simply new again at its next packet (a UDP datagram or a TCP
SYN opens it; other TCP segments are INVALID no_flow, unless the tracker runs with --pickup).
"""
import argparse
import json
import sys

from ctrack.live import pins
from ctrack.errors import CtrackError
from ctrack.engine.events import format_event
from ctrack.engine.flowfilter import FlowFilter
from ctrack.text import plural

FLUSH_EXAMPLES = """examples:
  ctrack flush                         # empty the table of the only running tracker
  ctrack flush --name edge -p udp      # only its UDP flows
  ctrack flush --state time_wait -q    # quietly drop connections in TIME_WAIT
"""

DELETE_EXAMPLES = """examples:
  ctrack delete -s 10.0.0.1 -p tcp --dport 22    # the SSH connections 10.0.0.1 opened
  ctrack delete --addr 10.0.0.2                  # every flow to or from 10.0.0.2
  ctrack delete --port 5201 --json               # iperf3's flows, printed as JSON

delete needs at least one filter (ctrack flush removes everything).
"""

MAX_ROUNDS = 5   # flows created meanwhile, or claimed by a collector that then lost its delete


def add_parsers(sub):
    for name, helptext, epilog in (
            ("flush", "remove flows from a running tracker (conntrack -F), filters optional",
             FLUSH_EXAMPLES),
            ("delete", "remove the flows matching filters (conntrack -D)", DELETE_EXAMPLES)):
        p = sub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".",
                           epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--name", help="tracker name (default: the only running tracker)")
        out = p.add_mutually_exclusive_group()
        out.add_argument("--json", action="store_true",
                         help="print the removed flows as a JSON array of events")
        out.add_argument("-q", "--quiet", action="store_true", help="print only the count")
        FlowFilter.add_arguments(p)
        p.set_defaults(func=run, require_filter=name == "delete")


def remove(sh, flt):
    """Remove the matching entries (all with an empty filter). Returns the removed flows as
    event dicts (ctrack.engine.events.decode_event, plus "reported")."""
    from ctrack.live.collector import Collector
    gc = Collector(sh)
    L = sh.layout
    removed = []
    for _ in range(MAX_ROUNDS):
        if flt:
            pred = flt.row_predicate(L)
            keys = [L.key_bytes(r) for r in sh.rows() if pred(r)]
            if not keys:
                break
            res = gc.flush(keys)
        else:
            res = gc.flush(None)
        removed += res.flows
        if res.removed == 0 or not flt and not sh.rows():
            break
    return removed


def run(args):
    from ctrack.live.maps import Shared
    flt = FlowFilter.from_args(args)
    if args.require_filter and not flt:
        raise CtrackError("delete needs a filter (say -p, --state, -s, -d, --sport, --dport, "
                          "--addr or --port); to remove everything use `ctrack flush`")
    meta = pins.find(args.name)
    with Shared(meta) as sh:
        removed = remove(sh, flt)
    out = sys.stdout
    if args.json:
        json.dump(removed, out, indent=1)
        out.write("\n")
    elif args.quiet:
        out.write(f"{len(removed)}\n")
    else:
        for ev in removed:
            out.write(format_event(ev) + "\n")
        print(f"ctrack: {plural(len(removed), 'flow entry', 'flow entries')} "
              f"{'has' if len(removed) == 1 else 'have'} been deleted.", file=sys.stderr)
    return 0

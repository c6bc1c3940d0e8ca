"""`ctrack list`: a running tracker's flow table, once, like `conntrack -L`; filterable, as a
table, as JSON (the flow objects of `ctrack replay --json`) or in conntrack's one-line form.
Also registers `ctrack flush` and `ctrack delete` (ctrack/cli/flush.py), which share the filters.
"""
import argparse
import json
import sys

from . import flush as cmd_flush
from ctrack.live import pins
from ctrack.engine.flowfilter import FlowFilter
from ctrack.engine.flows import flow_object
from ctrack.engine.flowview import Names, conntrack_line, duration, endpoint_text, orig, row_srtt_us, size, zeek_text
from ctrack.engine.rtt import us_text
from ctrack.engine.tracker import kernel_now_ns
from ctrack.text import plural

EXAMPLES = """examples:
  ctrack list                              # every live flow of the only running tracker
  ctrack list -p tcp --state established   # established TCP flows
  ctrack list -s 10.0.0.1 --dport 80       # flows opened by 10.0.0.1 to port 80
  ctrack list --addr 10.0.0.0/24           # either endpoint in 10.0.0.0/24
  ctrack list -o conntrack                 # conntrack -L's one line per flow
  ctrack list --json | jq '.[].state'      # the flow objects of `ctrack replay --json`
  ctrack list --count --state syn_sent     # how many half-open connections
  ctrack list --name edge --sort bytes     # tracker `edge`, biggest flows first

Expired entries the collector has not removed yet count as absent (as in the tracker); --all
shows them too. Times: AGE since the first packet, IDLE since the last, TTL until expiry.
SRTT: the TCP flow's smoothed round-trip time measured passively at the tracker (the sum of its
two halves, '-' until each has a sample); --json has the details and the SYNs' TCP options.
ZEEK: Zeek's conn_state and history for the flow so far (as conn.log would say; docs/tcp.md).
"""

SORTS = ("age", "idle", "ttl", "bytes", "packets", "state")


def add_parser(sub):
    p = sub.add_parser("list", help="print a running tracker's flow table (conntrack -L)",
                       description="Print the flow table of a running tracker (`ctrack run`).",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", help="tracker name (default: the only running tracker)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("-o", "--output", choices=("table", "conntrack", "json"), default="table",
                     help="table (default), conntrack (its -L lines) or json")
    fmt.add_argument("--json", action="store_const", dest="output", const="json",
                     help="same as -o json: a JSON array of flow objects")
    fmt.add_argument("--count", action="store_true", help="print only how many flows match")
    p.add_argument("--all", action="store_true", help="include expired entries not yet removed")
    p.add_argument("--sort", choices=SORTS, default="age",
                   help="order: age (oldest first, default), idle, ttl, bytes, packets, state")
    FlowFilter.add_arguments(p)
    p.set_defaults(func=run)
    cmd_flush.add_parsers(sub)


def select(sh, flt, include_expired=False, raw=False):
    """(now, matching rows, entries in the table): live entries only unless include_expired."""
    now = kernel_now_ns()
    L = sh.layout
    pred = flt.row_predicate(L)
    iE = L.EXPIRES
    every = sh.rows(raw=raw)
    rows = [r for r in every if (include_expired or r[iE] > now) and pred(r)]
    return now, rows, len(every)


def sort_rows(rows, L, how, now):
    keyf = {
        "age": lambda r: (r[L.FIRST], r[L.KEY]),
        "idle": lambda r: r[L.LAST],
        "ttl": lambda r: r[L.EXPIRES],
        "bytes": lambda r: -(r[L.BYTES0] + r[L.BYTES1]),
        "packets": lambda r: -(r[L.PKTS0] + r[L.PKTS1]),
        "state": lambda r: (r[L.STATE], r[L.FIRST]),
    }[how]
    rows.sort(key=keyf)
    return rows


def table_lines(rows, L, now):
    names = Names()
    head = ("PROTO", "STATE", "ORIGINAL", "ENDPOINTS", "AGE", "IDLE", "TTL", "PKTS", "BYTES", "SRTT",
            "ZEEK")
    out = []
    for r in rows:
        src, sport, dst, dport = orig(r, L)
        fam = r[L.FAMILY]
        out.append((names.proto(r[L.PROTO]), names.state(r[L.STATE]),
                    f"{endpoint_text(src, sport, fam)} -> {endpoint_text(dst, dport, fam)}",
                    names.endpoints(r, L) or "-",
                    duration(now - r[L.FIRST]), duration(now - r[L.LAST]),
                    duration(r[L.EXPIRES] - now) if r[L.EXPIRES] > now else "expired",
                    f"{r[L.PKTS0]}/{r[L.PKTS1]}",
                    f"{size(r[L.BYTES0])}/{size(r[L.BYTES1])}",
                    us_text(row_srtt_us(r, L)), zeek_text(L.zeek_of(r))))
    widths = [max([len(h)] + [len(x[i]) for x in out]) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*head).rstrip()] + [fmt.format(*x).rstrip() for x in out]


def run(args):
    from ctrack.live.maps import Shared
    flt = FlowFilter.from_args(args)
    meta = pins.find(args.name)
    with Shared(meta) as sh:
        L = sh.layout
        now, rows, total = select(sh, flt, args.all, raw=args.output == "json" and not args.count)
        if args.count:
            print(len(rows))
            return 0
        sort_rows(rows, L, args.sort, now)
        out = sys.stdout
        if args.output == "json":
            objs = [flow_object(sh.key_of(r), sh.entry_of(r)) for r in rows]
            json.dump(objs, out, indent=1)
            out.write("\n")
        elif args.output == "conntrack":
            names = Names()
            for r in rows:
                out.write(conntrack_line(r, L, names, now) + "\n")
            print(f"ctrack: {plural(len(rows), 'flow entry', 'flow entries')} "
                  f"{'has' if len(rows) == 1 else 'have'} been shown.", file=sys.stderr)
        else:
            for line in table_lines(rows, L, now):
                out.write(line + "\n")
            print(f"ctrack: {plural(len(rows), 'flow')} shown; table {total}/{sh.table_size} entries "
                  f"(tracker {meta['name']!r})", file=sys.stderr)
    return 0

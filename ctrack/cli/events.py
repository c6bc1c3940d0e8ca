"""`ctrack events`: a running tracker's flow events as they happen, like `conntrack -E`.

Events come from the tracker's ring buffer through `ctrack run`, which is the buffer's only
reader and re-publishes every event to any number of `ctrack events` (ctrack/live/eventbus.py):
two readers of one ring buffer would each miss what the other took.
"""
import argparse
import json
import sys
import time

from ctrack.live import pins
from ctrack.errors import CtrackError
from ctrack.live.eventbus import Subscription
from ctrack.engine.events import add_time_arguments, format_event, time_prefix, wall_time  # noqa: F401
from ctrack.engine.flowfilter import FlowFilter
from ctrack.live.stopsignal import StopOnSignal
from ctrack.text import plural

EXAMPLES = """examples:
  ctrack events                             # every event of the only running tracker
  ctrack events -e new,destroy              # entries created and removed, no updates
  ctrack events -p tcp --dport 443 -t       # HTTPS flows, with wall-clock timestamps
  ctrack events -T                          # ... as the time of day, HH:MM:SS.uuuuuu
  ctrack events --json | jq .reason         # JSON lines (the same dicts as `ctrack run --json`)
  ctrack events --history 50 -c 10         # the last 50 events, then stop after 10 more

types, as conntrack's: new (a flow opened); update (its state changed, or the connection
ended: reason=fin or rst, the entry staying until its TIME_WAIT/CLOSE timeout); destroy (the
entry left the table: reason=timeout, evicted, reopened or flushed). conntrack's
NEW/UPDATES/DESTROY work too. In --json, "event" is NEW/UPDATE/DESTROY and "type" says which
update: "state" or "closed" (the end of the connection).
"""

TYPES = {"new": {"new"}, "update": {"state", "closed"}, "updates": {"state", "closed"},
         "state": {"state"}, "closed": {"closed"}, "destroy": {"destroy"}}


def parse_types(text):
    out = set()
    for part in text.split(","):
        p = part.strip().lower()
        if p in ("all", ""):
            return set().union(*TYPES.values())
        if p not in TYPES:
            raise CtrackError(f"bad event type {part!r}: new, update, destroy (or all)")
        out |= TYPES[p]
    return out


def add_parser(sub):
    p = sub.add_parser("events", help="stream a running tracker's flow events (conntrack -E)",
                       description="Print flow events of a running tracker (`ctrack run`) as "
                                   "they happen, until Ctrl-C.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", help="tracker name (default: the only running tracker)")
    p.add_argument("-e", "--event-mask", default="all", metavar="TYPES",
                   help="comma-separated: new, update, destroy (default all)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    add_time_arguments(p)
    p.add_argument("--history", type=int, default=0, metavar="N",
                   help="start with up to N recent events (default 0: only new ones)")
    p.add_argument("-c", "--count", type=int, metavar="N", help="exit after N events")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="exit after this long")
    FlowFilter.add_arguments(p)
    p.set_defaults(func=run)


def run(args):
    types = parse_types(args.event_mask)
    flt = FlowFilter.from_args(args)
    meta = pins.find(args.name)
    sub = Subscription(meta["name"], history=max(0, args.history))
    out = sys.stdout
    seen = 0
    lost_reported = 0
    deadline = time.monotonic() + args.duration if args.duration else None
    # Ctrl-C/SIGTERM stop between batches, so a batch already read is printed whole
    try:
        with StopOnSignal() as stop:
            while not sub.closed and not stop():
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                if deadline is not None and wait <= 0:
                    break
                for ev in sub.read(min(wait, 0.5) if wait is not None else 0.5):
                    if ev["type"] not in types or not flt.match_event(ev):
                        continue
                    if args.json:
                        line = json.dumps(ev)
                    else:
                        line = time_prefix(ev, meta, args) + format_event(ev)
                    out.write(line + "\n")
                    seen += 1
                    if args.count and seen >= args.count:
                        out.flush()
                        return 0
                out.flush()
                if sub.lost > lost_reported:
                    print(f"ctrack: {plural(sub.lost - lost_reported, 'event')} lost (reading too slowly)",
                          file=sys.stderr)
                    lost_reported = sub.lost
            if sub.closed:
                print(f"ctrack: tracker {meta['name']!r} stopped", file=sys.stderr)
    finally:
        sub.close()
    return 0

"""`ctrack gc`: the collector on its own, for a tracker started with `ctrack run --no-gc`, or one
pass on demand (--once) beside any tracker. See ctrack/live/collector.py for what a pass does."""
import argparse
import json
import os
import sys
import threading

from ctrack.live import pins
from ctrack.engine.events import format_event
from ctrack.engine.flowfilter import positive_float
from ctrack.live.collector import BACKOFF, MIN_FRACTION, QUIET_PASSES
from ctrack.text import plural

EXAMPLES = f"""examples:
  ctrack gc --once                 # one pass now: remove what has expired, say how much
  ctrack gc --once -v              # ... and print each flow removed ([DESTROY] lines)
  ctrack gc --name edge            # collect for tracker `edge` (started with --no-gc)
  ctrack gc --interval 10 --json   # every 10 s at most, one JSON line per pass

A pass copies the pinned table out with batch lookups and picks the expired entries; an XDP
program (run with BPF_PROG_TEST_RUN: it loads wherever the tracker does) checks each again under
its lock -- still expired, still the same flow -- removes it and reports it: a [DESTROY] event
with reason=timeout, and the tracker's closed_timeout counter for a flow that had not ended
otherwise (by FIN or RST, reported then as an [UPDATE]).
Schedule: the next pass comes when the earliest remaining flow expires, at least every
--interval, every {BACKOFF} x --interval once {QUIET_PASSES} passes found nothing while the table
is under 90% full, never more often than --interval / {MIN_FRACTION}.
`ctrack run` runs a collector itself (not with `--no-gc`): only one runs per tracker (--once
passes may run beside it).
"""


def add_parser(sub):
    p = sub.add_parser("gc", help="remove expired flows from a running tracker's table",
                       description="Remove expired flows from a running tracker's table.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", help="tracker name (default: the only running tracker)")
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p.add_argument("--interval", type=positive_float, default=1.0, metavar="SECONDS",
                   help="longest time between passes (default 1)")
    p.add_argument("-v", "--verbose", action="store_true", help="print each flow removed")
    p.add_argument("--json", action="store_true", help="one JSON object per pass")
    p.set_defaults(func=run)


def _report(r, args, out):
    if args.json:
        d = r.json()
        if args.verbose:
            d["flows"] = r.flows
        out.write(json.dumps(d) + "\n")
    else:
        if args.verbose:
            for ev in r.flows:
                out.write(format_event(ev) + "\n")
        if args.once or r.removed:
            out.write(f"scanned {plural(r.scanned, 'entry', 'entries')} in {r.duration_s * 1000:.1f} ms: removed "
                      f"{r.removed} expired ({r.ended} ended by timeout, {r.removed - r.ended} "
                      f"closed before), {r.live} live\n")
    out.flush()


def run(args):
    from ctrack.live.collector import Collector
    from ctrack.live.maps import Shared
    meta = pins.find(args.name)
    out = sys.stdout
    with Shared(meta) as sh:
        gc = Collector(sh, args.interval)
        gc.load()   # a refusal is one line, before anything else is said
        if args.verbose and not args.json:
            print(f"collector: {gc.describe()}", file=sys.stderr, flush=True)
        if args.once:
            _report(gc.scan(collect=args.verbose), args, out)
            return 0
        stop = threading.Event()
        pid = int(meta["pid"])

        def on_scan(r):
            _report(r, args, out)
            # stop with the tracker: its maps are gone, and a new one may take the name
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                print(f"ctrack: tracker {meta['name']!r} stopped", file=sys.stderr)
                stop.set()

        gc.acquire()   # before saying anything: a refusal is the only line printed
        print(f"Collecting for tracker {meta['name']!r} every {args.interval:g} s at most. "
              f"Hit Ctrl-C to end.", file=sys.stderr, flush=True)
        try:
            gc.run(stop, on_scan=on_scan, owner="ctrack gc", collect=args.verbose)
        except KeyboardInterrupt:
            pass
    return 0

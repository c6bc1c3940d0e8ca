"""ctrack-top: a live, full-screen view of a running tracker (`ctrack run`), refreshing in place.

Header (tracker, interfaces, mode and policy, uptime, flows by state, packets/s by class,
INVALID packets by reason, table fill, the collector), the flow table (sortable, filterable,
scrollable, coloured by state), and a pane of recent events. Keys while it runs are listed at
the bottom of the screen; --once prints one frame and exits; without a terminal it prints plain
frames periodically. Data: ctrack/top/data.py; drawing: ctrack/top/view.py; keys: ctrack/top/keys.py.
"""
import argparse
import collections
import gc
import os
import sys
import time

from ctrack.live import pins
from ctrack.errors import ArgumentParser, CtrackError, cli_main
from ctrack.engine.flowfilter import FlowFilter, positive_float
from ctrack.engine.flowview import Names
from .data import SORTS, Sampler, View, state_names_present
from . import view as topview

EXAMPLES = """examples:
  ctrack-top                          # the only running tracker, refreshed every second
  ctrack-top --name edge -i 0.5       # tracker `edge`, twice a second
  ctrack-top --sort bytes -p tcp      # biggest TCP flows first
  ctrack-top --state est --dport 443  # established HTTPS flows (filters as in `ctrack list`)
  ctrack-top --once                   # print one frame and exit (scripts, tests)
  ctrack-top --once -n 0 | less -S    # ... with every flow, not just the first 50
  ctrack-top | tee top.log            # no terminal: plain frames every interval

keys:
  q quit        space pause/resume    s next sort (rate, bytes, packets, age, idle, state)
  r reverse     / filter prompt: words like `tcp state=est dport=80 10.0.0.0/24`
  p protocol (all, tcp, udp)          t state (cycles through the states present)
  c clear filters   e events pane on/off   arrows, PgUp/PgDn, Home/End scroll

columns: ORIG/REPLY are each endpoint's TCP state as the tracker infers it from the wire; AGE
since the first packet, IDLE since the last, TTL until the entry expires; PKTS and BYTES per
direction (original -> / <- reply); RATE over the last refresh.
"""

ONCE_ROWS = 50
COLLECT_EVERY = 30   # refreshes between Python's cyclic collections (see main)


def build_parser():
    p = ArgumentParser(prog="ctrack-top", description="Live view of a running ctrack tracker.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", help="tracker name (default: the only running tracker)")
    p.add_argument("-i", "--interval", type=positive_float, default=1.0, metavar="SECONDS",
                   help="refresh period (default 1)")
    p.add_argument("--once", action="store_true", help="print one frame and exit")
    p.add_argument("--sort", choices=SORTS, default="rate", help="initial order (default rate)")
    p.add_argument("--reverse", action="store_true", help="reverse the order")
    p.add_argument("-n", "--rows", type=int, metavar="N",
                   help=f"flows per frame with --once or without a terminal (default {ONCE_ROWS}; 0: all)")
    p.add_argument("-c", "--count", type=int, metavar="N", help="exit after N refreshes")
    p.add_argument("--no-events", action="store_true", help="no recent-events pane")
    p.add_argument("--plain", action="store_true", help="plain periodic output even on a terminal")
    p.add_argument("--width", type=int, default=0, metavar="COLUMNS",
                   help="line width of plain output (default: the terminal's, else 200)")
    FlowFilter.add_arguments(p)
    return p


class Top:
    """The model the view draws (see ctrack/top/view.py), and the key handling."""

    def __init__(self, args, meta, sh):
        self.meta, self.sh = meta, sh
        self.layout = sh.layout
        self.table_size = sh.table_size
        self.names = Names()
        self.interval = args.interval
        self.sampler = Sampler(sh)
        self.view = View(self.layout, FlowFilter.from_args(args), args.sort, args.reverse)
        self.events = collections.deque(maxlen=200)
        self.events_on = not args.no_events
        self.events_note = ""
        self.sub = None
        self.paused = False
        self.stopped = False
        self.prompt = None
        self.message = ""
        self.sample = None
        self.matching = self.shown = 0
        self._pid = int(meta.get("pid", 0))
        self._refreshes = 0

    # ---- data ----

    def subscribe(self, history=50):
        from ctrack.live.eventbus import Subscription
        try:
            self.sub = Subscription(self.meta["name"], history=history)
        except CtrackError:
            self.events_note = "unavailable: no event bus"

    def poll_events(self, timeout=0.0):
        if self.sub is None or self.sub.closed:
            return False
        evs = self.sub.read(timeout)
        self.events.extend(evs)
        if self.sub.lost:
            self.events_note = f"{self.sub.lost} lost"
        return bool(evs)

    def refresh(self):
        self.sample = self.sampler.sample()
        self._refreshes += 1
        if self._refreshes % COLLECT_EVERY == 0 and not gc.isenabled():
            gc.collect()
        try:
            os.kill(self._pid, 0)
        except ProcessLookupError:
            self.stopped = True
        except PermissionError:
            pass

    def render(self, height, rows=None):
        """(renderable, table rows): a screen of `height` lines, or (rows given) a fitted
        frame with that many flows."""
        table_h, _ = topview.layout_heights(height, self.events_on)
        if rows is not None:
            table_h = rows
        n, window = self.view.rows(self.sample, table_h)
        self.matching, self.shown = n, len(window)
        return topview.frame(self, height, window, fit=rows is not None), table_h

    # ---- keys ----

    def _set_filter(self, **changes):
        spec = dict(self.view.flt.spec)
        for k, v in changes.items():
            if v is None:
                spec.pop(k, None)
            else:
                spec[k] = v
        self.view.set_filter(FlowFilter(**spec))

    def key(self, k, table_h):
        """Handle one key. Returns False to quit."""
        self.message = ""
        if self.prompt is not None:
            if k == "enter":
                try:
                    self.view.set_filter(FlowFilter.parse(self.prompt))
                except CtrackError as exc:
                    self.message = str(exc)
                self.prompt = None
            elif k == "esc":
                self.prompt = None
            elif k == "backspace":
                self.prompt = self.prompt[:-1]
            elif k and len(k) == 1 and k.isprintable():
                self.prompt += k
            return True
        if k in ("q", "Q"):
            return False
        if k == " ":
            self.paused = not self.paused
        elif k == "s":
            self.view.cycle_sort()
        elif k == "r":
            self.view.reverse = not self.view.reverse
        elif k == "/":
            self.prompt = self.view.flt.describe()
            if self.prompt:
                self.prompt += " "
        elif k == "p":
            cur = self.view.flt.spec.get("proto")
            nxt = {None: "tcp", "tcp": "udp", "udp": None}[cur]
            self._set_filter(proto=nxt)
        elif k == "t":
            present = state_names_present(self.sample)
            cur = self.view.flt.spec.get("state")
            cur = next(iter(cur)) if cur and len(cur) == 1 else None
            order = [None] + present
            i = order.index(cur) if cur in order else 0
            nxt = order[(i + 1) % len(order)]
            self._set_filter(state={nxt} if nxt else None)
        elif k == "c":
            self.view.set_filter(FlowFilter())
        elif k == "e":
            self.events_on = not self.events_on
        elif k == "up":
            self.view.scroll(-1, table_h, self.matching)
        elif k == "down":
            self.view.scroll(1, table_h, self.matching)
        elif k == "pgup":
            self.view.scroll(-table_h, table_h, self.matching)
        elif k == "pgdn":
            self.view.scroll(table_h, table_h, self.matching)
        elif k == "home":
            self.view.offset = 0
        elif k == "end":
            self.view.scroll(self.matching, table_h, self.matching)
        return True


def _plain_console(args):
    from rich.console import Console
    width = args.width or (os.get_terminal_size().columns if sys.stdout.isatty() else 200)
    return Console(file=sys.stdout, force_terminal=False, no_color=True, color_system=None,
                   width=width, highlight=False, soft_wrap=False)


def run_once(top, args):
    from rich.console import Console
    top.refresh()
    if top.events_on:
        top.subscribe(history=10)
    # rates need two readings
    time.sleep(min(args.interval, 0.5))
    top.refresh()
    if top.events_on:
        top.poll_events(0.2)
    n = ONCE_ROWS if args.rows is None else (args.rows or len(top.sample.live) or 1)
    con = Console(highlight=False) if sys.stdout.isatty() and not args.plain else _plain_console(args)
    frame, _ = top.render(n + 40, rows=n)
    con.print(frame)
    return 0


def run_plain(top, args):
    con = _plain_console(args)
    n = ONCE_ROWS if args.rows is None else (args.rows or 10 ** 9)
    if top.events_on:
        top.subscribe(history=0)
    done = 0
    while True:
        t0 = time.monotonic()
        top.refresh()
        top.poll_events(0)
        frame, _ = top.render(n + 40, rows=n)
        con.print(frame)
        con.print("")
        sys.stdout.flush()
        done += 1
        if args.count and done >= args.count:
            return 0
        if top.stopped:
            return 0
        time.sleep(max(0.0, args.interval - (time.monotonic() - t0)))


def run_screen(top, args):
    from rich.console import Console
    from rich.live import Live
    from .keys import KeyReader
    console = Console(highlight=False)
    if top.events_on:
        top.subscribe(history=50)
    keys = KeyReader(sys.stdin.fileno())
    try:
        with Live(console=console, screen=True, auto_refresh=False, redirect_stdout=False,
                  redirect_stderr=False) as live:
            next_at = 0.0
            table_h = 1
            done = 0
            dirty = False
            while True:
                now = time.monotonic()
                if now >= next_at:
                    if not top.paused or top.sample is None:
                        top.refresh()
                        done += 1
                    next_at = now + top.interval
                    dirty = True
                if top.events_on and top.poll_events(0):
                    dirty = True
                if dirty:
                    # the terminal's own size, each frame: follows resizes, and never trusts
                    # COLUMNS/LINES left in the environment by whoever started us
                    try:
                        console.size = os.get_terminal_size(sys.stdout.fileno())
                    except OSError:
                        pass
                    frame, table_h = top.render(console.size.height)
                    live.update(frame, refresh=True)
                    dirty = False
                    if args.count and done >= args.count:
                        return 0
                k = keys.read(max(0.0, min(next_at - time.monotonic(), 0.2)))
                if k is not None:
                    if not top.key(k, table_h):
                        return 0
                    dirty = True
    finally:
        keys.close()


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    # Each refresh makes ~100,000 short-lived tuples per 100,000 flows, which would set off
    # Python's full cyclic collections (a fifth of a refresh's time) to find no cycles: the
    # collector runs only between refreshes (Top.refresh), every COLLECT_EVERY of them.
    gc.disable()
    from ctrack.live.maps import Shared
    flt = FlowFilter.from_args(args)   # bad filters fail before anything opens
    del flt
    meta = pins.find(args.name)
    with Shared(meta) as sh:
        top = Top(args, meta, sh)
        try:
            if args.once:
                return run_once(top, args)
            if args.plain or not (sys.stdout.isatty() and sys.stdin.isatty()):
                return run_plain(top, args)
            return run_screen(top, args)
        except KeyboardInterrupt:
            return 0
        finally:
            if top.sub is not None:
                top.sub.close()


if __name__ == "__main__":
    sys.exit(main())

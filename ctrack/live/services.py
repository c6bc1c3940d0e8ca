"""What `ctrack run` starts beside the tracker once its maps are pinned: the collector (unless
--no-gc), the event bus that re-publishes the ring buffer's events to other readers, and the
Prometheus endpoint (--metrics). Kept here so that ctrack/cli/run.py only wires it in.

The collector and the metrics open the pinned maps through ctrack.live.maps like every other tool
(one way to read); the collector runs in a thread of its own, sleeping between passes.
"""
import sys
import threading

from ctrack.errors import CtrackError
from .eventbus import EventBus
from ctrack.engine.flowfilter import positive_float

DEFAULT_GC_INTERVAL = 1.0


def add_arguments(p):
    g = p.add_argument_group("collector, events and metrics")
    g.add_argument("--gc-interval", type=positive_float, default=DEFAULT_GC_INTERVAL,
                   metavar="SECONDS",
                   help="the collector removes idle expired flows at least this often "
                        f"(default {DEFAULT_GC_INTERVAL:g}; adaptive, see `ctrack gc -h`)")
    g.add_argument("--no-gc", action="store_true",
                   help="no collector: expired flows leave only when a packet finds them "
                        "(or run `ctrack gc` separately)")
    g.add_argument("--metrics", metavar="[ADDR:]PORT", type=_listen,
                   help="serve Prometheus metrics (127.0.0.1 unless ADDR is given)")


def _listen(text):
    """argparse type of --metrics: checked before anything is loaded or attached."""
    import argparse
    from .metrics import parse_listen
    try:
        parse_listen(text)
    except CtrackError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


class RunExtras:
    def __init__(self, args, meta):
        self.bus = None
        self.shared = None
        self.collector = None
        self._failed = None   # a collector that could not run: its status file says why
        self.metrics = None
        self._stop = threading.Event()
        self._thread = None
        # for the "Tracking" banner: whether a collector runs, how, or why not
        self.collector_note = "no collector (--no-gc)"
        try:
            self.bus = EventBus(meta["name"])
            if not args.no_gc or args.metrics:
                from .maps import Shared
                self.shared = Shared(meta)
            if not args.no_gc:
                self._start_collector(args)
            if args.metrics:
                from .metrics import MetricsServer
                self.metrics = MetricsServer(args.metrics, self.shared, self.bus)
                print(f"Metrics on http://{self.metrics.address}/metrics", file=sys.stderr, flush=True)
        except BaseException:
            self.close()
            raise

    def _start_collector(self, args):
        from .collector import Collector
        c = Collector(self.shared, args.gc_interval)
        try:
            c.acquire()
        except CtrackError:   # a `ctrack gc` already collects for this name
            from .collector import read_status
            st = read_status(self.shared.name) or {}
            self.collector_note = (f"no collector of its own (`{st.get('owner', 'ctrack gc')}`"
                                   f"{' pid ' + str(st['pid']) if st.get('pid') else ''} collects)")
            return
        try:
            c.load()   # now: a refusal is said in the banner, not later in a thread
        except CtrackError as exc:
            # say it where ctrack-top and `ctrack gc` look: they then agree with this banner
            c.write_status("ctrack run", error=str(exc))
            c.release(keep_status=True)
            self._failed = c
            self.collector_note = f"NO COLLECTOR: {exc}"
            return
        self.collector = c
        self.collector_note = f"collector every {args.gc_interval:g} s at most ({c.describe()})"
        self._thread = threading.Thread(target=self._collect, name="ctrack-gc", daemon=True)
        self._thread.start()

    def _collect(self):
        c = self.collector
        try:
            while not self._stop.is_set():
                r = c.scan(collect=False)
                c.next_delay(r)
                c.write_status("ctrack run")
                self._stop.wait(c.delay)
        except (CtrackError, OSError) as exc:
            if not self._stop.is_set():
                print(f"ctrack: collector stopped: {exc}", file=sys.stderr)
                c.write_status("ctrack run", error=f"stopped: {exc}")
                c.release(keep_status=True)
                self._failed, self.collector = c, None

    def publish(self, ev):
        if self.bus is not None:
            self.bus.publish(ev)

    def close(self):
        """Stop everything; harmless to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        for c in (self.collector, self._failed):
            if c is not None:
                c.release()   # and its status file
        self.collector = self._failed = None
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if self.bus is not None:
            self.bus.close()
            self.bus = None
        if self.shared is not None:
            self.shared.close()
            self.shared = None

"""ctrack-tcprtt: histograms (or per-connection statistics) of the kernel's smoothed TCP RTT
(the tool's whole CLI; the tools/ script only calls main())."""
import argparse
import json
import sys
import time

from ..errors import ArgumentParser, CtrackError, cli_main
from ctrack.live.stopsignal import StopOnSignal
from .program import Filters
from .tcprtt import RttObserver
from ..text import plural

EXAMPLES = """\
examples:
    ctrack-tcprtt                     # one histogram of all connections, at Ctrl-C
    ctrack-tcprtt -i 1 -d 10          # print (and reset) every second, for 10 seconds
    ctrack-tcprtt -m -T -i 5          # milliseconds, with a time line, every 5 seconds
    ctrack-tcprtt -p 22               # local port 22 (an ssh server's connections)
    ctrack-tcprtt -P 5201 -e          # remote port 5201, with average and count
    ctrack-tcprtt -A 10.77.0.2        # remote address 10.77.0.2 (prefixes work too)
    ctrack-tcprtt -B                  # one histogram per remote address
    ctrack-tcprtt -N ctobs-a          # only sockets in network namespace ctobs-a
    ctrack-tcprtt --flows -d 5        # per connection: samples, min/avg/max/last srtt
    ctrack-tcprtt --flows --json      # the same as JSON lines

what is measured:
    tcp:tcp_probe fires for every segment a socket receives in ESTABLISHED (the kernel's fast
    and slow receive path); its srtt is the socket's smoothed RTT, tp->srtt_us >> 3, in
    microseconds. A sample is taken per received segment, so busy connections weigh more.
    Loopback RTTs are a few microseconds. The RTT includes the peer's delayed ACK: a server
    answering a client that acks only with its next request sees that gap as RTT.
    Filters combine (all must pass) and are compiled into the BPF program.

network namespaces (-N):
    No BPF helper can name a socket's namespace from a tracepoint program, but tcp_probe
    carries the socket's cookie. The first time a socket is seen, user space looks for its
    cookie in a sock_diag dump taken inside /run/netns/NAME and tells the program; that
    socket's samples before the answer (usually one or two segments) are not counted.
"""


def build_parser():
    p = ArgumentParser(
        prog="ctrack-tcprtt",
        description="Summarize the kernel's smoothed TCP RTT as histograms (tcp:tcp_probe).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    p.add_argument("-i", "--interval", type=float, metavar="SECONDS",
                   help="print a summary every SECONDS (and start afresh)")
    p.add_argument("-d", "--duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    p.add_argument("-T", "--timestamp", action="store_true", help="print the time before each summary")
    p.add_argument("-m", "--milliseconds", action="store_true", help="histogram in milliseconds")
    p.add_argument("-p", "--lport", action="append", metavar="PORTS",
                   help="only these local ports (comma-separated; repeatable)")
    p.add_argument("-P", "--rport", action="append", metavar="PORTS",
                   help="only these remote ports (comma-separated; repeatable)")
    p.add_argument("-a", "--laddr", action="append", metavar="ADDR",
                   help="only this local address or prefix (repeatable)")
    p.add_argument("-A", "--raddr", action="append", metavar="ADDR",
                   help="only this remote address or prefix (repeatable)")
    per = p.add_mutually_exclusive_group()
    per.add_argument("-b", "--byladdr", action="store_const", dest="per", const="laddr",
                     help="one histogram per local address")
    per.add_argument("-B", "--byraddr", action="store_const", dest="per", const="raddr",
                     help="one histogram per remote address")
    p.add_argument("-e", "--extension", action="store_true", help="also print average and count")
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", "--ipv4", action="store_const", dest="family", const=4, help="IPv4 only")
    fam.add_argument("-6", "--ipv6", action="store_const", dest="family", const=6, help="IPv6 only")
    p.add_argument("-N", "--netns", metavar="NAME", help="only sockets in network namespace NAME (/run/netns)")
    p.add_argument("--flows", action="store_true",
                   help="per-connection statistics (4-tuple: count, min/avg/max/last srtt) instead of histograms")
    p.add_argument("--json", action="store_true", help="JSON lines instead of text")
    p.add_argument("--ebpf", action="store_true",
                   help="print the BPF C program as compiled for these options, and exit")
    return p


def print_flows(flows, unit_ms):
    div, unit, prec = (1000.0, "ms", 3) if unit_ms else (1.0, "us", 0)
    aw = max([15] + [len(f.laddr) for f in flows] + [len(f.raddr) for f in flows])
    print(f"{'LADDR':>{aw}} {'LPORT':>5}   {'RADDR':<{aw}} {'RPORT':<5} {'SAMPLES':>8} "
          f"{'MIN':>9} {'AVG':>9} {'MAX':>9} {'LAST':>9} ({unit})")
    for f in flows:
        print(f"{f.laddr:>{aw}} {f.lport:>5} > {f.raddr:<{aw}} {f.rport:<5} {f.count:>8} "
              + " ".join(f"{v / div:>9.{prec}f}" for v in (f.min_us, f.avg_us, f.max_us, f.last_us)))


def report(obs, args):
    """One summary: print what was recorded since the last one, then start afresh."""
    now = time.time()
    if args.json:
        if args.flows:
            for f in obs.flows():
                print(json.dumps({"type": "flow", "ts": now, **f.as_dict()}))
        else:
            for h in obs.histograms():
                print(json.dumps({"type": "hist", "ts": now, **h.as_dict()}))
    else:
        if args.timestamp:
            print(time.strftime("%H:%M:%S"))
        if args.flows:
            print_flows(obs.flows(), args.milliseconds)
        else:
            obs.print_histograms()
            if args.extension:
                for h in obs.histograms():
                    where = f"{h.section}: " if h.section else ""
                    avg = f"{h.average:.3f}" if h.average is not None else "-"
                    print(f"{where}avg = {avg} {h.unit}, total: {h.sum:g} {h.unit}, count: {h.samples}")
        print()
    sys.stdout.flush()
    if args.flows:
        obs.clear_flows()
    else:
        obs.clear()


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    for name in ("interval", "duration"):
        v = getattr(args, name)
        if v is not None and v <= 0:
            raise CtrackError(f"--{name} wants a positive number of seconds")
    if args.flows and (args.per or args.extension):
        raise CtrackError("--flows has its own per-connection columns: drop -b/-B/-e")
    filters = Filters(family=args.family, lports=args.lport, rports=args.rport,
                      laddrs=args.laddr, raddrs=args.raddr)
    obs = RttObserver(filters, milliseconds=args.milliseconds, per=args.per, extended=args.extension,
                      hist=not args.flows, flows=args.flows, netns=args.netns)
    if args.ebpf:
        print(obs.text)
        return 0

    with obs, StopOnSignal() as stop:
        what = "per-connection TCP RTT" if args.flows else "TCP RTT"
        where = f" in network namespace {args.netns}" if args.netns else ""
        print(f"Tracing {what}{where}... Hit Ctrl-C to end.", file=sys.stderr, flush=True)
        end = None if args.duration is None else time.monotonic() + args.duration
        reports = 0
        while not stop():
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                break
            step = args.interval if args.interval else (left if left is not None else 3600)
            if left is not None:
                step = min(step, left)
            obs.wait(step, stop=stop)
            if args.interval and not stop() and (end is None or time.monotonic() < end - 1e-3):
                report(obs, args)
                reports += 1
        # The final summary (Ctrl-C, or -d ran out): what was recorded since the last one.
        report(obs, args)
        lost = obs.lost()
        judged = obs.netns_answered
    tail = f", {plural(judged, 'socket')} judged for the namespace" if args.netns else ""
    done = plural(reports + 1, "summary", "summaries")
    print(f"{done}{tail}, {plural(lost, 'lost namespace query', 'lost namespace queries')}"
          if args.netns else done, file=sys.stderr)
    return 0

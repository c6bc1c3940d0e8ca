"""ctrack-tcpstates: print every TCP state change, one line each (the tool's whole CLI; the
tools/ script only calls main())."""
import argparse
import json
import sys
import time

from ..errors import ArgumentParser, CtrackError, cli_main
from ctrack.live.stopsignal import StopOnSignal
from .program import Filters
from .tcpstates import StateObserver
from ..text import plural

EXAMPLES = """\
examples:
    ctrack-tcpstates                  # every TCP state change, until Ctrl-C
    ctrack-tcpstates -T -d 10         # with a clock column, for 10 seconds
    ctrack-tcpstates -L 80,443        # local port 80 or 443 (servers)
    ctrack-tcpstates -D 5201          # remote port 5201 (clients of iperf3)
    ctrack-tcpstates -A 10.77.0.0/24  # remote address in 10.77.0.0/24
    ctrack-tcpstates -6 -w            # IPv6 sockets only, wide address columns
    ctrack-tcpstates --json | jq .    # one JSON object a line

columns:
    SKADDR    the kernel socket's address (identifies one socket while it lives)
    PID COMM  the socket's owner: the process seen making a connect/listen/close on it (a
              server's accepted socket inherits its listener's). Transitions in softirq or
              timers (handshake completion, FIN received, TIME_WAIT) show that owner too,
              not whatever ran on the CPU; "-" when the socket was never seen in a process.
    MS        milliseconds spent in OLDSTATE; "-" for a socket's first transition seen.

notes:
    Filters combine: a socket must pass every one given (-L 80 -D 5000 means both).
    They are compiled into the BPF program (see --ebpf), so an unused filter costs nothing.
    Linux 6.x reports no NEW_SYN_RECV or TIME_WAIT transitions here: request socks and
    time-wait socks are not full sockets. A server socket appears as LISTEN -> SYN_RECV when
    the handshake completes; a client's socket goes FIN_WAIT2 -> CLOSE when its time-wait
    twin takes over. A connecting socket's first line (CLOSE -> SYN_SENT) has local port 0
    (not yet chosen), so -L does not show it.

network namespaces:
    Not filterable here. The tracepoint gives no namespace, and no BPF helper that could name
    a socket's namespace (bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_sk_cgroup_id,
    bpf_skc_to_*) may be called from a tracepoint program (Linux 6.18 refuses them); finding
    it would mean reading struct sock, which ctrack's programs never do. Events from all
    namespaces are shown; -a/-A with the namespace's addresses narrow them down.
    (ctrack-tcprtt can filter by namespace: tcp_probe carries a socket cookie.)
"""


def build_parser():
    p = ArgumentParser(
        prog="ctrack-tcpstates",
        description="Trace TCP state changes of every socket (sock:inet_sock_set_state).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    p.add_argument("-T", "--time", action="store_true", help="include a wall-clock (HH:MM:SS) column")
    p.add_argument("-t", "--timestamp", action="store_true",
                   help="include a column of seconds since tracing started")
    p.add_argument("-w", "--wide", action="store_true", help="wide columns (fit IPv6 addresses)")
    p.add_argument("-L", "--localport", action="append", metavar="PORTS",
                   help="only these local ports (comma-separated list; repeatable)")
    p.add_argument("-D", "--remoteport", action="append", metavar="PORTS",
                   help="only these remote ports (comma-separated list; repeatable)")
    p.add_argument("-a", "--laddr", action="append", metavar="ADDR",
                   help="only this local address or prefix (e.g. 10.77.0.1, fd00::/8; repeatable)")
    p.add_argument("-A", "--raddr", action="append", metavar="ADDR",
                   help="only this remote address or prefix (repeatable)")
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", "--ipv4", action="store_const", dest="family", const=4, help="IPv4 sockets only")
    fam.add_argument("-6", "--ipv6", action="store_const", dest="family", const=6, help="IPv6 sockets only")
    p.add_argument("-d", "--duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    p.add_argument("--json", action="store_true", help="one JSON object a line instead of columns")
    p.add_argument("--ebpf", action="store_true",
                   help="print the BPF C program as compiled for these options, and exit")
    return p


class Printer:
    """Columns in BCC's tcpstates habit."""

    def __init__(self, args, start_mono):
        self.args = args
        self.start_mono = start_mono
        self.aw = 39 if args.wide or args.family == 6 else 15

    def header(self):
        a, aw = self.args, self.aw
        cols = []
        if a.time:
            cols.append(f"{'TIME':8}")
        if a.timestamp:
            cols.append(f"{'TIME(s)':9}")
        cols.append(f"{'SKADDR':18} {'PID':7} {'COMM':15} {'LADDR':{aw}} {'LPORT':5} "
                    f"{'RADDR':{aw}} {'RPORT':5} {'OLDSTATE':11} -> {'NEWSTATE':11} {'MS':>9}")
        return " ".join(cols)

    def line(self, ev):
        a, aw = self.args, self.aw
        cols = []
        if a.time:
            cols.append(time.strftime("%H:%M:%S", time.localtime(ev.ts)))
        if a.timestamp:
            cols.append(f"{(ev.mono_ns / 1e9) - self.start_mono:<9.3f}")
        ms = f"{ev.ms:9.3f}" if ev.ms is not None else f"{'-':>9}"
        cols.append(f"{ev.skaddr:<18x} {ev.pid or '-':<7} {(ev.comm or '-')[:15]:15} {ev.laddr:{aw}} "
                    f"{ev.lport:<5} {ev.raddr:{aw}} {ev.rport:<5} {ev.oldstate:11} -> {ev.newstate:11} {ms}")
        return " ".join(cols)


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.duration is not None and args.duration <= 0:
        raise CtrackError("-d/--duration wants a positive number of seconds")
    filters = Filters(family=args.family, lports=args.localport, rports=args.remoteport,
                      laddrs=args.laddr, raddrs=args.raddr)
    obs = StateObserver(filters)
    if args.ebpf:
        print(obs.text)
        return 0

    count = 0
    with obs, StopOnSignal() as stop:
        start_mono = time.clock_gettime(time.CLOCK_MONOTONIC)
        printer = Printer(args, start_mono)
        print("Tracing TCP state changes... Hit Ctrl-C to end.", file=sys.stderr, flush=True)
        if not args.json:
            print(printer.header(), flush=True)
        # Ctrl-C/SIGTERM end tracing normally: what was recorded is still handed over.
        for ev in obs.events(duration=args.duration, stop=stop):
            count += 1
            print(json.dumps(ev.as_dict()) if args.json else printer.line(ev), flush=True)
        lost = obs.lost()
    print(f"{plural(count, 'state change')}, {lost} lost", file=sys.stderr)
    if lost:
        print(f"WARNING: {plural(lost, 'event')} {'was' if lost == 1 else 'were'} lost (ring buffer full): the output above is incomplete",
              file=sys.stderr)
    return 0

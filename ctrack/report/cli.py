"""ctrack-report: what the middlebox (ctrack's tracker, and netfilter's conntrack beside it)
believed about each connection, against what the two endpoints' kernels did. Runs lab
scenarios with the tracker, tcpstates/tcprtt, netfilter and a capture all at once, then writes
a terminal summary, report.json and a self-contained report.html into --out."""
import argparse
import datetime
import os
import shlex
import sys
import time

from ..errors import ArgumentParser, CtrackError, cli_main
from . import align, collect, render

EXAMPLES = """examples:
  ctrack-report --list                         # the scenarios and what each drives
  sudo ctrack-report basic simclose            # two scenarios, summary in the terminal, files in ./ctrack-report
  sudo ctrack-report --all --out /tmp/rep      # everything (3-3.5 minutes here), report.html in /tmp/rep
  sudo ctrack-report lab:hping3-rst            # a `ctrack-lab run` scenario, watched by the kernels too
  sudo ctrack-report --all --check             # exit 1 when any connection disagrees
  sudo ctrack-report basic --json | jq .overall   # the figures for machines
  sudo ctrack-report --host -i eth0 -d 30      # this machine: the tracker on eth0, the host's own sockets
                                               # as the one kernel view (the remote ends have none)

What is compared, per connection and endpoint: the states the endpoint's kernel went through
(tcpstates, sock:inet_sock_set_state) against the states the tracker inferred for it (its
events), after mapping Linux's documented differences from the textbook (each rule named in
the report); the time the views stayed apart; netfilter's one state in the routed topology;
the tracker's passive RTT (when the tracker reports one) against the kernels' srtt and ping."""


def build_parser():
    p = ArgumentParser(prog="ctrack-report", description="Compare what the tracker believed about each "
                       "connection with what both endpoints' kernels did, netfilter's conntrack beside it.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="scenarios to run (--list shows them)")
    p.add_argument("--all", action="store_true", help="every scenario")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("-o", "--out", default="ctrack-report", metavar="DIR",
                   help="where report.json, report.html and the capture go (default ./ctrack-report)")
    p.add_argument("--check", action="store_true", help="exit 1 when any connection disagrees")
    p.add_argument("--host", action="store_true", help="report on this machine instead of a lab (with -i, -d)")
    p.add_argument("-i", "--interface", metavar="IF", help="--host: the interface the tracker observes")
    p.add_argument("-d", "--duration", type=float, default=30.0, metavar="SECONDS",
                   help="--host: how long to record (default 30)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--json", action="store_true", help="print report.json on stdout instead of the summary table")
    p.add_argument("--no-html", action="store_true", help="skip report.html (no matplotlib needed)")
    # test-only: a deliberately broken tracker build must be caught (see kernel/lib/tcp.h)
    p.add_argument("--tracker-define", action="append", default=[], help=argparse.SUPPRESS)
    p.add_argument("--from-records", metavar="FILE", help=argparse.SUPPRESS)
    return p


def build_report(records, command):
    per = {}
    clocks = set()
    for name, rec in records.items():
        a = align.analyse(rec)
        a.update(about=rec["about"], topology=rec["topology"], delay_ms=rec["delay_ms"],
                 lab_scenario=rec.get("lab_scenario"),
                 loss_pct=rec["loss_pct"], ping_ms=rec.get("ping_ms"),
                 tcpstates_lost=rec.get("tcpstates_lost"), tracker_defines=rec.get("tracker_defines"),
                 workload_failures=[w for w in rec.get("workload", []) if not w.get("ok")])
        per[name] = a
        clocks.add(rec.get("tracker_clock", "?"))
    dated = sum(s.get("tracker_events_dated_by_capture", 0) for s in per.values())
    clock = ", ".join(sorted(clocks))
    if dated and "precise" not in clock:
        clock = (f"the capture's time of the packet that caused each transition ({dated} events); "
                 f"the events' own {clock} where no packet matched")
    report = {"generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
              "command": command, "tracker_clock": clock,
              "overall": align.combine(per), "scenarios": per, "notes": []}
    notes = report["notes"]
    conns = [c for s in per.values() for c in s["connections_detail"]]
    if conns and not any(c.get("rtt") for c in conns):
        notes.append("the tracker's flow records carry no passive RTT in this build: tracker RTT "
                     "columns are n/a (null in report.json); the kernels' srtt is compared with ping")
    if conns and not any(c.get("conn_state") for c in conns):
        notes.append("the tracker's flow records carry no Zeek conn_state/history in this build: n/a")
    if any(r.get("kernel_view") == "local" for r in records.values()):
        notes.append("--host: only this host's sockets have a kernel view; the end of a connection "
                     "on another machine has none and is not compared (netfilter is not compared)")
    elif "routed" not in per and per:
        notes.append("netfilter is compared only in the routed topology (scenario routed)")
    lost = sum(s.get("tcpstates_lost") or 0 for s in per.values())
    if lost:
        notes.append(f"tcpstates lost {lost} state changes (ring buffer full): some kernel sequences are incomplete")
    bad = [(n, w) for n, s in per.items() for w in s["workload_failures"]]
    if bad:
        notes.append(f"{len(bad)} client connection(s) failed (e.g. {bad[0][0]}: {bad[0][1].get('error')}): "
                     "they are still compared")
    if any(rec.get("tracker_defines") for rec in records.values()):
        notes.append("TEST BUILD of the tracker: " + " ".join(next(r["tracker_defines"] for r in records.values()
                                                                  if r.get("tracker_defines"))))
    return report


def log_to_stderr(quiet):
    start = time.monotonic()
    if quiet:
        return lambda msg: None
    return lambda msg: print(f"[{time.monotonic() - start:6.1f}s] {msg}", file=sys.stderr, flush=True)


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.list:
        names = collect.scenario_names()
        width = max(len(n) for n in names)
        for name in names:
            print(f"{name:<{width}}  {collect.describe(name)}")
        return 0
    if args.host and (args.scenarios or args.all):
        raise CtrackError("--host reports on this machine: name no scenario and no --all with it")
    if args.host and not args.interface:
        raise CtrackError("--host needs the interface to observe: -i IF")
    if not args.host and not args.from_records:
        known = collect.scenario_names()
        names = known if args.all else args.scenarios
        if not names:
            raise CtrackError("name a scenario, or --all, or --host -i IF (--list shows the scenarios)")
        for n in names:
            if n not in known:
                raise CtrackError(f"no scenario {n!r} (have: {', '.join(known)})")
    if args.duration <= 0:
        raise CtrackError(f"bad -d {args.duration:g}: seconds must be positive")
    if not args.from_records and os.geteuid() != 0:
        raise CtrackError("must run as root (labs, BPF programs): try sudo")
    if args.host and not os.path.exists(f"/sys/class/net/{args.interface}"):
        raise CtrackError(f"no interface {args.interface!r} here (ip link shows the interfaces)")
    os.makedirs(args.out, exist_ok=True)
    log = log_to_stderr(args.quiet)
    command = "ctrack-report " + shlex.join(sys.argv[1:] if argv is None else argv)
    start = time.monotonic()
    if args.from_records:
        import json
        with open(args.from_records) as f:
            records = json.load(f)
        first = next(iter(records.values()), {})
        if first.get("command"):
            command = f"{first['command']} (analysed again from {args.from_records})"
    else:
        print("Tracing connections through the tracker, both kernels and netfilter... Hit Ctrl-C to end.",
              file=sys.stderr)
        # the captures taken on the way stay beside the report (the disagreements cite them)
        work = os.path.join(args.out, "captures")
        os.makedirs(work, exist_ok=True)
        try:
            if args.host:
                records = collect.run_host(args.interface, args.duration, work, log)
            else:
                records = collect.Run(names, work, log, tracker_defines=args.tracker_define).execute()
        except KeyboardInterrupt:
            # everything started was stopped and removed on the way out (Run.close)
            print("ctrack-report: interrupted: labs removed, tracker and observers stopped, nothing reported",
                  file=sys.stderr)
            return 130
        # the raw records, for a later --from-records and for whoever wants to dig
        import json
        for rec in records.values():
            rec["command"] = command
        with open(os.path.join(args.out, "records.json"), "w") as f:
            json.dump(records, f, default=str)
    report = build_report(records, command)
    report["seconds"] = round(time.monotonic() - start, 1)
    render.write_json(report, os.path.join(args.out, "report.json"))
    if not args.no_html:
        render.write_html(report, os.path.join(args.out, "report.html"))
    if args.json:
        import json
        print(json.dumps(report, default=str))
    else:
        render.terminal(report)
    print(f"wrote {os.path.join(args.out, 'report.json')}"
          + ("" if args.no_html else f" and {os.path.join(args.out, 'report.html')}")
          + f" in {report['seconds']:.0f} s", file=sys.stderr)
    if args.check and report["overall"]["disagreements"]:
        print(f"ctrack-report: {len(report['overall']['disagreements'])} disagreement(s)", file=sys.stderr)
        return 1
    return 0

"""`ctrack run`: the live tracker. Bump in the wire between two interfaces (-1/-2: a packet
arriving on one leaves by the other) or an observer on one (-i). Pins its maps for the other
tools, prints flow events as they happen, and detaches everything on exit."""
import argparse
import sys
import time

from ctrack.live import pins, services
from ctrack.bpf import preflight
from ctrack.live.attach import Attachments, ifindex, is_loopback
from ctrack.errors import CtrackError
from ctrack.engine.events import EventReader, add_time_arguments, format_event, time_prefix
from ctrack.live.stopsignal import StopOnSignal
from ctrack.engine.tracker import Tracker, TrackerConfig, add_pickup_arguments, default_pickup, parse_timeouts

EXAMPLES = """examples:
  ctrack run -1 veth1 -2 veth2               # bump in the wire between veth1 and veth2 (TC)
  ctrack run -1 veth1 -2 veth2 --policy enforce   # ... and drop INVALID packets
  ctrack run -1 veth1 -2 veth2 --mode xdp    # XDP (multi-buffer frames accepted)
  ctrack run -i eth0                         # observe one interface, both directions (TC)
  ctrack run -i eth0 -l 2                    # ... printing every state change
  ctrack run -i eth0 --timeout ESTABLISHED=600 --table-size 262144
  ctrack run -i eth0 --name edge --duration 60   # a named tracker, for 60 seconds
  ctrack run -i eth0 -l 2 -T                 # every state change, with the time of day
  ctrack run -i eth0 --metrics 9100          # Prometheus metrics on 127.0.0.1:9100
  ctrack run -i eth0 --gc-interval 5         # collect idle expired flows every 5 s at most

while it runs, from another terminal: ctrack list, ctrack events, ctrack-top, ctrack flush.
log levels: 0 nothing but the summary at exit, 1 flows opened, ended and removed (default),
            2 every state change.
the banner says whether a collector removes idle flows, how, or why none does.
hooks: -1/-2 take the TC ingress of both interfaces, each redirecting to the other. -i takes
       the TC ingress and egress of IFACE, so each direction of a connection is seen once;
       on a loopback device (lo), where every packet is sent and then received, ingress only;
       the host's own multicast/broadcast looped back to IFACE's ingress is not counted
       again. XDP (--mode xdp) hooks only what IFACE receives (on lo: every packet).
modes: tc (default) keeps GSO/TSO super-packets whole and measured fastest on veth (19 Gbit/s
       pass-through); xdp runs before the kernel allocates an skb. On veth, XDP redirect needs the
       hosts' ends at `ethtool -K eth0 tx off gro on` (checked before attaching: TCP would stall
       otherwise) and then reaches ~6.5 Gbit/s.
"""


def add_parser(sub):
    p = sub.add_parser("run", help="track live traffic on interfaces",
                       description="Attach the tracker to interfaces and track live traffic.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_argument_group("where")
    where.add_argument("-1", dest="if1", metavar="IFACE", help="first side of the wire")
    where.add_argument("-2", dest="if2", metavar="IFACE", help="second side of the wire")
    where.add_argument("-i", "--interface", dest="iface", metavar="IFACE",
                       help="observe one interface instead")
    p.add_argument("--mode", choices=("tc", "xdp"), default="tc", help="hook (default tc)")
    p.add_argument("--xdp-mode", choices=("auto", "drv", "skb"), default="auto",
                   help="XDP attach mode (default: driver mode where the device has it)")
    p.add_argument("--force", action="store_true",
                   help="attach XDP even where the veth check predicts stalls")
    p.add_argument("--policy", choices=("observe", "enforce"), default="observe",
                   help="observe (default): pass everything; enforce: drop INVALID packets")
    add_pickup_arguments(p)
    p.add_argument("--timeout", action="append", default=[], metavar="STATE=SECONDS",
                   help="override a per-state timeout (repeatable; see `ctrack replay -h`)")
    p.add_argument("--table-size", type=int, metavar="N", help="flow table capacity (default 65536)")
    p.add_argument("--no-rtt", action="store_true",
                   help="leave passive RTT out of the tracker (compiled out: costs nothing)")
    p.add_argument("--no-syn-options", action="store_true",
                   help="leave the SYNs' TCP options summary out (compiled out)")
    p.add_argument("--no-zeek", action="store_true",
                   help="leave Zeek's conn_state/history record out (compiled out; flows and "
                        "events show them as null)")
    p.add_argument("--name", default=pins.DEFAULT_NAME,
                   help="tracker name, for several at once (default: default)")
    p.add_argument("-l", "--log-level", type=int, choices=(0, 1, 2), default=1,
                   help="0 quiet, 1 flows opened/closed, 2 every state change")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    # -d is a destination address in ctrack list/events/flush/delete and ctrack-top (conntrack's
    # -s/-d); here it only says so, for those used to the old `ctrack run -d SECONDS`
    p.add_argument("-d", action=_NotDuration, nargs="?", help=argparse.SUPPRESS)
    add_time_arguments(p)
    p.add_argument("--json", action="store_true", help="events and the summary as JSON lines")
    p.add_argument("--ebpf", action="store_true", help=argparse.SUPPRESS)
    services.add_arguments(p)
    p.set_defaults(func=run)


class _NotDuration(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        parser.error("-d is a destination address in ctrack's other commands (conntrack's -s/-d); "
                     "the run time is --duration SECONDS")


def observer_hooks(ipr, name):
    """The TC hooks an observer of one interface takes: ingress and egress, each direction of
    a connection crossing one of them; on a loopback device, where every packet crosses both
    (it is sent, then received), ingress alone. (The copies of its own multicast and broadcast
    a host loops back to any interface are skipped at ingress: CT_TC_EGRESS.)"""
    return ("ingress",) if is_loopback(ipr, name) else ("ingress", "egress")


def _plan(args):
    if args.iface and (args.if1 or args.if2):
        raise CtrackError("use either -i IFACE (observe) or -1 IFACE -2 IFACE (bump in the wire)")
    if args.iface:
        return [args.iface], False
    if not (args.if1 and args.if2):
        raise CtrackError("say where to run: -1 IFACE -2 IFACE (bump in the wire) or -i IFACE")
    if args.if1 == args.if2:
        raise CtrackError("-1 and -2 must be two different interfaces")
    return [args.if1, args.if2], True


def run(args):
    ifaces, wire = _plan(args)
    if args.ebpf:
        from ctrack.engine.tracker import SOURCE
        print(open(SOURCE).read())
        return 0
    preflight.check_all(bpffs=True)
    atts = Attachments()
    try:
        idx = [ifindex(atts.ipr, n) for n in ifaces]
        hooks = observer_hooks(atts.ipr, ifaces[0]) if not wire else ("ingress",)
        args.pickup = default_pickup(args.policy, args.pickup)
        cfg = TrackerConfig(policy=args.policy, pickup=args.pickup,
                            timeouts=parse_timeouts(args.timeout), table_size=args.table_size,
                            redirect=tuple(idx) if wire else None,
                            xdp_frags=args.mode == "xdp", rtt=not args.no_rtt,
                            synopts=not args.no_syn_options, zeek=not args.no_zeek,
                            tc_egress=args.mode == "tc" and "egress" in hooks)
        pins.claim(args.name)
        pins.running()   # and any other dead tracker's leftovers, before looking at interfaces
        tracker = Tracker(cfg, checks=False)
    except BaseException:
        atts.detach_all()
        raise
    out = sys.stdout
    extras = None
    try:
        if args.mode == "tc":
            fd = tracker.fn("ct_tc").fd
            for n in ifaces:
                atts.attach_tc(n, fd, hooks, tracker=args.name)
        else:
            from ctrack.live.vethcheck import xdp_fix_hint, xdp_problems
            problems = xdp_problems(ifaces, wire)
            if problems and not args.force:
                raise CtrackError(
                    "XDP on these veths would stall or drop traffic (" + "; ".join(problems)
                    + "): run `" + xdp_fix_hint(ifaces) + "`, or use --mode tc (the default), "
                    "or --force")
            fd = _xdp_frags_fd(tracker)
            mode = None if args.xdp_mode == "auto" else args.xdp_mode
            for n in ifaces:
                atts.attach_xdp(n, fd, mode)
        meta = pins.publish(args.name, tracker, {
            "interfaces": ifaces, "wire": wire, "mode": args.mode, "policy": args.policy,
            "pickup": args.pickup, "timeouts": cfg.effective_timeouts(),
            "hooks": list(hooks) if args.mode == "tc" else ["xdp"],
            "table_size": args.table_size or tracker.defs.CT_TABLE_SIZE,
            "attached": atts.record()})
        if atts.removed_orphans:
            print("ctrack: removed what a killed tracker had left attached: "
                  + ", ".join(atts.removed_orphans), file=sys.stderr)
        # the collector, the event bus (this process is the ring buffer's only reader and
        # re-publishes each event to ctrack events / ctrack-top) and --metrics: all ready
        # before "Tracking" is announced
        extras = services.RunExtras(args, meta)
        reader = EventReader(tracker.bpf)
        how = " <-> ".join(ifaces) if wire else ifaces[0] + " (observing)"
        note = ""
        if not wire and is_loopback(atts.ipr, ifaces[0]):
            note = " Loopback: each packet is seen once, as it comes back in."
        elif args.mode == "xdp" and not wire:
            note = " XDP sees received packets only."
        print(f"Tracking {how}: {args.mode}, {args.policy}"
              f"{', pickup' if args.pickup else ''}, tracker {meta['name']!r}, "
              f"{extras.collector_note}.{note} Hit Ctrl-C to end.", file=sys.stderr, flush=True)
        deadline = time.monotonic() + args.duration if args.duration else None
        # Ctrl-C/SIGTERM end the loop between batches: a batch is always printed whole, and
        # what the ring buffer still holds is drained below, before the summary that counts it
        with StopOnSignal() as stop:
            while not stop() and (deadline is None or time.monotonic() < deadline):
                for ev in reader.poll(200):
                    _print_event(ev, args, out, meta)
                    extras.publish(ev)
        for ev in reader.poll(0):
            _print_event(ev, args, out, meta)
            extras.publish(ev)
        extras.close()
        _summary(tracker, args, out)
    finally:
        if extras is not None:
            extras.close()
        errors = atts.detach_all()
        pins.remove(args.name)
        tracker.close()
        for e in errors:
            print(f"ctrack: warning: could not remove {e}", file=sys.stderr)
    return 0


def _xdp_frags_fd(tracker):
    """The XDP entry point loaded to accept multi-buffer frames: GSO/TSO super-packets on veth
    would otherwise never pass a plain XDP program and TCP would stall."""
    from ctrack.bpf.syscall import load_xdp_with_frags
    try:
        fd = load_xdp_with_frags(tracker.bpf.dump_func("ct_xdp"), "ct_xdp")
    except OSError as exc:
        raise CtrackError(f"this kernel refused a multi-buffer XDP program ({exc.strerror}); "
                          f"use --mode tc, which keeps GSO packets whole") from None
    tracker._frags_fd = fd
    return fd


def _print_event(ev, args, out, meta):
    if args.log_level == 0:
        return
    if args.log_level == 1 and ev["type"] == "state":
        return
    if args.json:
        import json
        out.write(json.dumps(ev) + "\n")
    else:
        out.write(time_prefix(ev, meta, args) + format_event(ev) + "\n")
    out.flush()


def _summary(tracker, args, out):
    st = tracker.stats()
    from ctrack.engine.defs import defs
    classes = [f"class.{n.lower()}" for n in defs().ct_class.names()]   # NEW ... RELATED
    keys = ["packets", *classes, "action.drop", "flows_created", "closed_fin", "closed_rst", "closed_timeout",
            "closed_flushed", "evicted", "table_full", "events_lost"]
    if args.json:
        import json
        out.write(json.dumps({"summary": st}) + "\n")
        return
    out.write("\n" + "  ".join(f"{k}={st[k]}" for k in keys) + "\n")
    invalid = {k[7:]: v for k, v in st.items() if k.startswith("reason.") and v}
    if invalid:
        out.write("invalid: " + "  ".join(f"{k}={v}" for k, v in sorted(invalid.items())) + "\n")

"""ctrack-lab's command line: argument parsing and printing over ctrack.lab.core.Lab. The tool in
tools/ctrack-lab only calls main()."""
import argparse
import json
import os
import shlex
import sys

from . import net as labnet
from ctrack.errors import ArgumentParser, CtrackError, cli_main
from .core import Lab, labnet_root_check
from .delay import parse_duration_ms, parse_percent
from .topo import DEFAULT_NAME, TOPOLOGIES

DESCRIPTION = """\
Build a network-namespace lab to run ctrack against, with delay and loss on its links.

topologies:
  wire    (default) "bump in the wire": hosts ns1 (10.0.0.1, fd00:c7::1) and ns2 (10.0.0.2,
          fd00:c7::2), each eth0 cabled to veth1 / veth2 in the root namespace, and nothing
          joining veth1 and veth2: a tracker attached to both, redirecting between them, is
          the only path. --bridge joins them in bridge ctbr0 instead, to test without BPF.
  routed  ns1 (10.1.0.1) -- nsr (router, eth1 10.1.0.254 / eth2 10.2.0.254) -- ns2 (10.2.0.2);
          a tracker observes inside nsr (ctrack-lab exec nsr -- ctrack run -i eth1);
          --conntrack makes netfilter conntrack active in nsr, for comparison.

A lab other than the default has its own names: --name t1 gives t1-ns1, t1-ns2, t1-v1,
t1-v2, t1-br. What a lab made is recorded in /run/ctrack/lab-NAME.json; `down` removes that
and only that. Delay is per direction (20ms gives a 40 ms round trip) and comes from
lab/bin/delayline (NFQUEUE), since this kernel has no netem: see docs/lab.md. In the wire lab
plain ping shows only the outbound half of the delay (its receive timestamp is taken before
the hold): use ping -U."""

EXAMPLES = """\
examples:
  ctrack-lab up                           # the wire lab: ns1, ns2, veth1, veth2
  ctrack-lab up --bridge --delay 20ms     # traffic flows without a tracker, 40 ms RTT
  ctrack-lab exec ns1 -- ping -U -c 3 10.0.0.2
  ctrack-lab set --delay 50ms --jitter 2ms --loss 1%
  ctrack-lab bridge off                   # before `ctrack run` attaches to veth1/veth2
  ctrack-lab status                       # what exists, what is attached (--json for scripts)
  ctrack-lab up --topology routed --name r --conntrack
  ctrack-lab exec --name r nsr -- ip -br addr
  ctrack-lab down
  ctrack-lab run --list                   # validation scenarios (real traffic, checked verdicts)"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _add_name(p):
    p.add_argument("-n", "--name", default=DEFAULT_NAME,
                   help="lab name (default: %(default)s, whose namespaces are ns1/ns2); other names "
                        "prefix everything: t1 -> t1-ns1, t1-v1")


def _add_delay(p, defaults):
    g = p.add_argument_group("delay line (per direction; 0 turns it off)")
    g.add_argument("--delay", metavar="TIME", default=defaults,
                   help="hold each packet this long: 20ms, 500us, 0.1s")
    g.add_argument("--jitter", metavar="TIME", default=defaults,
                   help="uniform +/- jitter on top of --delay (packets may reorder)")
    g.add_argument("--keep-order", action="store_true", default=None,
                   help="with --jitter, never let a packet overtake an earlier one")
    g.add_argument("--loss", metavar="PCT", default=defaults, help="drop this share at random: 1%%, 0.5%%")
    g.add_argument("--seed", type=int, default=None, help="random seed for loss and jitter (default 1)")
    g.add_argument("--queue-cap", type=int, default=None, metavar="N",
                   help="hold at most N packets per delay line, drop beyond (default 65536)")


def build_parser():
    ap = ArgumentParser(prog="ctrack-lab", description=DESCRIPTION, epilog=EXAMPLES, formatter_class=_Formatter)
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("up", help="build a lab (already up: applies the --delay/--bridge given)",
                       formatter_class=_Formatter,
                       description="Build a lab and print what it made. On a lab that is already "
                                   "up, the delay options and --bridge given are applied (as `set` "
                                   "and `bridge on` would); the rest needs `down` first.",
                       epilog=EXAMPLES)
    _add_name(p)
    p.add_argument("-t", "--topology", choices=TOPOLOGIES, default="wire", help="default: %(default)s")
    p.add_argument("--bridge", action="store_true",
                   help="wire: join veth1 and veth2 in bridge ctbr0, so hosts talk with no tracker")
    p.add_argument("--conntrack", action="store_true",
                   help="routed: make netfilter conntrack active in nsr (an INVALID-drop rule)")
    p.add_argument("--no-tso", action="store_true",
                   help="turn TSO/GSO off on the hosts' eth0 (an XDP program without frags support "
                        "on veth stalls TCP sent with TSO; TC programs are fine with it)")
    p.add_argument("--json", action="store_true", help="print the lab description as JSON")
    _add_delay(p, None)   # None: not given, so `up` on a running lab can tell what was asked

    p = sub.add_parser("down", help="remove everything a lab made", formatter_class=_Formatter,
                       description="Remove the lab's namespaces, interfaces, rules and delay lines, "
                                   "and stop programs still running in its namespaces.",
                       epilog="examples:\n  ctrack-lab down                  # the default lab (ns1, ns2)\n"
                              "  ctrack-lab down --name t1        # lab t1 (t1-ns1, t1-ns2, ...)")
    _add_name(p)

    p = sub.add_parser("status", help="what exists and what is attached", formatter_class=_Formatter,
                       description="Show the lab's namespaces and interfaces, the XDP and TC programs "
                                   "attached to them, and the delay lines' counters.",
                       epilog="examples:\n  ctrack-lab status                # is the tracker attached? packets delayed?\n"
                              "  ctrack-lab status --name t1 --json | jq '.interfaces'")
    _add_name(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("exec", help="run a command in a lab host", formatter_class=_Formatter,
                       description="Run CMD inside HOST's network namespace (like `ip netns exec`; "
                                   "/sys is not remounted, so /sys/class/net shows the root's).",
                       epilog="example:\n  ctrack-lab exec ns2 -- iperf3 -s -1\n"
                              "  ctrack-lab exec ns1 -- iperf3 -c 10.0.0.2 -t 5")
    _add_name(p)
    p.add_argument("host", help="ns1, ns2 (nsr in the routed topology), or the namespace's real name")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command and its arguments")

    p = sub.add_parser("set", help="change delay/jitter/loss on a running lab", formatter_class=_Formatter,
                       description="Change the delay line of a running lab. Options not given keep "
                                   "their current value; --clear (or all zero) removes it.",
                       epilog="examples:\n  ctrack-lab set --delay 50ms\n  ctrack-lab set --loss 0.5% --seed 7\n"
                              "  ctrack-lab set --clear")
    _add_name(p)
    _add_delay(p, None)
    p.add_argument("--clear", action="store_true", help="no delay, jitter or loss")

    p = sub.add_parser("bridge", help="join or part veth1/veth2 on a running wire lab",
                       formatter_class=_Formatter,
                       description="on: veth1 and veth2 join bridge ctbr0 and the hosts talk with no "
                                   "tracker. off: the bridge goes, and a tracker must redirect.",
                       epilog="examples:\n  ctrack-lab bridge off            # before `ctrack run -1 veth1 -2 veth2`\n"
                              "  ctrack-lab bridge on --name t1   # lab t1's hosts talk with no tracker")
    _add_name(p)
    p.add_argument("state", choices=("on", "off"))

    sub.add_parser("list", help="the labs that are up", formatter_class=_Formatter,
                   description="List the labs that have state files: name, topology, namespaces.",
                   epilog="example:\n  ctrack-lab list                  # then `ctrack-lab down --name NAME` for each")

    from .scenario import add_parser as add_run_parser   # `run`: validation scenarios
    add_run_parser(sub, _Formatter)
    return ap


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.cmd == "run":
        return args.func(args)
    return {"up": cmd_up, "down": cmd_down, "status": cmd_status, "exec": cmd_exec, "set": cmd_set,
            "bridge": cmd_bridge, "list": cmd_list}[args.cmd](args)


def _delay_kwargs(args):
    """The delay options given on the command line, in Lab's units; None where not given."""
    out = {}
    if getattr(args, "delay", None) is not None:
        out["delay_ms"] = parse_duration_ms(args.delay)
    if getattr(args, "jitter", None) is not None:
        out["jitter_ms"] = parse_duration_ms(args.jitter)
    if getattr(args, "loss", None) is not None:
        out["loss_pct"] = parse_percent(args.loss)
    if args.seed is not None:
        out["seed"] = args.seed
    if args.keep_order is not None:
        out["keep_order"] = args.keep_order
    if args.queue_cap is not None:
        out["queue_cap"] = args.queue_cap
    return out


def cmd_up(args):
    labnet_root_check()
    lab = Lab(args.name, args.topology, bridge=args.bridge, no_tso=args.no_tso, conntrack=args.conntrack,
              **_delay_kwargs(args))
    built = lab.up()
    changed = []
    if not built:
        lab = Lab.attach(args.name)
        changed = _apply_to_running(lab, args)
    if args.json:
        print(json.dumps({"built": built, "changed": changed, **lab.info()}, indent=1))
        return 0
    if not built:
        print(f"lab {args.name!r} is already up (" + ("; ".join(changed) if changed else
              "nothing changed; `ctrack-lab set` / `ctrack-lab bridge` change a running lab") + ")")
    _print_summary(lab)
    return 0


def _apply_to_running(lab, args):
    """`up` on a lab that is already up: what the user asked for is applied as `set` and
    `bridge on` would (delay options given keep the others' values); what only a rebuild can
    change is refused, saying how. Returns what changed, as text."""
    opts = lab.state.get("options") or {}
    for flag, key in (("--no-tso", "no_tso"), ("--conntrack", "conntrack")):
        if getattr(args, key) and not opts.get(key):
            raise CtrackError(f"lab {lab.name!r} is already up without {flag}: `ctrack-lab down"
                              f"{lab._name_flag()}`, then up again with it")
    changed = []
    if args.bridge and lab.set_bridge(True):
        changed.append("bridge on")
    kw = _delay_kwargs(args)
    if kw:
        from .delay import DelayConfig
        before = DelayConfig.from_dict(lab.state.get("delay"))
        attr = {"queue_cap": "cap"}
        if any(getattr(before, attr.get(k, k)) != v for k, v in kw.items()):
            # restarts the delay lines: only when something differs
            changed.append(f"delay now {lab.set_delay(**kw).describe()}")
    return changed


def _print_summary(lab):
    info = lab.info()
    flag = "" if lab.name == DEFAULT_NAME else f" --name {lab.name}"
    print(f"lab {lab.name!r}: topology {lab.topology}")
    for key, h in info["hosts"].items():
        print(f"  {key:<4} netns {h['netns']:<10} {h['ifname']:<5} {h['ipv4']:<14} {h['ipv6']:<18}"
              f"{'  (router)' if h['role'] == 'router' else ''}")
    if lab.topology == "wire":
        a, b = info["root_ifaces"]
        print(f"  wire: ns1:eth0 <-> {a} | {b} <-> ns2:eth0 (root namespace side)")
        if info["bridge"]["on"]:
            print(f"  bridged: {a} and {b} are ports of {info['bridge']['ifname']}; traffic flows without "
                  f"a tracker (`ctrack-lab bridge off{flag}` before a tracker redirects)")
        else:
            print(f"  unbridged: nothing joins {a} and {b}; only a tracker redirecting between them "
                  f"connects the hosts (`ctrack-lab bridge on{flag}` to test without one)")
    else:
        print("  routed: ns1 <-> nsr:eth1 | nsr:eth2 <-> ns2, nsr forwards"
              + (" with netfilter conntrack active" if info["options"].get("conntrack") else ""))
        router = info["hosts"]["nsr"]["netns"]
        for i in info["interfaces"]:
            if i["netns"] == router:
                print(f"    nsr {i['ifname']}: {', '.join(i['addrs'])}")
    t = info["tracker"]
    where = "root namespace" if t["netns"] is None else f"namespace {t['netns']}"
    print(f"  tracker: {', '.join(t['ifaces'])} in the {where} ({t['how']})")
    from .delay import DelayConfig
    d = DelayConfig.from_dict(info["delay"])
    if d.active:
        print(f"  delay: {d.describe()}, RTT +{2 * d.delay_ms:g} ms; {info['delay_where']}")
    if info["options"].get("no_tso"):
        print("  offloads: TSO/GSO off on the hosts' eth0")
    peer = "ns2"
    print(f"  try: ctrack-lab exec{flag} ns1 -- ping -U -c 3 {lab.addr(peer)}")


def cmd_down(args):
    labnet_root_check()
    lab = _attach(args.name)
    notes = lab.down(missing_ok=False)
    for n in notes:
        print(f"  {n}")
    print(f"lab {args.name!r} is down")
    return 0


def _attach(name):
    try:
        return Lab.attach(name)
    except CtrackError:
        raise CtrackError(f"no lab named {name!r} is up"
                          + (f" (labs up: {', '.join(Lab.names())})" if Lab.names() else "")) from None


def cmd_status(args):
    labnet_root_check()
    lab = _attach(args.name)
    s = lab.status()
    if args.json:
        print(json.dumps(s, indent=1, default=str))
        return 0
    print(f"lab {lab.name!r}: topology {lab.topology}, "
          f"{'complete' if s['complete'] else 'INCOMPLETE (run down, then up)'}")
    for ns in s["namespaces"]:
        state = f"exists, {ns['pids']} process(es)" if ns["exists"] else "MISSING"
        print(f"  netns {ns['netns']:<12} ({ns['host']}): {state}")
    for i in s["interfaces"]:
        where = "root" if i["netns"] is None else i["netns"]
        if not i.get("exists"):
            print(f"  {where}:{i['ifname']}: MISSING")
            continue
        bits = ["up" if i["up"] else "down"]
        if i.get("master"):
            bits.append(f"master {i['master']}")
        if i.get("tracker"):
            bits.append("tracker interface")
        print(f"  {where}:{i['ifname']}: {', '.join(bits)}")
        print(f"      attached: {_attached_line(i)}")
    d = s["delay"]
    from .delay import DelayConfig
    cfg = DelayConfig.from_dict(d)
    print(f"  delay: {cfg.describe()}")
    for dl in s["delay_lines"]:
        if not dl["alive"]:
            print(f"    {dl['host']}: delay line pid {dl['pid']} is NOT running")
            continue
        print(f"    {dl['host']}: pid {dl['pid']}, received {dl.get('received', 0)}, passed "
              f"{dl.get('accepted', 0)}, lost {dl.get('lost', 0)}, dropped full {dl.get('overflow', 0)}, "
              f"held {dl.get('held', 0)} (max {dl.get('max_held', 0)}), late mean "
              f"{dl.get('late_us_mean', 0):.0f} us")
    return 0


def _attached_line(i):
    parts = []
    if i.get("xdp"):
        parts.append(f"xdp ({i['xdp']['mode']}, prog id {i['xdp']['prog_id']})")
    for hook, progs in (i.get("tc") or {}).items():
        for p in progs:
            parts.append(f"tc {hook} {p['kind']}" + (f" {p['name']}" if p.get("name") else ""))
    for hook, progs in (i.get("tcx") or {}).items():
        for p in progs:
            parts.append(f"tcx {hook} {p.get('name') or ''} (prog id {p.get('prog_id')})")
    return ", ".join(parts) or "nothing"


def cmd_exec(args):
    labnet_root_check()
    cmd = list(args.command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise CtrackError("exec needs a command: ctrack-lab exec HOST -- CMD [ARGS...]")
    lab = _attach(args.name)
    ns = lab.netns(args.host)
    if not labnet.netns_exists(ns):
        raise CtrackError(f"namespace {ns} is missing (the lab is damaged: down, then up)")
    labnet.setns(ns)
    sys.stdout.flush()
    try:
        os.execvp(cmd[0], cmd)
    except OSError as exc:
        raise CtrackError(f"cannot run {shlex.quote(cmd[0])}: {exc.strerror}") from None


def cmd_set(args):
    labnet_root_check()
    lab = _attach(args.name)
    kw = _delay_kwargs(args)
    if args.clear:
        kw.update(delay_ms=0, jitter_ms=0, loss_pct=0)
    if not kw:
        raise CtrackError("set needs at least one of --delay, --jitter, --loss, --seed, --keep-order, "
                          "--queue-cap, --clear")
    cfg = lab.set_delay(**kw)
    print(f"lab {lab.name!r}: delay {cfg.describe()}" + (f" (RTT +{2 * cfg.delay_ms:g} ms)" if cfg.active else ""))
    return 0


def cmd_bridge(args):
    labnet_root_check()
    lab = _attach(args.name)
    changed = lab.set_bridge(args.state == "on")
    br = lab.info()["bridge"]["ifname"]
    a, b = lab.spec.root_ifaces
    if args.state == "on":
        print(f"{a} and {b} {'are now' if changed else 'were already'} ports of {br}")
    else:
        print(f"{br} {'removed' if changed else 'was not there'}: {a} and {b} are unbridged")
    return 0


def cmd_list(args):
    names = Lab.names()
    if not names:
        print("no labs are up")
    for n in names:
        try:
            lab = Lab.attach(n)
            print(f"{n:<10} {lab.topology:<7} {', '.join(lab.netns(h) for h in lab.hosts)}")
        except CtrackError as exc:
            print(f"{n:<10} ?       ({exc})")
    return 0

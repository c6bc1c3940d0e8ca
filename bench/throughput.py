#!/usr/bin/python3
"""Throughput through the lab: the tracker against an empty pass-through in the same hook, and
netfilter conntrack against plain forwarding, measured with iperf3 in one run.

Paths (labs built for the run and torn down after it):
  tc-pass      wire lab, bench/passthrough.c's pt_tc on both veths' TC ingress: bpf_redirect
               to the other veth, nothing else (the tracker's path without the tracker)
  tc-tracker   wire lab, `ctrack run --mode tc` (observe, collector on, events at -l 0)
  xdp-pass     wire lab, pt_xdp (multi-buffer XDP, as ctrack loads its own), hosts' eth0 at
               `ethtool -K eth0 tx off gro on`: XDP redirect on veth needs that (without GRO the
               redirected frames are dropped, with TX checksum offload TCP stalls)
  xdp-tracker  wire lab, `ctrack run --mode xdp`, hosts at tx off gro on too
  routed       routed lab: nsr forwards, no netfilter conntrack (its own baseline)
  routed-ct    routed lab with --conntrack: nsr forwards with netfilter conntrack active
The TC and XDP pairs share one wire lab each (programs attached in turn); the routed pair are two
labs, up side by side. Tests per path: iperf3 TCP with 1 and 4 streams, and UDP offered at
1 Gbit/s (-b 1G), each -t SECONDS, from ns1 to ns2. Reported: Gbit/s received, TCP
retransmits, UDP loss, and each path's ratio to its baseline (tracker / pass-through of the
same hook, conntrack / routed). This machine is shared and noisy, so the paths compared take turns: a group's paths (tc-pass and
tc-tracker, say) run one round of all tests each, --repeat times, interleaved; cells are the
median over rounds (with min-max), ratios the median of the same-round ratios.

Unless --no-profile, a further 3 s TCP run per BPF path measures the program's own cost from
the kernel's run-time statistics (BPF_ENABLE_STATS, on for that run only: nothing is left
changed): ns per program run, runs per second, share of one core. For TC it also runs
passthrough.c's pt_tc_pull (the pass-through plus the tracker's header pull) to tell what
pulling a GSO super-packet's headers into its linear part costs from the tracker's own work.
The tracker comes from kernel/ (CTRACK_KERNEL_DIR overrides, e.g. a clean `git show` copy).
"""
import argparse
import ctypes
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ctrack.errors import CtrackError  # noqa: E402
from ctrack.lab import Lab  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PASSTHROUGH_C = os.path.join(HERE, "passthrough.c")
TARGET = 0.90

PATHS = {
    # name: (topology, lab options, what sits in the path, hosts need XDP offloads, baseline)
    "tc-pass": ("wire", {}, "pass-tc", False, None),
    "tc-tracker": ("wire", {}, "tracker-tc", False, "tc-pass"),
    "xdp-pass": ("wire", {}, "pass-xdp", True, None),
    "xdp-tracker": ("wire", {}, "tracker-xdp", True, "xdp-pass"),
    "routed": ("routed", {}, None, False, None),
    "routed-ct": ("routed", {"conntrack": True}, None, False, "routed"),
}
LABELS = {
    "tc-pass": "TC pass-through (bpf_redirect)",
    "tc-tracker": "ctrack, TC",
    "xdp-pass": "XDP pass-through (bpf_redirect)*",
    "xdp-tracker": "ctrack, XDP*",
    "routed": "routed, forwarding only",
    "routed-ct": "routed, netfilter conntrack",
}
TESTS = ("tcp1", "tcp4", "udp")

EXAMPLES = """examples:
  sudo /usr/bin/python3 bench/throughput.py                  # all paths, 3 rounds of -t 5: ~5 minutes
  sudo /usr/bin/python3 bench/throughput.py --repeat 1       # one round: ~2 minutes, noisier
  sudo /usr/bin/python3 bench/throughput.py --paths tc-pass,tc-tracker --seconds 3
  sudo /usr/bin/python3 bench/throughput.py --paths tc-pass,tc-tracker --tests tcp4 --repeat 9
  sudo /usr/bin/python3 bench/throughput.py --json > throughput.json

Traffic stays inside the lab's namespaces; every iperf3 run is bounded (-t SECONDS, and a
timeout); labs, programs and the tracker are removed on exit, Ctrl-C included."""


# ---- BPF programs in the path ------------------------------------------------------------------

_NR_BPF = 321 if platform.machine() == "x86_64" else 280
_BPF_PROG_GET_FD_BY_ID = 13


def prog_fd_by_id(prog_id):
    class Attr(ctypes.Structure):
        _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(_NR_BPF, _BPF_PROG_GET_FD_BY_ID, ctypes.byref(Attr(prog_id, 0, 0)), ctypes.sizeof(Attr))
    if fd < 0:
        raise OSError(ctypes.get_errno(), f"no BPF program with id {prog_id}")
    return fd


def attached_prog_ids(ifaces):
    """Ids of the XDP and TC-ingress programs on these interfaces (root namespace), deduplicated."""
    from pyroute2 import IPRoute
    from ctrack.attach import TC_INGRESS, tc_filters, xdp_prog_id
    ids = []
    with IPRoute() as ipr:
        for name in ifaces:
            idx = ipr.link_lookup(ifname=name)[0]
            pid = xdp_prog_id(ipr, idx)
            if pid:
                ids.append(pid)
            if tc_filters(ipr, idx, TC_INGRESS):
                # pyroute2 leaves TCA_BPF_ID undecoded; tc(8) prints it ("... id 42 tag ...")
                res = subprocess.run(["tc", "filter", "show", "dev", name, "ingress"], capture_output=True,
                                     text=True, timeout=10)
                ids += [int(m) for m in re.findall(r"\bid (\d+)", res.stdout)]
    return sorted(set(ids))


class PassThrough:
    """bench/passthrough.c attached to both tracker interfaces of a wire lab, as TC or XDP."""

    def __init__(self, ifaces, mode):
        from bcc import BPF
        from pyroute2 import IPRoute
        from ctrack.attach import Attachments
        with IPRoute() as ipr:
            a, b = (ipr.link_lookup(ifname=n)[0] for n in ifaces)
        self.bpf = BPF(src_file=PASSTHROUGH_C.encode(), cflags=[f"-DPEER_A={a}", f"-DPEER_B={b}"])
        self.atts = Attachments()
        self.fd = None
        try:
            if mode == "xdp":
                # multi-buffer, like `ctrack run --mode xdp`, so both see the same frames
                from ctrack.bpfsys import load_xdp_with_frags
                self.fd = load_xdp_with_frags(self.bpf.dump_func("pt_xdp"), "pt_xdp")
                for n in ifaces:
                    self.atts.attach_xdp(n, self.fd)
            else:
                fd = self.bpf.load_func("pt_" + mode, BPF.SCHED_CLS).fd   # pt_tc, pt_tc_pull
                for n in ifaces:
                    self.atts.attach_tc(n, fd, ("ingress",))
        except BaseException:
            self.close()
            raise

    def close(self):
        self.atts.detach_all()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.bpf.cleanup()


class TrackerRun:
    """`ctrack run` in the lab's wire, as a user would start it (observe, collector on)."""

    def __init__(self, ifaces, mode, name):
        self.proc = subprocess.Popen(["ctrack", "run", "-1", ifaces[0], "-2", ifaces[1], "--mode", mode,
                                      "--name", name, "-l", "0", "--json", "--duration", "900"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        if "Tracking" not in line:
            self.proc.kill()
            raise CtrackError(f"ctrack run did not start: {line.strip() or self.proc.stderr.read().strip()}")
        self.summary = None

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        for line in out.splitlines():
            if line.startswith('{"summary"'):
                self.summary = json.loads(line)["summary"]


# ---- iperf3 ------------------------------------------------------------------------------------

def iperf(lab, test, seconds):
    args = ["iperf3", "-c", lab.addr("ns2"), "-t", str(seconds), "--json", "--connect-timeout", "3000"]
    if test == "tcp4":
        args += ["-P", "4"]
    elif test == "udp":
        args += ["-u", "-b", "1G"]
    res = lab.exec("ns1", args, check=False, timeout=seconds + 30)
    try:
        end = json.loads(res.stdout)["end"]
    except (ValueError, KeyError):
        err = (res.stdout + res.stderr).strip().splitlines()
        raise CtrackError(f"iperf3 {test} failed: {err[-1] if err else 'no output'}")
    recv = end["sum_received"]
    out = {"gbps": recv["bits_per_second"] / 1e9}
    if test == "udp":
        out["loss_pct"] = end["sum"]["lost_percent"]
        out["offered_gbps"] = end["sum_sent"]["bits_per_second"] / 1e9
    else:
        out["retransmits"] = end["sum_sent"].get("retransmits", 0)
    return out


def median_run(runs):
    """The run with the median throughput (its loss/retransmits go with it), plus the spread."""
    ordered = sorted(runs, key=lambda r: r["gbps"])
    mid = dict(ordered[len(ordered) // 2])
    if len(runs) > 1:
        mid["gbps_all"] = [round(r["gbps"], 3) for r in runs]
    return mid


def profile(lab, ifaces, seconds=3, test="tcp1"):
    """ns per program run and runs per second of the BPF program(s) on the path, during one
    iperf3 test (BPF_ENABLE_STATS for that run only)."""
    from ctrack.observers import enable_stats
    from ctrack.observers.program import prog_stats
    fds = [prog_fd_by_id(i) for i in attached_prog_ids(ifaces)]
    try:
        with enable_stats():
            before = [prog_stats(fd) for fd in fds]
            t0 = time.monotonic()
            iperf(lab, test, seconds)
            wall = time.monotonic() - t0
            after = [prog_stats(fd) for fd in fds]
    finally:
        for fd in fds:
            os.close(fd)
    ns = sum(a[1] - b[1] for a, b in zip(after, before))
    runs = sum(a[2] - b[2] for a, b in zip(after, before))
    return {"prog_ids": [a[0] for a in after], "runs": runs, "ns_per_run": ns / runs if runs else None,
            "runs_per_s": runs / wall, "cpu_pct_of_one_core": 100.0 * ns / 1e9 / wall}


# ---- the paths, measured in interleaved rounds -------------------------------------------------

# Paths compared with each other share a group: within a group the paths take turns, one round
# of all tests each, `repeat` times (pass, tracker, pass, tracker, ...), so that whatever else
# loads this shared machine meanwhile weighs on both sides of a ratio alike.
GROUPS = (("tc", ("tc-pass", "tc-tracker")), ("xdp", ("xdp-pass", "xdp-tracker")),
          ("routed", ("routed", "routed-ct")))


class Group:
    """The labs of one group: one wire lab shared by its paths (programs attached in turn), or
    one routed lab per path (with and without --conntrack), each with an iperf3 server."""

    def __init__(self, key, paths, log):
        self.key, self.paths, self.log = key, paths, log
        self.labs, self.servers = {}, []
        tag = os.getpid() % 10000
        try:
            if key == "routed":
                for i, p in enumerate(paths):
                    self.labs[p] = self._lab(f"br{tag}{i}", "routed", **PATHS[p][1])
            else:
                lab = self._lab(f"bt{tag}", "wire")
                if PATHS[paths[0]][3]:
                    for h in ("ns1", "ns2"):
                        lab.exec(h, ["ethtool", "-K", lab.ifname(h), "tx", "off", "gro", "on"])
                for p in paths:
                    self.labs[p] = lab
        except BaseException:
            self.close()
            raise

    def _lab(self, name, topology, **kw):
        lab = Lab(name, topology, **kw)
        lab.down()
        lab.up()
        self.servers.append((lab, lab.spawn("ns2", ["iperf3", "-s"])))
        _wait_port(lab, 5201)
        return lab

    def attach(self, path, name=None):
        """What sits in PATH (None for the routed ones); close() it afterwards."""
        what = name or PATHS[path][2]
        lab = self.labs[path]
        thing = None
        if what and what.startswith("pass-"):
            thing = PassThrough(lab.tracker_ifaces, what[5:])
        elif what and what.startswith("tracker-"):
            thing = TrackerRun(lab.tracker_ifaces, what[8:], f"bench-{lab.name}")
        lab.flush_neighbours()
        return thing

    def close(self):
        for lab, srv in self.servers:
            srv.stop()
        for lab in {id(l): l for l in self.labs.values()}.values():
            lab.down()
        for lab, _ in self.servers:
            lab.down()


def measure_group(key, paths, seconds, repeat, want_profile, log, tests=TESTS, profile_test="tcp1"):
    g = Group(key, paths, log)
    results = {p: {"path": p, "label": LABELS[p], "runs": {t: [] for t in tests},
                   "hosts": "tx off gro on" if PATHS[p][3] else "default offloads"} for p in paths}
    try:
        for rnd in range(repeat):
            for p in paths:
                thing = g.attach(p)
                try:
                    for t in tests:
                        r = iperf(g.labs[p], t, seconds)
                        results[p]["runs"][t].append(r)
                        log(f"  round {rnd + 1}/{repeat} {p:<12} {t:<5} {r['gbps']:7.3f} Gbit/s"
                            + (f", {r['loss_pct']:.2f}% loss" if t == "udp" else f", {r['retransmits']} retr"))
                finally:
                    if thing is not None:
                        thing.close()
                        if isinstance(thing, TrackerRun):
                            results[p].setdefault("tracker_summaries", []).append(_summary(thing.summary))
        if want_profile:
            extra = [("tc-pass", "pass-tc_pull", "TC pass-through + the tracker's header pull")] \
                if key == "tc" and "tc-pass" in paths else []
            for p, what, label in [(p, None, None) for p in paths if PATHS[p][2]] + extra:
                thing = g.attach(p, what)
                try:
                    prof = profile(g.labs[p], g.labs[p].tracker_ifaces, test=profile_test)
                finally:
                    thing.close()
                if what is None:
                    results[p]["profile"] = prof
                else:
                    results[p].setdefault("profile_extra", []).append(dict(prof, label=label))
                log(f"  profile {label or p}: {prof['ns_per_run']:.0f} ns/run, {prof['runs_per_s']:,.0f} runs/s")
    finally:
        g.close()
    for r in results.values():
        for t in tests:
            r[t] = median_run(r["runs"][t])
    return [results[p] for p in paths]


def _summary(st):
    """The tracker's counters worth keeping from one round: packets, flows, INVALID by reason."""
    if not st:
        return None
    out = {k: st.get(k) for k in ("packets", "class.invalid", "action.drop", "flows_created", "events_lost")}
    out.update({k: v for k, v in st.items() if k.startswith("reason.") and v})
    return out


def _wait_port(lab, port, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if lab.exec("ns2", ["ss", "-Hltn", f"sport = :{port}"], check=False).stdout.strip():
            return
        time.sleep(0.05)
    raise CtrackError("iperf3 server did not start in ns2")


# ---- report --------------------------------------------------------------------------------------

def add_ratios(results):
    """Each path's ratio to its baseline: the median over rounds of (path / baseline) measured in
    the same round, so a slow moment of the machine cancels out."""
    by = {r["path"]: r for r in results}
    for r in results:
        base = PATHS[r["path"]][4]
        if base and base in by:
            r["baseline"] = base
            for t in r["runs"]:
                pairs = [a["gbps"] / b["gbps"] for a, b in zip(r["runs"][t], by[base]["runs"][t]) if b["gbps"]]
                r[t]["ratio"] = statistics.median(pairs) if pairs else None
                r[t]["ratios"] = [round(x, 3) for x in pairs]


def table(results, seconds, repeat):
    heads = {"tcp1": "TCP 1 stream", "tcp4": "TCP 4 streams", "udp": "UDP 1G offered"}
    tests = [t for t in TESTS if results and t in results[0]["runs"]]
    lines = ["| path | hosts | " + " | ".join(heads[t] for t in tests)
             + f" | vs baseline ({' / '.join(t.upper() for t in tests)}) |",
             "|---|---|" + "---:|" * len(tests) + "---|"]
    for r in results:
        cells = []
        for t in tests:
            x = r[t]
            cells.append(f"{_cell(x, 1000, 0)} Mbit/s, {x['loss_pct']:.1f}% loss" if t == "udp"
                         else f"{_cell(x)} Gbit/s, {x['retransmits']} retr")
        if "baseline" in r:
            ratio = " / ".join(f"{r[t]['ratio'] * 100:.0f}%" for t in tests) + f" of {r['baseline']}"
        else:
            ratio = "baseline"
        lines.append(f"| {r['label']} | {r['hosts']} | " + " | ".join(cells) + f" | {ratio} |")
    prof = [(r["label"], r["profile"]) for r in results if r.get("profile")]
    prof += [(p["label"], p) for r in results for p in r.get("profile_extra", [])]
    if prof:
        lines += ["", "| program (during the profile run) | ns per run | runs/s | CPU, % of one core |",
                  "|---|---:|---:|---:|"]
        for label, p in prof:
            lines.append(f"| {label} | {p['ns_per_run']:.0f} | {p['runs_per_s']:,.0f} | "
                         f"{p['cpu_pct_of_one_core']:.1f} |")
    return "\n".join(lines)


def _cell(test, scale=1, digits=2):
    """median (min-max) of a test's rounds."""
    vals = [x * scale for x in test.get("gbps_all", [test["gbps"]])]
    med = test["gbps"] * scale
    if len(vals) < 2:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(vals):.{digits}f}-{max(vals):.{digits}f})"


def verdicts(results):
    out = []
    for r in results:
        if r["path"].endswith("-tracker") and "baseline" in r:
            low = [t for t in r["runs"] if r[t]["ratio"] is not None and r[t]["ratio"] < TARGET]
            out.append(f"{r['path']}: " + ("keeps >= 90% of its pass-through in every test" if not low else
                                           f"BELOW 90% of its pass-through in {', '.join(low)}"))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EXAMPLES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paths", default=",".join(PATHS), help="comma-separated, from: " + ", ".join(PATHS))
    ap.add_argument("--seconds", type=int, default=5, help="iperf3 -t per test (default 5)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds per path, interleaved with the other paths of its group; medians are "
                         "reported (default 3)")
    ap.add_argument("--tests", default=",".join(TESTS), help="comma-separated, from: " + ", ".join(TESTS))
    ap.add_argument("--no-profile", action="store_true", help="skip the BPF run-time statistics run")
    ap.add_argument("--profile-test", choices=TESTS, default="tcp1",
                    help="the iperf3 test the profile run uses (default tcp1, 3 s)")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON document")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = ap.parse_args(argv)
    paths = list(dict.fromkeys(p.strip() for p in args.paths.split(",") if p.strip()))
    bad = [p for p in paths if p not in PATHS]
    if bad:
        ap.error(f"unknown path {bad[0]!r} (choose from {', '.join(PATHS)})")
    tests = [t for t in TESTS if t in args.tests.split(",")]
    if not tests or set(args.tests.split(",")) - set(TESTS):
        ap.error(f"--tests takes a comma-separated list from {', '.join(TESTS)}")
    if not 1 <= args.seconds <= 60 or not 1 <= args.repeat <= 20:
        ap.error("--seconds must be 1-60 and --repeat 1-20")
    if os.geteuid() != 0:
        print("throughput.py: must run as root (namespaces, BPF)", file=sys.stderr)
        return 1
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))

    def on_term(signum, frame):   # SIGTERM unwinds like Ctrl-C: labs and programs are removed
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    results = []
    try:
        for key, members in GROUPS:
            chosen = [p for p in members if p in paths]
            if chosen:
                log(f"{key}: {', '.join(chosen)}, {args.repeat} round(s) of {', '.join(tests)}, -t {args.seconds}")
                results += measure_group(key, chosen, args.seconds, args.repeat, not args.no_profile, log,
                                         tests, args.profile_test)
    except CtrackError as exc:
        print(f"throughput.py: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    add_ratios(results)
    cmd = "bench/throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.json:
        print(json.dumps({"command": cmd.strip(), "seconds": args.seconds, "repeat": args.repeat,
                          "kernel": platform.release(), "cpus": os.cpu_count(), "results": results,
                          "verdicts": verdicts(results)}, indent=1))
    else:
        print(table(results, args.seconds, args.repeat))
        print("\n* hosts' eth0 at `ethtool -K eth0 tx off gro on` (XDP redirect on veth needs it)")
        for v in verdicts(results):
            print(v)
    return 0


if __name__ == "__main__":
    sys.exit(main())

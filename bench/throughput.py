#!/usr/bin/python3
"""Throughput through the lab: the tracker against an empty pass-through in the same hook, and
netfilter conntrack against plain forwarding, measured with iperf3 in one run.

Paths (labs built for the run and torn down after it):
  tc-pass      wire lab, bench/passthrough.c's pt_tc on both veths' TC ingress: bpf_redirect
               to the other veth, nothing else (the tracker's path without the tracker)
  tc-ref       wire lab, bench/reference_ct.c's ref_tc instead: the minimal conntrack (parse, one
               lookup, a locked counter update), redirecting the same way -- what tracking at
               all costs, the yardstick for the tracker's own figure
  tc-tracker   wire lab, `ctrack run --mode tc` (observe, collector on, events at -l 0)
  xdp-pass     wire lab, pt_xdp (multi-buffer XDP, as ctrack loads its own), hosts' eth0 at
               `ethtool -K eth0 tx off gro on`: XDP redirect on veth needs that (without GRO the
               redirected frames are dropped, with TX checksum offload TCP stalls)
  xdp-ref      wire lab, reference_ct.c's ref_xdp (multi-buffer, like the others), hosts likewise
  xdp-tracker  wire lab, `ctrack run --mode xdp`, hosts at tx off gro on too
  routed       routed lab: nsr forwards, no netfilter conntrack (its own baseline)
  routed-ct    routed lab with --conntrack: nsr forwards with netfilter conntrack active
The TC and XDP groups share one wire lab each (programs attached in turn); the routed pair are two
labs, up side by side. Tests per path: iperf3 TCP with 1 and 4 streams, and UDP offered at
1 Gbit/s (-b 1G), each -t SECONDS, from ns1 to ns2. Reported: Gbit/s received, TCP
retransmits, UDP loss, and each path's ratio to its baseline (tracker or reference / pass-through
of the same hook, conntrack / routed). This machine is shared and noisy, so the paths compared take turns: a group's paths (tc-pass and
tc-tracker, say) run one round of all tests each, --repeat times, interleaved; cells are the
median over rounds (with min-max), ratios the median of the same-round ratios.

Unless --no-profile, further 3 s TCP runs per BPF program measure the program's own cost from
the kernel's run-time statistics (BPF_ENABLE_STATS, on for those runs only: nothing is left
changed): ns per program run, runs per second, share of one core; --profile-rounds rounds,
interleaved, median reported. Beside the pass-through and the tracker it profiles
bench/reference_ct.c in the same hook (a minimal conntrack: parse, one lookup, a locked counter
update; redirecting like the others), which tells what tracking at all costs live from what the
tracker adds to that; and for TC passthrough.c's pt_tc_pull (the pass-through plus the 256-byte
header pull ct_tc once did to every packet).
The tracker comes from kernel/ (CTRACK_KERNEL_DIR overrides, e.g. a clean `git show` copy).
"""
import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ctrack.bpf.syscall import prog_fd_by_id  # noqa: E402
from ctrack.errors import CtrackError  # noqa: E402
from ctrack.lab.core import Lab  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PASSTHROUGH_C = os.path.join(HERE, "passthrough.c")
REFERENCE_C = os.path.join(HERE, "reference_ct.c")
# issue 13's goals for the tracker against its own hook's pass-through, TCP tests (median ratio)
TARGETS = {"tc-tracker": 0.97, "xdp-tracker": 0.95}

PATHS = {
    # name: (topology, lab options, what sits in the path, hosts need XDP offloads, baseline)
    "tc-pass": ("wire", {}, "pass-tc", False, None),
    "tc-ref": ("wire", {}, "ref-tc", False, "tc-pass"),
    "tc-tracker": ("wire", {}, "tracker-tc", False, "tc-pass"),
    "xdp-pass": ("wire", {}, "pass-xdp", True, None),
    "xdp-ref": ("wire", {}, "ref-xdp", True, "xdp-pass"),
    "xdp-tracker": ("wire", {}, "tracker-xdp", True, "xdp-pass"),
    "routed": ("routed", {}, None, False, None),
    "routed-ct": ("routed", {"conntrack": True}, None, False, "routed"),
}
LABELS = {
    "tc-pass": "TC pass-through (bpf_redirect)",
    "tc-ref": "reference conntrack (bench/reference_ct.c), TC",
    "tc-tracker": "ctrack, TC",
    "xdp-pass": "XDP pass-through (bpf_redirect)*",
    "xdp-ref": "reference conntrack (bench/reference_ct.c), XDP*",
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
  sudo /usr/bin/python3 bench/throughput.py --paths xdp-pass,xdp-tracker --tests tcp1 --perf   # where the time goes
  sudo /usr/bin/python3 bench/throughput.py --json > throughput.json

Traffic stays inside the lab's namespaces; every iperf3 run is bounded (-t SECONDS, and a
timeout); labs, programs and the tracker are removed on exit, Ctrl-C included."""


# ---- BPF programs in the path ------------------------------------------------------------------

def attached_prog_ids(ifaces):
    """Ids of the XDP and TC-ingress programs on these interfaces (root namespace), deduplicated."""
    from pyroute2 import IPRoute
    from ctrack.live.attach import TC_INGRESS, tc_filters, xdp_prog_id
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
    """bench/passthrough.c attached to both tracker interfaces of a wire lab, as TC or XDP; or,
    with reference=True, bench/reference_ct.c (the minimal conntrack, redirecting the same way)."""

    def __init__(self, ifaces, mode, reference=False):
        from bcc import BPF
        from pyroute2 import IPRoute
        from ctrack.live.attach import Attachments
        with IPRoute() as ipr:
            a, b = (ipr.link_lookup(ifname=n)[0] for n in ifaces)
        src, prefix = (REFERENCE_C, "ref_") if reference else (PASSTHROUGH_C, "pt_")
        self.bpf = BPF(src_file=src.encode(), cflags=[f"-DPEER_A={a}", f"-DPEER_B={b}"])
        self.atts = Attachments()
        self.fd = None
        try:
            if mode == "xdp":
                # multi-buffer, like `ctrack run --mode xdp`, so both see the same frames
                from ctrack.bpf.syscall import load_xdp_with_frags
                self.fd = load_xdp_with_frags(self.bpf.dump_func(prefix + "xdp"), prefix + "xdp")
                for n in ifaces:
                    self.atts.attach_xdp(n, self.fd)
            else:
                fd = self.bpf.load_func(prefix + mode, BPF.SCHED_CLS).fd   # pt_tc, pt_tc_pull, ref_tc
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
        # lines before "Tracking" are notices (another tracker's leftovers being removed, ...);
        # only the end of the output before it is a failure
        head = []
        while True:
            line = self.proc.stderr.readline()
            if "Tracking" in line:
                break
            head.append(line.strip())
            if not line:
                self.proc.kill()
                raise CtrackError(f"ctrack run did not start: {' '.join(h for h in head if h) or 'no output'}")
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


def profile(lab, ifaces, seconds=3, test="tcp1", perf=False):
    """ns per program run and runs per second of the BPF program(s) on the path, during one
    iperf3 test (BPF_ENABLE_STATS for that run only). perf=True also samples every CPU with
    perf (cpu-clock, call stacks) meanwhile and splits the program's time by what it was in."""
    from ctrack.bpf.syscall import enable_stats, prog_stats
    ids = attached_prog_ids(ifaces)
    fds = [prog_fd_by_id(i) for i in ids]
    rec, data = None, f"/tmp/ctrack-bench-perf-{os.getpid()}.data"
    try:
        with enable_stats():
            before = [prog_stats(fd) for fd in fds]
            if perf:
                rec = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-a", "-g", "-o", data,
                                        "--", "sleep", str(seconds)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t0 = time.monotonic()
            iperf(lab, test, seconds)
            wall = time.monotonic() - t0
            after = [prog_stats(fd) for fd in fds]
            if rec:
                rec.wait(timeout=30)
        ns = sum(a[1] - b[1] for a, b in zip(after, before))
        runs = sum(a[2] - b[2] for a, b in zip(after, before))
        out = {"prog_ids": [a[0] for a in after], "runs": runs, "ns_per_run": ns / runs if runs else None,
               "runs_per_s": runs / wall, "cpu_pct_of_one_core": 100.0 * ns / 1e9 / wall}
        if rec:
            out["split"] = perf_split(data, ids, out["ns_per_run"])
        return out
    finally:
        for fd in fds:
            os.close(fd)
        if rec:   # an error or Ctrl-C meanwhile: the recorder (ours) goes too
            if rec.poll() is None:
                rec.kill()
                rec.wait()
            if os.path.exists(data):
                os.unlink(data)


# What a sample inside a BPF program was doing, from its stack (leaf first): the first frame
# that names one of these. cpu-clock samples cannot interrupt a section run with interrupts off,
# so the time inside a bpf_spin_lock'ed section is counted where the unlock restores them.
SPLIT = (("flow lock and the section it holds", ("bpf_spin_lock", "bpf_spin_unlock",
                                                   "__bpf_spin_lock_irqsave", "__bpf_spin_unlock_irqrestore")),
         ("hash lookup", ("htab_map_hash", "lookup_nulls_elem_raw", "__htab_map_lookup_elem", "memcmp")),
         ("clock", ("bpf_ktime_get_coarse_ns", "bpf_ktime_get_ns", "ktime_get_coarse_ts64")),
         ("header pull", ("bpf_skb_pull_data", "__pskb_pull_tail", "pskb_expand_head")),
         ("redirect", ("bpf_redirect", "bpf_xdp_redirect")),
         ("multi-buffer length", ("bpf_xdp_get_buff_len",)))


def perf_split(data, prog_ids, ns_per_run):
    """{what: [share of the programs' samples, ns per run]} from a `perf record -g` file: samples
    whose stack holds one of the programs (by tag, as kallsyms names JIT images), classified by
    SPLIT; the program's own instructions and anything else are their own rows."""
    tags = set()
    for i in prog_ids:
        res = subprocess.run(["bpftool", "-j", "prog", "show", "id", str(i)], capture_output=True, text=True)
        tags.add(json.loads(res.stdout)["tag"])
    res = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym"], capture_output=True, text=True, timeout=120)
    counts, total = {}, 0
    for block in res.stdout.split("\n\n"):
        frames = [ln.split()[1] for ln in block.splitlines() if len(ln.split()) >= 2]   # "address symbol"
        hit = [k for k, f in enumerate(frames) if f.startswith("bpf_prog_") and f.split("_")[2] in tags]
        if not hit:
            continue
        total += 1
        what = "the program's own instructions"
        for f in frames[:hit[0]]:
            found = [name for name, syms in SPLIT if f in syms]
            if found:
                what = found[0]
                break
        else:
            if hit[0]:
                what = f"other: {frames[0]}"
        counts[what] = counts.get(what, 0) + 1
    return {w: [round(n / total, 3), round(n / total * (ns_per_run or 0))]
            for w, n in sorted(counts.items(), key=lambda x: -x[1])} if total else {}


# ---- the paths, measured in interleaved rounds -------------------------------------------------

# Paths compared with each other share a group: within a group the paths take turns, one round
# of all tests each, `repeat` times (pass, tracker, pass, tracker, ...), so that whatever else
# loads this shared machine meanwhile weighs on both sides of a ratio alike.
GROUPS = (("tc", ("tc-pass", "tc-ref", "tc-tracker")), ("xdp", ("xdp-pass", "xdp-ref", "xdp-tracker")),
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
        elif what and what.startswith("ref-"):
            thing = PassThrough(lab.tracker_ifaces, what[4:], reference=True)
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


def median_profile(profs):
    """The profile round with the median ns per run, with every round's figure beside it."""
    ordered = sorted(profs, key=lambda x: x["ns_per_run"] or 0)
    mid = dict(ordered[len(ordered) // 2])
    mid["ns_per_run_all"] = [round(x["ns_per_run"] or 0) for x in profs]
    return mid


def measure_group(key, paths, seconds, repeat, want_profile, log, tests=TESTS, profile_test="tcp1",
                  profile_rounds=1, want_perf=False):
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
            # the minimal conntrack in the same hook (what tracking at all costs live), and, for
            # TC, the pass-through plus the 256-byte pull ct_tc once did to every packet
            extra = []
            # (unless the reference is a path of this run: then it is profiled as one)
            if key == "tc" and "tc-pass" in paths:
                if "tc-ref" not in paths:
                    extra = [("tc-pass", "ref-tc", "reference conntrack (bench/reference_ct.c), TC")]
                extra.append(("tc-pass", "pass-tc_pull", "TC pass-through + a 256-byte header pull"))
            elif key == "xdp" and "xdp-pass" in paths and "xdp-ref" not in paths:
                extra = [("xdp-pass", "ref-xdp", "reference conntrack (bench/reference_ct.c), XDP*")]
            # rounds interleaved like the throughput tests; each figure is the median round
            progs = [(p, None, None) for p in paths if PATHS[p][2]] + extra
            profs = {i: [] for i in range(len(progs))}
            for rnd in range(profile_rounds):
                for i, (p, what, label) in enumerate(progs):
                    thing = g.attach(p, what)
                    try:
                        prof = profile(g.labs[p], g.labs[p].tracker_ifaces, test=profile_test,
                                       perf=want_perf)
                    finally:
                        thing.close()
                    profs[i].append(prof)
                    log(f"  profile {rnd + 1}/{profile_rounds} {label or p}: {prof['ns_per_run']:.0f} ns/run, "
                        f"{prof['runs_per_s']:,.0f} runs/s")
            for i, (p, what, label) in enumerate(progs):
                prof = median_profile(profs[i])
                if what is None:
                    results[p]["profile"] = prof
                else:
                    results[p].setdefault("profile_extra", []).append(dict(prof, label=label))
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
    prof = []
    for r in results:
        if r.get("profile"):
            prof.append((r["label"], r["profile"]))
        prof += [(p["label"], p) for p in r.get("profile_extra", [])]
    if prof:
        lines += ["", "| program (during the profile run) | ns per run | runs/s | CPU, % of one core |",
                  "|---|---:|---:|---:|"]
        for label, p in prof:
            rounds = p.get("ns_per_run_all", [])
            spread = f" ({min(rounds)}-{max(rounds)})" if len(rounds) > 1 else ""
            lines.append(f"| {label} | {p['ns_per_run']:.0f}{spread} | {p['runs_per_s']:,.0f} | "
                         f"{p['cpu_pct_of_one_core']:.1f} |")
    split = [(label, p["split"]) for label, p in prof if p.get("split")]
    if split:
        lines += ["", "| program (perf, the median profile run) | where its time went: share (ns per run) |",
                  "|---|---|"]
        for label, sp in split:
            lines.append(f"| {label} | " + "; ".join(f"{w} {v[0]:.0%} ({v[1]})" for w, v in sp.items()) + " |")
    return "\n".join(lines)


def _cell(test, scale=1, digits=2):
    """median (min-max) of a test's rounds."""
    vals = [x * scale for x in test.get("gbps_all", [test["gbps"]])]
    med = test["gbps"] * scale
    if len(vals) < 2:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(vals):.{digits}f}-{max(vals):.{digits}f})"


def verdicts(results):
    """One line per tracker path: its TCP ratios against the goal, and from the profile, what
    it adds per run to its hook's pass-through beside what the reference conntrack adds."""
    out = []
    by = {r["path"]: r for r in results}
    for r in results:
        if r["path"] in TARGETS and "baseline" in r:
            goal = TARGETS[r["path"]]
            tcp = [t for t in ("tcp1", "tcp4") if t in r["runs"] and r[t]["ratio"] is not None]
            low = [t for t in tcp if r[t]["ratio"] < goal]
            if tcp:
                out.append(f"{r['path']}: " + (f"keeps >= {goal:.0%} of its pass-through in TCP" if not low else
                                               f"BELOW {goal:.0%} of its pass-through in {', '.join(low)}"))
            ref_path = by.get(r["path"].split("-")[0] + "-ref")
            if ref_path and tcp:
                # the same goal for the minimal conntrack: what any tracking leaves of the hook
                out.append(f"{ref_path['path']} (the reference conntrack, same goal): "
                           + ", ".join(f"{t} {ref_path[t]['ratio']:.0%}" for t in tcp
                                       if ref_path[t].get("ratio") is not None))
            base = by[r["baseline"]]
            refs = [p for p in base.get("profile_extra", []) if p["label"].startswith("reference")]
            if ref_path and ref_path.get("profile"):
                refs = [ref_path["profile"]]
            if r.get("profile") and base.get("profile") and refs:
                pt = base["profile"]["ns_per_run"]
                added, ref_added = r["profile"]["ns_per_run"] - pt, refs[0]["ns_per_run"] - pt
                out.append(f"{r['path']}: adds {added:.0f} ns per run to the pass-through; the reference "
                           f"conntrack adds {ref_added:.0f}" + (f" ({added / ref_added:.2f}x)" if ref_added > 0 else ""))
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
    ap.add_argument("--profile-rounds", type=int, default=3,
                    help="interleaved rounds of the profile runs; the median is reported (default 3)")
    ap.add_argument("--perf", action="store_true",
                    help="during the profile runs, sample with perf and split each program's time: its own "
                         "instructions, the flow lock's section, the hash lookup, the clock, helpers")
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
    if not 1 <= args.seconds <= 60 or not 1 <= args.repeat <= 20 or not 1 <= args.profile_rounds <= 20:
        ap.error("--seconds must be 1-60, --repeat and --profile-rounds 1-20")
    if args.perf and args.no_profile:
        ap.error("--perf samples the profile runs: it cannot go with --no-profile")
    if args.perf and not shutil.which("perf"):
        print("throughput.py: --perf needs perf(1) (apt-get install linux-perf)", file=sys.stderr)
        return 1
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
                                         tests, args.profile_test, args.profile_rounds, args.perf)
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

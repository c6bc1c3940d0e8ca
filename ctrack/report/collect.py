"""Recording what everyone saw, at the same time: builds the lab (ctrack/lab/core.py), runs the
tracker between the hosts (`ctrack run --json -l 2`, its events), the endpoints' kernels' view
(tcpstates and tcprtt, ctrack.observers, in this process), netfilter's conntrack in the routed
topology's router (`conntrack -E -o timestamp,id`), a capture on the tracker's interface
(dumpcap, headers only), ping, and the scenarios' traffic (peer.py in the hosts). Everything it
starts is stopped and everything it builds removed, also on error or Ctrl-C.

Clocks: the tracker's event ts_ns is CLOCK_MONOTONIC, read when the event is sent (the tracker's
per-packet clock is the coarse one; the lag allowance measured below stays as a margin, and each
transition is dated by its packet in the capture where one matches), tcpstates' mono_ns is CLOCK_MONOTONIC; the
capture and conntrack print wall-clock times, turned into CLOCK_MONOTONIC by the offset
measured at the start (time.time_ns() - time.monotonic_ns()).
"""
import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import threading
import time

from ctrack import KERNEL_DIR
from ctrack.lab import net as labnet
from ..errors import CtrackError
from ctrack.lab.core import Lab
from ctrack.lab.scenario import PY, TrackerProcess
from ctrack.engine.pcap import read_capture

PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer.py")
PORT_BASE = 7940   # the report's own ports: other tests' traffic on the lab addresses uses others

# The report's scenarios. plan: client connections (peer.py kinds, KIND:ARG) in order, run
# `parallel` at a time; topology wire (tracker as bump in the wire) or routed (tracker and
# netfilter in the router). Delay and loss are per direction, from the lab's delay line.
SCENARIOS = {
    "basic": dict(topology="wire", delay_ms=0, loss_pct=0, parallel=1,
                  plan=["short", "srvfirst", "halfclose", "abort", "rr:10", "long:2000000", "udp:3"],
                  about="one connection of each kind: client closes, server closes, half-close, "
                        "abort (RST), request/response, bulk, UDP"),
    "mixed": dict(topology="wire", delay_ms=1, loss_pct=0, parallel=8,
                  plan=["short"] * 30 + ["long:20000000"] * 3 + ["abort"] * 5 + ["halfclose"] * 4
                  + ["srvfirst"] * 5 + ["udp:3"] * 5 + ["rr:5"] * 3,
                  about="mixed load: many short connections 8 at a time, long transfers, aborts, "
                        "half-closes, UDP (1 ms each way)"),
    "simclose": dict(topology="wire", delay_ms=10, loss_pct=0, parallel=1, plan=["simclose"] * 3,
                     about="real simultaneous closes: both sockets shut down at one instant, the FINs "
                           "cross in the 10 ms delay line (CLOSING on both kernels)"),
    "delay-1": dict(topology="wire", delay_ms=1, loss_pct=0, parallel=1, ping=True,
                    plan=["rr:20", "rr:20", "long:1000000"], about="RTT: 1 ms each way"),
    "delay-10": dict(topology="wire", delay_ms=10, loss_pct=0, parallel=1, ping=True,
                     plan=["rr:20", "rr:20", "long:1000000"], about="RTT: 10 ms each way"),
    "delay-50": dict(topology="wire", delay_ms=50, loss_pct=0, parallel=2, ping=True,
                     plan=["rr:10", "rr:10", "long:1000000"], about="RTT: 50 ms each way"),
    "loss-1": dict(topology="wire", delay_ms=5, loss_pct=1, parallel=4,
                   plan=["short"] * 12 + ["halfclose"] * 3 + ["long:2000000"] * 2 + ["rr:20"] * 2,
                   about="1% loss each way (5 ms): the tracker runs ahead of a kernel until the "
                         "retransmission"),
    "loss-5": dict(topology="wire", delay_ms=5, loss_pct=5, parallel=4,
                   plan=["short"] * 12 + ["halfclose"] * 3 + ["long:1000000"] * 2 + ["rr:20"] * 2,
                   about="5% loss each way (5 ms)"),
    "routed": dict(topology="routed", delay_ms=5, loss_pct=0, parallel=4,
                   plan=["short"] * 10 + ["srvfirst"] * 3 + ["halfclose"] * 3 + ["abort"] * 3
                   + ["simclose"] * 2 + ["long:5000000"] * 2 + ["udp:3"] * 2,
                   about="routed topology: ctrack observing the router's eth1 beside netfilter's "
                         "conntrack in the same router (5 ms each way)"),
    "routed-loss": dict(topology="routed", delay_ms=5, loss_pct=5, parallel=4,
                        plan=["short"] * 12 + ["halfclose"] * 3 + ["abort"] * 2 + ["long:1000000"] * 2,
                        about="routed topology with 5% loss each way: ctrack and netfilter both assume "
                              "delivery; how far each runs ahead of the kernels"),
}


LAB_PREFIX = "lab:"   # lab:socat-tcp is ctrack-lab's scenario socat-tcp, run with everyone watching


def lab_scenarios():
    """ctrack-lab's validation scenarios (lab/scenarios/), as report scenario names."""
    from ctrack.lab.scenario import scenario_files
    return [LAB_PREFIX + n for n in scenario_files()]


def scenario_names():
    return list(SCENARIOS) + lab_scenarios()


def describe(name):
    if name.startswith(LAB_PREFIX):
        from ctrack.lab.scenario import describe as d, load_scenario
        return d(load_scenario(name[len(LAB_PREFIX):])) + " [ctrack-lab's scenario, its own lab]"
    sc = SCENARIOS[name]
    return sc["about"] + (f" [{sc['topology']}, {sc['delay_ms']} ms each way"
                          + (f", {sc['loss_pct']}% loss" if sc["loss_pct"] else "") + "]")


def wall_offset_ns():
    """CLOCK_REALTIME - CLOCK_MONOTONIC now: turns capture and conntrack times monotonic."""
    samples = []
    for _ in range(5):
        a = time.monotonic_ns()
        w = time.time_ns()
        b = time.monotonic_ns()
        samples.append((b - a, w - (a + b) // 2))
    return min(samples)[1]


# ---- the tracker, possibly a test build -----------------------------------------------------------

def test_kernel_dir(defines, where):
    """A kernel directory whose tracker.c is the real one with extra #defines in front (the
    test-only switches of kernel/tracker.c such as CT_TEST_SKIP_CLOSING, as -D flags would set
    them): the other files are symlinks, so ctrack run finds everything it needs through
    CTRACK_KERNEL_DIR."""
    os.makedirs(where, exist_ok=True)
    for name in os.listdir(KERNEL_DIR):
        dst = os.path.join(where, name)
        if name == "tracker.c" or os.path.lexists(dst):
            continue
        os.symlink(os.path.join(KERNEL_DIR, name), dst)
    with open(os.path.join(where, "tracker.c"), "w") as f:
        for d in defines:
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*(=\w+)?", d):
                raise CtrackError(f"bad --tracker-define {d!r}: want NAME or NAME=VALUE")
            name, _, val = d.partition("=")
            f.write(f"#define {name} {val or 1}\n")
        # a copy, not an #include: BCC takes programs only from the file it compiles
        f.write(f'#line 1 "{os.path.join(KERNEL_DIR, "tracker.c")}"\n')
        with open(os.path.join(KERNEL_DIR, "tracker.c")) as src:
            f.write(src.read())
    return where


class ReportTracker(TrackerProcess):
    """`ctrack run` as the scenario runner starts it, with the interfaces of either topology
    (routed: observing nsr's eth1, which every packet between the hosts crosses) and an
    optional test build."""

    def __init__(self, lab, name, kernel_dir=None, iface=None, netns=None, limit_s=900):
        if iface:
            self.argv = ["ctrack", "run", "-i", iface, "--name", name, "--json", "-l", "2",
                         "--duration", str(limit_s)]
            self.netns = netns
        else:
            super().__init__(lab, name, limit_s=limit_s)
            if lab.topology == "routed":
                self.argv = ["ctrack", "run", "-i", lab.tracker_ifaces[0], "--name", name, "--json",
                             "-l", "2", "--duration", str(limit_s)]
        self.kernel_dir = kernel_dir
        self.events, self.summary, self.proc = [], None, None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._stderr = []

    def start(self, timeout=90):
        old = os.environ.get("CTRACK_KERNEL_DIR")
        if self.kernel_dir:
            os.environ["CTRACK_KERNEL_DIR"] = self.kernel_dir
        try:
            return super().start(timeout)
        finally:
            if self.kernel_dir:
                if old is None:
                    os.environ.pop("CTRACK_KERNEL_DIR", None)
                else:
                    os.environ["CTRACK_KERNEL_DIR"] = old


# ---- the endpoints' kernels --------------------------------------------------------------------

class KernelView:
    """tcpstates (every transition, kept) and tcprtt (per-flow srtt) on the given addresses;
    a thread drains the state events while the traffic runs."""

    def __init__(self, addrs=()):
        from ..observers import Filters, RttObserver, StateObserver
        nets = [a if "/" in a else a + "/32" for a in addrs]
        filt = Filters(laddrs=nets, raddrs=nets) if nets else Filters()
        self.states = StateObserver(filt, ringbuf_pages=256)
        self.rtt = RttObserver(Filters(laddrs=nets, raddrs=nets) if nets else Filters(), flows=True)
        self.events = []
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self.states.start()
        self.rtt.start()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()
        return self

    def _pump(self):
        while not self._stop.is_set():
            got = self.states.poll(100)
            if got:
                self.events.extend(e.as_dict() for e in got)

    def flows(self):
        return [f.as_dict() for f in self.rtt.flows()]

    def lost(self):
        return self.states.lost()

    def close(self):
        self._stop.set()
        if self._thread:
            self._thread.join(2)
        for o in (self.states, self.rtt):
            try:
                o.close()
            except Exception:
                pass


# ---- capture and netfilter -----------------------------------------------------------------------

class Capture:
    """dumpcap on one interface (headers only: 128 bytes), pcap format, into FILE."""

    def __init__(self, netns, iface, path, limit_s=900):
        self.path = path
        self.argv = ["dumpcap", "-q", "-P", "-i", iface, "-s", "128", "-w", path, "-a", f"duration:{limit_s}"]
        self.proc = labnet.popen(netns, self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            end = time.monotonic() + 10
            while time.monotonic() < end:   # dumpcap writes the file header once it captures
                if os.path.exists(path) and os.path.getsize(path) >= 24:
                    return
                if self.proc.poll() is not None:
                    raise CtrackError(f"dumpcap on {iface} failed: {self.proc.stderr.read().strip()[:200]}")
                time.sleep(0.05)
            raise CtrackError(f"dumpcap on {iface} did not start within 10 s")
        except BaseException:
            self.stop()
            raise

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def packets(self, offset_ns):
        """IPv4 TCP/UDP packets in the capture: dicts with mono_ns (see align.py)."""
        out = []
        for fr in read_capture(self.path):
            p = decode_frame(fr.data)
            if p:
                p["mono_ns"] = fr.ts_ns - offset_ns
                out.append(p)
        return out


def decode_frame(data):
    if len(data) < 34 or data[12:14] != b"\x08\x00":
        return None
    ihl = (data[14] & 15) * 4
    proto = data[23]
    total = struct.unpack("!H", data[16:18])[0]
    l4 = 14 + ihl
    if len(data) < l4 + 8 or proto not in (6, 17):
        return None
    sport, dport = struct.unpack("!HH", data[l4:l4 + 4])
    p = {"src": socket.inet_ntoa(data[26:30]), "dst": socket.inet_ntoa(data[30:34]),
         "sport": sport, "dport": dport, "proto": "tcp" if proto == 6 else "udp"}
    if proto == 6 and len(data) >= l4 + 16:
        seq, ack, off, flags, win = struct.unpack("!IIBBH", data[l4 + 4:l4 + 16])
        p.update(seq=seq, ack=ack, win=win, len=max(0, total - ihl - (off >> 4) * 4),
                 flags="".join(c for c, b in zip("FSRPAUEC", range(8)) if flags >> b & 1))
    else:
        p.update(len=max(0, total - ihl - 8), flags="")
    return p


_CT_LINE = re.compile(r"^\s*\[(\d+\.\d+)\]\s+\[(NEW|UPDATE|DESTROY)\]\s+(\w+)\s+\d+\s+(.*)$")
NF_STATES = {"SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT",
             "CLOSE", "SYN_SENT2", "NONE"}


def parse_conntrack_line(line, offset_ns):
    """One `conntrack -E -o timestamp,id` line -> dict, or None. The TCP state is the token
    before the first src= ([DESTROY] lines have none); the original tuple is the first
    src/dst/sport/dport."""
    m = _CT_LINE.match(line)
    if not m:
        return None
    ts, typ, proto, rest = m.groups()
    toks = rest.split()
    state = None
    for t in toks:
        if t.startswith("src="):
            break
        if t in NF_STATES:
            state = t
    kv = {}
    for t in toks:
        k, eq, v = t.partition("=")
        if eq and k not in kv:
            kv[k] = v
    if "src" not in kv:
        return None
    sec, _, frac = ts.partition(".")
    wall_ns = int(sec) * 10**9 + int((frac + "000000000")[:9])
    return {"mono_ns": wall_ns - offset_ns, "type": typ, "proto": proto, "state": state,
            "src": kv.get("src"), "dst": kv.get("dst"), "sport": int(kv.get("sport", 0)),
            "dport": int(kv.get("dport", 0)), "id": kv.get("id")}


class ConntrackEvents:
    """`conntrack -E -o timestamp,id` in the router's namespace; lines kept as they come."""

    def __init__(self, netns):
        self.argv = ["conntrack", "-E", "-o", "timestamp,id"]
        self.proc = labnet.popen(netns, self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()
        try:
            time.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise CtrackError(f"conntrack -E failed: {self.proc.stderr.read().strip()[:200]}")

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def events(self, offset_ns):
        return [e for e in (parse_conntrack_line(l, offset_ns) for l in self.lines) if e]


# ---- running the scenarios ------------------------------------------------------------------------

class Run:
    """One report run: labs built as needed (one per topology), their scenarios in turn."""

    def __init__(self, names, workdir, log=print, tracker_defines=(), lab_prefix="rp"):
        unknown = [n for n in names if n not in SCENARIOS and n not in lab_scenarios()]
        if unknown:
            raise CtrackError(f"no scenario {unknown[0]!r} (have: {', '.join(SCENARIOS)}; --list shows them)")
        self.names, self.workdir, self.log = list(names), workdir, log
        self.tracker_defines = list(tracker_defines)
        self.lab_prefix = lab_prefix
        self.records = {}
        self._undo = []

    def cleanup(self, fn):
        self._undo.append(fn)

    def close(self):
        while self._undo:
            fn = self._undo.pop()
            try:
                fn()
            except Exception:
                pass

    def execute(self):
        try:
            kernel_dir = None
            if self.tracker_defines:
                kernel_dir = test_kernel_dir(self.tracker_defines, os.path.join(self.workdir, "kernel"))
            for topology in ("wire", "routed"):
                mine = [n for n in self.names if n in SCENARIOS and SCENARIOS[n]["topology"] == topology]
                if mine:
                    self._run_topology(topology, mine, kernel_dir)
            labs = [n for n in self.names if n.startswith(LAB_PREFIX)]
            if labs:
                self._run_lab_scenarios(labs, kernel_dir)
        finally:
            self.close()
        return self.records

    def _run_topology(self, topology, names, kernel_dir):
        tag = f"{os.getpid() % 10000}"
        lab = Lab(f"{self.lab_prefix}{'w' if topology == 'wire' else 'r'}{tag}"[:10], topology,
                  conntrack=topology == "routed")
        lab.down()
        self.log(f"lab {lab.name} ({topology}) up")
        lab.up()
        self.cleanup(lab.down)
        client, server = lab.addr("ns1"), lab.addr("ns2")
        kv = KernelView([client, server])
        self.log("tcpstates and tcprtt observers: compiling and attaching")
        kv.start()
        self.cleanup(kv.close)
        tracker_name = f"rep-{lab.name}"
        tracker = ReportTracker(lab, tracker_name, kernel_dir=kernel_dir)
        self.log(f"tracker: {shlex.join(tracker.argv)}" +
                 (f" (test build: {' '.join(self.tracker_defines)})" if kernel_dir else ""))
        self.cleanup(tracker.stop)   # before start: a Ctrl-C while it compiles must stop it too
        tracker.start()
        table = TableReader(tracker_name)
        self.cleanup(table.close)
        lab.flush_neighbours()
        cap_if = lab.tracker_ifaces[0] if topology == "wire" else "eth1"
        pcap = os.path.join(self.workdir, f"capture-{topology}.pcap")
        cap = Capture(lab.tracker_netns, cap_if, pcap)
        self.cleanup(cap.stop)
        nf = ConntrackEvents(lab.spec.conntrack_netns) if topology == "routed" else None
        if nf:
            self.cleanup(nf.stop)
        offset = wall_offset_ns()
        windows = {}
        for i, name in enumerate(names):
            sc = SCENARIOS[name]
            port = PORT_BASE + list(SCENARIOS).index(name)
            self.log(f"scenario {name}: {sc['about']}")
            lab.set_delay(delay_ms=sc["delay_ms"], loss_pct=sc["loss_pct"])
            time.sleep(0.2)
            lost0 = delay_lost(lab)
            t0 = time.monotonic_ns()
            srv = lab.spawn("ns2", [PY, PEER, "server", str(port)], stdout=subprocess.PIPE, text=True)
            if '"listening"' not in (srv.stdout.readline() or ""):
                raise CtrackError(f"the test server in ns2 did not start on port {port}")
            argv = [PY, PEER, "client", f"-j{sc['parallel']}", server, str(port), *sc["plan"]]
            res = lab.exec("ns1", argv, check=False, timeout=240)
            results = [l for l in res.stdout.splitlines() if l.startswith("{")]
            ping = None
            if sc.get("ping"):
                got = lab.ping("ns1", "ns2", count=10, interval=0.05)
                rtts = sorted(got["rtt_ms"])
                ping = rtts[len(rtts) // 2] if rtts else None
            # the last ACKs and the tracker's last events: a few round trips
            time.sleep(0.5 + 6 * sc["delay_ms"] / 1000)
            srv.stop()
            snap = table.snapshot(port)
            lost = delay_lost(lab) - lost0
            windows[name] = (t0, time.monotonic_ns(), port, results, ping, res.stderr.strip()[-300:], snap, lost)
        lab.set_delay(delay_ms=0, loss_pct=0)
        time.sleep(0.3)
        summary = tracker.stop()
        cap.stop()
        if nf:
            nf.stop()
        packets = cap.packets(offset)
        nf_events = nf.events(offset) if nf else None
        kflows = kv.flows()
        kevents = list(kv.events)
        lost = kv.lost()
        tev = tracker.snapshot()
        lag = max(coarse_lag_ms(), 4.0)
        for name, (t0, t1, port, results, ping, err, table, lost_pk) in windows.items():
            sc = SCENARIOS[name]
            def inside(t):
                return t0 <= t <= t1
            self.records[name] = {
                "name": name, "about": sc["about"], "topology": topology, "delay_ms": sc["delay_ms"],
                "loss_pct": sc["loss_pct"], "ports": [port], "start_ns": t0, "end_ns": t1,
                "delay_line_lost": lost_pk,
                "kernel_view": "both",
                "tracker_events": [e for e in tev if inside(e["ts_ns"]) and port in
                                   (e["orig"]["sport"], e["orig"]["dport"])] + table,
                "kernel_events": [e for e in kevents if inside(e["mono_ns"])
                                  and port in (e["lport"], e["rport"])],
                "nf_lines": ([l.rstrip("\n") for l in nf.lines if f"port={port} " in l][:400] if nf else None),
                "nf_events": ([e for e in nf_events if inside(e["mono_ns"]) and port in (e["sport"], e["dport"])]
                              if nf_events is not None else None),
                "packets": [p for p in packets if inside(p["mono_ns"]) and port in (p["sport"], p["dport"])],
                "kernel_rtt": [f for f in kflows if port in (f["lport"], f["rport"])],
                "ping_ms": ping, "workload": [__import__("json").loads(r) for r in results],
                "workload_stderr": err, "tracker_summary": summary, "tcpstates_lost": lost,
                "tracker_argv": tracker.argv, "tracker_defines": self.tracker_defines,
                "tracker_clock": clock_name(tev),
                "tracker_clock_lag_ms": 0 if "precise" in clock_name(tev) else lag,
            }
        self.close()

    def _run_lab_scenarios(self, names, kernel_dir):
        """ctrack-lab's own scenarios, each in its own lab with its own tracker (as `ctrack-lab
        run` does), watched by tcpstates/tcprtt and a capture. Their traffic is partly crafted
        (scapy, hping3): an endpoint with no kernel socket is not compared."""
        from ctrack.lab.scenario import load_scenario
        kv = KernelView(["10.0.0.0/24"])
        self.log("tcpstates and tcprtt observers: compiling and attaching")
        kv.start()
        self.cleanup(kv.close)
        old = os.environ.get("CTRACK_KERNEL_DIR")
        if kernel_dir:
            os.environ["CTRACK_KERNEL_DIR"] = kernel_dir
        try:
            for name in names:
                short = name[len(LAB_PREFIX):]
                mod = load_scenario(short)
                self.log(f"scenario {name}: {describe(name)}")
                sc = watched_scenario(short, mod, self.workdir, self.log)
                offset = wall_offset_ns()
                sc.execute()
                t0, t1 = getattr(sc, "t0", None), getattr(sc, "t1", time.monotonic_ns())
                if t0 is None:
                    raise CtrackError(f"{name} did not start: {sc.error}")
                tev = (sc.tracker.snapshot() if sc.tracker else []) + sc.table
                ports = sorted({e["orig"]["dport"] for e in tev})
                packets = sc.capture.packets(offset)
                lab = getattr(mod, "LAB", {}) or {}
                self.records[name] = {
                    "name": name, "about": describe(name), "topology": "wire",
                    "delay_ms": lab.get("delay_ms", 0), "loss_pct": lab.get("loss_pct", 0),
                    "ports": ports, "start_ns": t0, "end_ns": t1, "kernel_view": "present",
                    "tracker_events": tev,
                    "kernel_events": [e for e in kv.events if t0 <= e["mono_ns"] <= t1
                                      and (e["lport"] in ports or e["rport"] in ports)],
                    "nf_events": None, "packets": packets,
                    "kernel_rtt": [f for f in kv.flows() if f["lport"] in ports or f["rport"] in ports],
                    "ping_ms": None, "workload": [],
                    "tracker_summary": sc.tracker.summary if sc.tracker else None,
                    "tcpstates_lost": kv.lost(), "tracker_argv": sc.tracker.argv if sc.tracker else [],
                    "tracker_defines": self.tracker_defines, "tracker_clock": clock_name(tev),
                    "tracker_clock_lag_ms": max(coarse_lag_ms(), 4.0),
                    "lab_scenario": {"passed": sc.passed, "checks": len(sc.checks),
                                     "unavailable": getattr(sc, "unavailable", None),
                                     "failed": [c.what for c in sc.checks if not c.ok]},
                }
                kv.rtt.clear_flows()
        finally:
            if kernel_dir:
                if old is None:
                    os.environ.pop("CTRACK_KERNEL_DIR", None)
                else:
                    os.environ["CTRACK_KERNEL_DIR"] = old


def watched_scenario(name, mod, workdir, log):
    """ctrack-lab's Scenario with a capture on the tracker's interface once its lab and tracker
    are up, and the tracker's table read just before the scenario stops its tracker."""
    from ctrack.lab.scenario import Scenario

    class Watched(Scenario):
        def _setup(self):
            super()._setup()
            self.reader = TableReader(self.tracker_name)
            self.cleanup(self.reader.close)
            self.capture = Capture(self.lab.tracker_netns, self.lab.tracker_ifaces[0],
                                   os.path.join(workdir, f"capture-{name}.pcap"), limit_s=300)
            self.cleanup(self.capture.stop)
            self.table = []
            self.t0 = time.monotonic_ns()

        def stop_tracker(self):
            self.table = self.reader.snapshot()
            return super().stop_tracker()

        def _teardown(self):
            if (not getattr(self, "table", None) and getattr(self, "reader", None) is not None
                    and self.tracker is not None and self.tracker.summary is None):
                self.table = self.reader.snapshot()
            self.t1 = time.monotonic_ns()
            super()._teardown()
    return Watched(name, mod, None, "tc", log)


def delay_lost(lab):
    """Packets the lab's delay lines dropped so far (their loss), all directions."""
    return sum(s.get("lost", 0) or 0 for s in lab.delay_stats())


class TableReader:
    """The tracker's table (its flows as `ctrack list --json` prints them), as pseudo-events of
    type "table": events come only when a flow's overall state changes, so an endpoint step that
    leaves it alone (one side's CLOSING -> TIME_WAIT while the other is still CLOSING, overall
    LAST_ACK throughout) shows only here. Their time is the snapshot's, not the step's: align.py
    uses them for the sequence, never for timing. Flow objects also carry what newer trackers add
    to flows (rtt, conn_state, history).

    Opened once the tracker runs: opening the pinned maps compiles a BCC program (1.5 s here),
    which must not happen between a scenario's last packet and its tracker's stop (socat-udp's
    2 s timeout would expire meanwhile); a snapshot then takes milliseconds. Falls back to
    `ctrack list --json` when that API is not there."""

    def __init__(self, tracker_name):
        self.name, self.sh = tracker_name, None
        try:
            from ctrack.live import pins
            from ctrack.live.maps import Shared
            self.sh = Shared(pins.find(tracker_name))
        except (ImportError, AttributeError, TypeError, CtrackError, OSError):
            self.sh = None

    def flows(self):
        if self.sh is not None:
            try:
                from ctrack.cli.list import select
                from ctrack.engine.flowfilter import FlowFilter
                from ctrack.engine.flows import flow_object
                _, rows, _ = select(self.sh, FlowFilter(), raw=True)
                return [flow_object(self.sh.key_of(r), self.sh.entry_of(r)) for r in rows]
            except (ImportError, AttributeError, TypeError, CtrackError, OSError):
                pass
        import json
        res = subprocess.run(["ctrack", "list", "--name", self.name, "--json"], capture_output=True,
                             text=True, timeout=30)
        try:
            return json.loads(res.stdout) if res.returncode == 0 else []
        except ValueError:
            return []

    def snapshot(self, port=None):
        t = time.clock_gettime_ns(6)
        return [dict(f, type="table", ts_ns=t, untimed=True) for f in self.flows()
                if port is None or port in (f["orig"]["sport"], f["orig"]["dport"])]

    def close(self):
        if self.sh is not None:
            try:
                self.sh.close()
            except Exception:
                pass
            self.sh = None


def coarse_lag_ms(seconds=0.2):
    """The largest step of CLOCK_MONOTONIC_COARSE seen over a short busy loop, in ms: how far an
    event stamped with it may trail the moment it stands for (a jiffy, more when ticks are
    skipped)."""
    last = time.clock_gettime_ns(6)
    end = time.monotonic() + seconds
    step = 0
    while time.monotonic() < end:
        now = time.clock_gettime_ns(6)
        if now != last:
            step = max(step, now - last)
            last = now
    return round(step / 1e6, 3)


def clock_name(events):
    for k in ("ktime_ns", "mono_ns", "precise_ns"):
        if any(e.get(k) for e in events):
            return f"{k} (precise)"
    return "ts_ns (CLOCK_MONOTONIC, read when each event is sent)"


# ---- a real machine: --host ------------------------------------------------------------------------

def iface_networks(iface):
    """IFACE's addresses with their prefixes ("127.0.0.1/8"): the sockets that can use it."""
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=iface)
        if not idx:
            raise CtrackError(f"no interface {iface!r} here (ip link shows the interfaces)")
        return [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=idx[0])]


def run_host(iface, seconds, workdir, log=print):
    """The tracker observing IFACE for SECONDS, the host's own sockets as the one kernel view."""
    if not os.path.exists(f"/sys/class/net/{iface}"):
        raise CtrackError(f"no interface {iface!r} here (ip link shows the interfaces)")
    nets = iface_networks(iface)
    run = Run([], workdir, log)
    try:
        kv = KernelView()
        log("tcpstates and tcprtt observers: compiling and attaching")
        kv.start()
        run.cleanup(kv.close)
        tracker = ReportTracker(None, f"rep-host{os.getpid() % 10000}", iface=iface, limit_s=int(seconds) + 120)
        log(f"tracker: {shlex.join(tracker.argv)}")
        run.cleanup(tracker.stop)
        tracker.start()
        cap = Capture(None, iface, os.path.join(workdir, "capture-host.pcap"), limit_s=int(seconds) + 60)
        run.cleanup(cap.stop)
        offset = wall_offset_ns()
        t0 = time.monotonic_ns()
        log(f"recording {seconds:g} s on {iface} ({', '.join(nets) or 'no address'}); Ctrl-C ends early")
        try:
            time.sleep(seconds)
        except KeyboardInterrupt:
            log("interrupted: reporting what was recorded")
        t1 = time.monotonic_ns()
        summary = tracker.stop()
        cap.stop()
        rec = {"name": f"host:{iface}", "about": f"this host, {iface}, {seconds:g} s: the host's own "
               "sockets are the one kernel view; the remote ends have none", "topology": "host",
               "delay_ms": 0, "loss_pct": 0, "ports": [], "start_ns": t0, "end_ns": t1,
               "kernel_view": "local", "local_networks": nets, "tracker_events": tracker.snapshot(),
               # what the kernels did while the tracker watched (a connection cut by the end of the
               # recording is compared up to there on both sides)
               "kernel_events": [e for e in kv.events if t0 <= e["mono_ns"] <= t1], "nf_events": None,
               "packets": cap.packets(offset), "kernel_rtt": kv.flows(), "ping_ms": None,
               "workload": [], "tracker_summary": summary, "tcpstates_lost": kv.lost(),
               "tracker_argv": tracker.argv, "tracker_defines": [],
               "tracker_clock": clock_name(tracker.snapshot()),
               "tracker_clock_lag_ms": 0 if "precise" in clock_name(tracker.snapshot()) else max(coarse_lag_ms(), 4.0)}
        return {rec["name"]: rec}
    finally:
        run.close()

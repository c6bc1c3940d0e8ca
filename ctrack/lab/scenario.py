"""`ctrack-lab run SCENARIO`: validation scenarios. Each scenario (a small module under
lab/scenarios/) builds its own namespace lab, starts `ctrack run` on it, drives real, bounded
traffic, and compares what the tracker reported (events, summary) with what must happen; the
runner prints a verdict table, tears everything down, and exits 1 when the tracker disagrees,
2 when a scenario could not run as designed (a kernel feature it needs is missing here: that
says nothing about the tracker's correctness, and is worded differently).

A scenario module holds:

    \"\"\"first line: what it shows (for --list); the rest: why, what is checked\"\"\"
    CODE = "ip"                       # short, unique: lab and tracker names are CODE + pid
    LAB = {"delay_ms": 0}             # keyword arguments of ctrack.lab.core.Lab (optional)
    TRACKER = {"timeouts": {"UDP_ESTABLISHED": 2}, "policy": "observe"}   # (optional)
    NEEDS = ("collector",)            # what the design relies on (optional; see FEATURES)
    def run(s): ...                   # s: a Scenario; traffic and s.check(...) calls

Helpers a scenario gets from s: s.lab, s.tracker (events as they arrive, summary once stopped),
s.check(), s.note(), s.sniff() (a packet capture in a host, for sequence numbers and proof of
delivery), s.echo_connection() (a live socat TCP echo connection), s.hping(), s.cleanup().
"""
import glob
import importlib.util
import json
import os
import queue
import select
import shlex
import signal
import subprocess
import sys
import threading
import time

from . import net
from ctrack.errors import CtrackError
from .core import Lab
from ctrack.resources import SCENARIO_DIR

PY = "/usr/bin/python3"   # the only python that imports BCC; helpers use it too

OK, BAD = "\u2713", "\u2717"
EXIT_DISAGREES, EXIT_UNAVAILABLE = 1, 2


class Unavailable(CtrackError):
    """The scenario cannot run as designed here: a feature it needs is missing."""


def _collector_missing(banner):
    """Why `ctrack run` has no collector, from its "Tracking ..." banner; None when it has one."""
    import re
    m = re.search(r"((?i:no collector)[^\n]*?)\.(?: XDP sees| Hit Ctrl-C)", banner)
    return m.group(1) if m else None


# What a scenario may need (NEEDS), and how to tell it is missing: feature -> f(tracker) giving
# the reason it is missing, or None.
FEATURES = {"collector": lambda tracker: _collector_missing(tracker.banner)}


# ---- scenario discovery ---------------------------------------------------------------------

def scenario_files():
    """{name: path}: lab/scenarios/iperf3_tcp.py is scenario "iperf3-tcp"."""
    out = {}
    for path in sorted(glob.glob(os.path.join(SCENARIO_DIR, "*.py"))):
        base = os.path.basename(path)[:-3]
        if base.startswith("_"):
            continue
        out[base.replace("_", "-")] = path
    return out


def load_scenario(name):
    files = scenario_files()
    if name not in files:
        raise CtrackError(f"no scenario {name!r} (have: {', '.join(files) or 'none'}; see --list)")
    spec = importlib.util.spec_from_file_location(f"ctrack_scenario_{name.replace('-', '_')}", files[name])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not callable(getattr(mod, "run", None)) or not getattr(mod, "CODE", None):
        raise CtrackError(f"scenario {name} ({files[name]}) lacks run(s) or CODE")
    return mod


def describe(mod):
    doc = (mod.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


# ---- the tracker under test -------------------------------------------------------------------

def coarse_ns():
    """The tracker's clock (CLOCK_MONOTONIC_COARSE), to compare with event timestamps."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC_COARSE)


class TrackerProcess:
    """`ctrack run --json -l 2` on the lab's tracker interfaces; a thread collects its events.
    Bounded: -d makes it end by itself even if this process dies."""

    def __init__(self, lab, name, mode="tc", policy="observe", timeouts=None, pickup=None,
                 extra=(), limit_s=180):
        v1, v2 = lab.tracker_ifaces
        self.argv = ["ctrack", "run", "-1", v1, "-2", v2, "--mode", mode, "--policy", policy,
                     "--name", name, "--json", "-l", "2", "--duration", str(limit_s)]
        for state, secs in (timeouts or {}).items():
            self.argv += ["--timeout", f"{state}={secs}"]
        if pickup is not None:   # None: the tracker's default for the policy
            self.argv.append("--pickup" if pickup else "--no-pickup")
        self.argv += list(extra)
        self.netns = lab.tracker_netns
        self.events = []
        self.summary = None
        self.banner = ""
        self.proc = None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._stderr = []

    def start(self, timeout=60):
        self.proc = net.popen(self.netns, self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        # The first stderr line says it is attached ("Tracking ..."), or is the one-line error.
        ready = queue.Queue()
        threading.Thread(target=self._read_stderr, args=(ready,), daemon=True).start()
        try:
            line = ready.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise CtrackError(f"`{shlex.join(self.argv)}` did not start within {timeout} s")
        if "Tracking" not in line:
            self.kill()
            raise CtrackError(f"ctrack run did not start: {line.strip() or 'no output'}")
        self.banner = line.strip()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        return self

    def _read_stderr(self, ready):
        first = True
        for line in self.proc.stderr:
            if first:
                ready.put(line)
                first = False
            else:
                self._stderr.append(line.rstrip())
        if first:
            ready.put("")

    def _read_stdout(self):
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                if "summary" in obj:
                    self.summary = obj["summary"]
                else:
                    self.events.append(obj)
                self._cond.notify_all()

    def snapshot(self):
        with self._lock:
            return list(self.events)

    def wait_for(self, pred, timeout):
        """The first event for which pred(event) is true, waiting up to timeout seconds; None."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.events:
                    if pred(ev):
                        return ev
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def stop(self, timeout=20):
        """SIGINT (the tracker prints its summary and detaches); returns the summary dict."""
        if self.proc is None:
            return self.summary
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        # the reader thread may still be draining the pipe
        with self._cond:
            end = time.monotonic() + 5
            while self.summary is None and time.monotonic() < end:
                self._cond.wait(0.1)
        return self.summary

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def stderr_tail(self):
        return self._stderr[-3:]


# ---- event helpers ------------------------------------------------------------------------------

def flow_id(ev):
    o = ev["orig"]
    return (ev["proto"], o["src"], o["sport"], o["dst"], o["dport"])


def flow_text(fid):
    proto, src, sport, dst, dport = fid
    return f"{proto} {src}:{sport} > {dst}:{dport}"


def group_flows(events, proto=None, dport=None):
    """Events by flow, in order of each flow's first event: [(flow id, [events])]. A flow that
    closed and opened again (same 5-tuple) is split at its `new` event."""
    flows = []
    current = {}
    for ev in events:
        if proto and ev["proto"] != proto:
            continue
        if dport is not None and ev["orig"]["dport"] != dport:
            continue
        fid = flow_id(ev)
        if ev["type"] == "new" or fid not in current:
            current[fid] = []
            flows.append((fid, current[fid]))
        current[fid].append(ev)
    return flows


def steps(evs, endpoints=False):
    """The states a flow went through, one entry per event: "SYN_SENT", ..., "closed:fin" (the
    connection ended), "destroy:timeout" (the entry left the table). With endpoints=True each
    state is STATE (orig/reply), the opener's and responder's states."""
    out = []
    for ev in evs:
        if ev["type"] in ("closed", "destroy"):
            out.append(f"{ev['type']}:{ev['reason']}")
        elif endpoints and ev["orig_state"]:
            out.append(f"{ev['state']} ({ev['orig_state']}/{ev['reply_state']})")
        else:
            out.append(ev["state"])
    return out


def path(evs, endpoints=False):
    """steps() as one line: "SYN_SENT > SYN_RECV > ESTABLISHED > closed:fin"."""
    return " > ".join(steps(evs, endpoints)) or "(no events)"


# ---- helpers run inside lab hosts -----------------------------------------------------------------

# A packet capture on one interface, printing one JSON line per TCP/UDP packet (IPv4) seen in
# either direction. Plain AF_PACKET, no scapy (it takes seconds to import): it must be ready
# before the traffic it watches starts. Bounded by its seconds argument.
_SNIFF = r"""
import ctypes, json, socket, struct, sys, time
iface, port, seconds, mode = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
if mode != "all":
    # A classic BPF socket filter: TCP segments with SYN, FIN or RST always; other segments only
    # when neither port is the quiet one ("q:PORT"), or never ("ctl"). A bulk transfer would
    # otherwise flood this reader and the kernel would drop what matters.
    quiet = int(mode[2:]) if mode.startswith("q:") else None
    code = [(0x28, 0, 0, 12), (0x15, 0, 10, 0x800), (0x30, 0, 0, 23), (0x15, 0, 8, 6),
            (0xb1, 0, 0, 14), (0x50, 0, 0, 27), (0x45, 4, 0, 7)]
    if quiet is None:
        code += [(0x06, 0, 0, 0)] * 4
    else:
        code += [(0x48, 0, 0, 14), (0x15, 3, 0, quiet), (0x48, 0, 0, 16), (0x15, 1, 0, quiet)]
    code += [(0x06, 0, 0, 65535), (0x06, 0, 0, 0)]
    insns = b"".join(struct.pack("HBBI", *c) for c in code)
    buf = ctypes.create_string_buffer(insns, len(insns))
    prog = struct.pack("HxxxxxxP", len(code), ctypes.addressof(buf))
    s.setsockopt(socket.SOL_SOCKET, 26, prog)   # SO_ATTACH_FILTER
s.bind((iface, 0))
s.setblocking(False)
try:   # drop what arrived before the filter was in place
    while True:
        s.recv(65535)
except BlockingIOError:
    pass
s.setblocking(True)
s.settimeout(0.2)
print(json.dumps({"ready": True}), flush=True)
end = time.monotonic() + seconds
while time.monotonic() < end:
    try:
        data, addr = s.recvfrom(65535)
    except socket.timeout:
        continue
    if len(data) < 34 or data[12:14] != b"\x08\x00":
        continue
    ihl = (data[14] & 15) * 4
    proto = data[23]
    src, dst = socket.inet_ntoa(data[26:30]), socket.inet_ntoa(data[30:34])
    total = struct.unpack("!H", data[16:18])[0]
    l4 = 14 + ihl
    sport, dport = struct.unpack("!HH", data[l4:l4 + 4])
    if port and port not in (sport, dport):
        continue
    rec = {"t": time.monotonic(), "out": addr[2] == socket.PACKET_OUTGOING, "src": src, "dst": dst,
           "sport": sport, "dport": dport, "ipid": struct.unpack("!H", data[18:20])[0]}
    if proto == 6:
        seq, ack, off, flags, win = struct.unpack("!IIBBH", data[l4 + 4:l4 + 16])
        doff = (off >> 4) * 4
        rec.update(proto="tcp", seq=seq, ack=ack, win=win, len=max(0, total - ihl - doff),
                   flags="".join(c for c, b in zip("FSRPAUEC", range(8)) if flags >> b & 1),
                   opts=data[l4 + 20:l4 + doff].hex())
    elif proto == 17:
        rec.update(proto="udp", len=max(0, total - ihl - 8))
    else:
        continue
    print(json.dumps(rec), flush=True)
"""


class Sniffer:
    """Packets seen on a host's interface (both directions), collected by a thread."""

    def __init__(self, lab, host, port=0, seconds=30, ctl_only=False, quiet_port=None):
        mode = "ctl" if ctl_only else f"q:{quiet_port}" if quiet_port else "all"
        self.proc = lab.spawn(host, [PY, "-c", _SNIFF, lab.ifname(host), str(port), str(seconds), mode],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.packets = []
        self._lock = threading.Lock()
        first = self.proc.stdout.readline()
        if '"ready"' not in first:
            self.proc.stop()
            raise CtrackError(f"the packet capture in {host} did not start")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                self.packets.append(rec)

    def next_seq(self, sport, dport):
        """What the sport side sends next, as captured: the furthest seq + len (+1 for SYN and
        FIN) of its segments, modulo 2^32; RSTs are left out (scenarios spoof them)."""
        best = None
        for p in self.seen(lambda p: p["proto"] == "tcp" and p["sport"] == sport
                           and p["dport"] == dport and "R" not in p["flags"]):
            end = (p["seq"] + p["len"] + ("S" in p["flags"]) + ("F" in p["flags"])) % 2**32
            if best is None or (end - best) % 2**32 < 2**31:
                best = end
        return best

    def seen(self, pred=lambda p: True):
        with self._lock:
            return [p for p in self.packets if pred(p)]

    def last(self, pred):
        got = self.seen(pred)
        return got[-1] if got else None

    def stop(self):
        self.proc.stop(timeout=2)


def wait_listening(lab, host, port, udp=False, timeout=5.0):
    """Wait until something in HOST listens on PORT (ss), so a client's first SYN is answered:
    a client retrying after a refused connect would leave an extra, reset flow in the tracker."""
    end = time.monotonic() + timeout
    flag = "-Hlun" if udp else "-Hltn"
    while time.monotonic() < end:
        res = lab.exec(host, ["ss", flag, f"sport = :{port}"], check=False, timeout=5)
        if res.stdout.strip():
            return True
        time.sleep(0.05)
    raise CtrackError(f"nothing listens on {'udp' if udp else 'tcp'} port {port} in {host} after {timeout:g} s")


class EchoConnection:
    """A live TCP connection through the lab: socat echo server (EXEC:cat) in one host, socat
    client in the other fed through a pipe, so the scenario decides when data moves."""

    def __init__(self, lab, client="ns1", server="ns2", port=7100, timeout=30):
        self.lab, self.port = lab, port
        self.server = lab.spawn(server, ["socat", f"-T{timeout}", f"TCP-LISTEN:{port},reuseaddr", "EXEC:cat"])
        addr = lab.addr(server)
        wait_listening(lab, server, port)
        self.client = lab.spawn(client, ["socat", f"-T{timeout}", "-", f"TCP:{addr}:{port}"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def exchange(self, payload=b"ping\n", timeout=3.0):
        """Send payload, return what came back within timeout (b"" when nothing did)."""
        try:
            self.client.popen.stdin.write(payload)
            self.client.popen.stdin.flush()
        except (BrokenPipeError, OSError):
            return b""
        got = b""
        fd = self.client.popen.stdout.fileno()
        end = time.monotonic() + timeout
        while len(got) < len(payload):
            left = end - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            got += chunk
        return got

    def close(self):
        for p in (self.client, self.server):
            p.stop(timeout=2)


# ---- one scenario run ---------------------------------------------------------------------------

class Check:
    """One comparison. expected/seen are text, or lists of text (a sequence of states, printed
    one step a line side by side)."""

    def __init__(self, what, expected, seen, ok):
        self.what, self.ok = what, bool(ok)
        self.expected = [str(x) for x in expected] if isinstance(expected, (list, tuple)) else str(expected)
        self.seen = [str(x) for x in seen] if isinstance(seen, (list, tuple)) else str(seen)

    def as_dict(self):
        return {"check": self.what, "expected": self.expected, "seen": self.seen, "ok": self.ok}


class Scenario:
    """One run of one scenario module: lab, tracker, checks, and what to undo."""

    def __init__(self, name, mod, lab_name=None, mode="tc", log=None):
        self.name, self.mod, self.mode = name, mod, mode
        self.lab_name = lab_name or f"{mod.CODE}{os.getpid() % 100000}"
        self.tracker_name = f"sc-{self.lab_name}"
        self.checks, self.notes = [], []
        self.lab = None
        self.tracker = None
        self._undo = []
        self.log = log or (lambda msg: None)
        self.started = None
        self.elapsed = None
        self.error = None
        self.unavailable = None

    # -- what scenarios call --
    def check(self, what, expected, seen, ok=None):
        """Record one comparison; ok defaults to expected == seen. Returns ok."""
        if ok is None:
            ok = expected == seen
        self.checks.append(Check(what, expected, seen, ok))
        c = self.checks[-1]
        self.log(f"  {OK if ok else BAD} {what}: expected {c.expected}, seen {c.seen}")
        return bool(ok)

    def note(self, text):
        """An observation worth printing under the table (not a check)."""
        self.notes.append(text)
        self.log(f"  note: {text}")

    def cleanup(self, fn):
        """Run fn() at teardown (newest first), whatever happened."""
        self._undo.append(fn)
        return fn

    def wait_listening(self, host, port, udp=False):
        return wait_listening(self.lab, host, port, udp)

    def sniff(self, host, port=0, seconds=30, ctl_only=False, quiet_port=None):
        """A capture on HOST's lab interface (TCP/UDP to or from PORT, 0: any); ctl_only keeps
        only SYN/FIN/RST segments, quiet_port only those for connections using that port (a
        bulk transfer's). Records: t, out, src, dst, sport, dport, ipid, proto, and for TCP seq,
        ack, win, len, flags ("S", "SA", "FA", "RA", ...)."""
        sn = Sniffer(self.lab, host, port, seconds, ctl_only, quiet_port)
        self.cleanup(sn.stop)
        return sn

    def echo_connection(self, port=7100, client="ns1", server="ns2"):
        conn = EchoConnection(self.lab, client, server, port)
        self.cleanup(conn.close)
        return conn

    def hping(self, host, args, timeout=10):
        """hping3 ARGS in HOST; returns (output, [reply lines])."""
        res = self.lab.exec(host, ["hping3", *args], check=False, timeout=timeout)
        out = (res.stdout or "") + (res.stderr or "")
        replies = [l for l in out.splitlines() if l.startswith("len=")]
        return out, replies

    def iptables(self, host, rule):
        """Append an iptables rule (a list, without -A) in HOST; removed at teardown."""
        self.lab.exec(host, ["iptables", "-A", *rule])
        self.cleanup(lambda: self.lab.exec(host, ["iptables", "-D", *rule], check=False))

    def list_flows(self):
        """The tracker's table now, from `ctrack list --json` (flow objects as `ctrack replay
        --json` prints them), or None when this ctrack has no `list`."""
        res = subprocess.run(["ctrack", "list", "--name", self.tracker_name, "--json"], capture_output=True,
                             text=True, timeout=30)
        if res.returncode != 0:
            return None
        try:
            return json.loads(res.stdout)
        except ValueError:
            return None

    def stop_tracker(self):
        """Stop the tracker; its summary (dict of counters)."""
        summary = self.tracker.stop()
        if summary is None:
            raise CtrackError("the tracker printed no summary" +
                              (f": {' / '.join(self.tracker.stderr_tail)}" if self.tracker.stderr_tail else ""))
        return summary

    def flows(self, proto=None, dport=None):
        return group_flows(self.tracker.snapshot(), proto, dport)

    # -- the runner's part --
    def execute(self):
        self.started = time.monotonic()
        try:
            self._setup()
            self.mod.run(self)
        except Unavailable as exc:
            self.unavailable = str(exc)
        except CtrackError as exc:
            self.error = str(exc)
        except Exception as exc:   # a scenario bug is a failed run with its one line, not a trace
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self._teardown()
            self.elapsed = time.monotonic() - self.started
        if self.unavailable:
            self.checks.append(Check("could run as designed", "every feature it needs",
                                     self.unavailable, False))
        elif self.error:
            self.checks.append(Check("scenario ran to the end", "no error", self.error, False))
        if not self.passed and self.tracker is not None and self.tracker.stderr_tail:
            self.notes.append("ctrack run said: " + " / ".join(self.tracker.stderr_tail))
        return self.passed

    @property
    def passed(self):
        return bool(self.checks) and all(c.ok for c in self.checks)

    def _setup(self):
        lab_kw = dict(getattr(self.mod, "LAB", {}) or {})
        self.lab = Lab(self.lab_name, **lab_kw)
        self.lab.down()   # the remains of an earlier run that died with this name
        self.log(f"lab {self.lab_name} up ({lab_kw or 'wire'})")
        self.lab.up()
        if self.mode == "xdp":
            # XDP redirect on veth needs the hosts' ends at tx off gro on (see `ctrack run -h`)
            for h in ("ns1", "ns2"):
                self.lab.exec(h, ["ethtool", "-K", self.lab.ifname(h), "tx", "off", "gro", "on"])
        tk = dict(getattr(self.mod, "TRACKER", {}) or {})
        extra = list(tk.pop("extra", ()))
        self.tracker = TrackerProcess(self.lab, self.tracker_name, mode=self.mode, extra=extra, **tk)
        self.log(f"starting {shlex.join(self.tracker.argv)}")
        self.tracker.start()
        for need in getattr(self.mod, "NEEDS", ()):
            why = FEATURES[need](self.tracker)
            if why:
                raise Unavailable(why)
        self.lab.flush_neighbours()

    def _teardown(self):
        for fn in reversed(self._undo):
            try:
                fn()
            except Exception:
                pass
        self._undo.clear()
        if self.tracker is not None:
            self.tracker.stop()
        if self.lab is not None:
            self.lab.down()

    def result(self):
        return {"scenario": self.name, "passed": self.passed, "unavailable": self.unavailable,
                "lab": self.lab_name, "mode": self.mode,
                "seconds": round(self.elapsed or 0, 1), "checks": [c.as_dict() for c in self.checks],
                "notes": self.notes}


def print_table(s, out=sys.stdout):
    rows = []
    for c in s.checks:
        exp = c.expected if isinstance(c.expected, list) else [c.expected]
        seen = c.seen if isinstance(c.seen, list) else [c.seen]
        for i in range(max(len(exp), len(seen), 1)):
            rows.append(((OK if c.ok else BAD) if i == 0 else " ", c.what if i == 0 else "",
                         exp[i] if i < len(exp) else "", seen[i] if i < len(seen) else ""))
    w1 = max([5] + [len(r[1]) for r in rows])
    w2 = max([8] + [len(r[2]) for r in rows])
    out.write(f"\n{s.name} ({s.mode}): {describe(s.mod)}\n")
    out.write(f"    {'check':<{w1}}  {'expected':<{w2}}  seen\n")
    for mark, what, exp, seen in rows:
        out.write(f"  {mark} {what:<{w1}}  {exp:<{w2}}  {seen}\n".rstrip() + "\n")
    for n in s.notes:
        out.write(f"  note: {n}\n")
    good = sum(c.ok for c in s.checks)
    if s.passed:
        verdict = ""
    elif s.unavailable:
        verdict = "  -- COULD NOT RUN AS DESIGNED here (not a verdict on the tracker)"
    else:
        verdict = "  -- FAILED" if s.error else "  -- THE TRACKER DISAGREES"
    out.write(f"{s.name}: {good}/{len(s.checks)} checks passed in {s.elapsed:.1f} s{verdict}\n")
    out.flush()


def run_scenarios(names, lab_name=None, mode="tc", as_json=False, verbose=False, out=sys.stdout):
    """Run each scenario in turn; print tables (or JSON lines). 0 when all passed; 1 when the
    tracker disagreed or a scenario failed; else 2 when some could not run as designed."""
    mods = [(n, load_scenario(n)) for n in names]
    all_ok, unavailable = True, False
    for i, (name, mod) in enumerate(mods):
        log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if verbose else None
        # several scenarios with one --name: number the labs (each is built and removed in turn)
        lname = lab_name if (lab_name is None or len(mods) == 1) else f"{lab_name[:8]}{i}"
        s = Scenario(name, mod, lname, mode, log)
        s.execute()
        if s.unavailable:
            unavailable = True
        else:
            all_ok &= s.passed
        if as_json:
            out.write(json.dumps(s.result()) + "\n")
            out.flush()
        else:
            print_table(s, out)
    if not all_ok:
        return EXIT_DISAGREES
    return EXIT_UNAVAILABLE if unavailable else 0


def list_scenarios(out=sys.stdout):
    files = scenario_files()
    width = max([8] + [len(n) for n in files])
    for name in files:
        try:
            text = describe(load_scenario(name))
        except CtrackError as exc:
            text = f"(cannot load: {exc})"
        out.write(f"{name:<{width}}  {text}\n")
    return 0


# ---- ctrack-lab run ---------------------------------------------------------------------------

RUN_EXAMPLES = """\
examples:
  ctrack-lab run --list                   # the scenarios and what each shows
  ctrack-lab run socat-tcp                # one scenario: verdict table, exit 1 if the tracker disagrees
  ctrack-lab run iperf3-tcp socat-udp -v  # several, with progress on stderr
  ctrack-lab run all --json               # every scenario, one JSON line each
  ctrack-lab run socat-tcp --mode xdp     # the tracker as XDP (hosts set to tx off gro on)

Each scenario builds its own lab (named CODE+pid unless --name), starts `ctrack run --json -l 2`
on it (tracker sc-LAB), runs bounded traffic, checks the events and the summary against what
must happen, and removes the lab, the tracker and any rule it added, also on failure or Ctrl-C.
Scenarios live in lab/scenarios/ (one module each; see ctrack/lab/scenario.py).
Exit status: 0 every check agreed; 1 the tracker disagreed (or a scenario failed); 2 a scenario
could not run as designed on this machine (a kernel feature it needs is missing: e.g. the
collector, which idle-timeout and socat-udp rely on)."""


def add_parser(sub, formatter):
    """The `run` subcommand of ctrack-lab."""
    p = sub.add_parser("run", help="run validation scenarios (--list shows them)", formatter_class=formatter,
                       description="Run validation scenarios: real traffic through a tracker in a "
                                   "lab, checked against what must happen.", epilog=RUN_EXAMPLES)
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="scenario names, or all")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("-n", "--name", help="lab name (default: the scenario's code + pid)")
    p.add_argument("--mode", choices=("tc", "xdp"), default="tc", help="tracker hook (default tc)")
    p.add_argument("--json", action="store_true", help="one JSON object per scenario")
    p.add_argument("-v", "--verbose", action="store_true", help="progress and each check on stderr")
    p.set_defaults(func=cmd_run)
    return p


def cmd_run(args):
    if args.list:
        return list_scenarios()
    names = list(args.scenarios)
    if not names:
        raise CtrackError("name a scenario (or all): ctrack-lab run --list shows them")
    if names == ["all"]:
        names = list(scenario_files())
    for n in names:
        load_scenario(n)   # unknown names fail before any lab is built
    from .core import labnet_root_check
    labnet_root_check()
    return run_scenarios(names, args.name, args.mode, args.json, args.verbose)

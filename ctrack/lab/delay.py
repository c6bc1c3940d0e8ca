"""Delay and loss on the lab's links, without netem: an iptables NFQUEUE rule in a lab
namespace sends packets to lab/bin/delayline (C, libnetfilter_queue), which holds each one for
the configured time and then lets it go. Where the rule sits is the topology's choice
(ctrack/lab/topo.py explains why it is where packets arrive, not where they leave).

This module knows the units users type, the iptables rules, and how to start, check and read
a delay line; ctrack/lab/core.py records what it made so `down` can undo it."""
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass

from . import net as labnet, state as labstate
from ctrack.errors import CtrackError
from .topo import DELAY_QUEUE
from ctrack.resources import LAB_BIN, LAB_SRC



@dataclass
class DelayConfig:
    """What the delay line does to each packet, per direction (milliseconds, percent)."""
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    seed: int = 1
    # Packets held at most per delay line; more are dropped and counted. 65536 MTU-sized packets
    # are ~180 MB of kernel memory; TCP windows (tcp_wmem, 4 MB a flow) keep real use far lower.
    cap: int = 65536
    keep_order: bool = False  # with jitter: never overtake (default: reorder, like netem)

    @property
    def active(self):
        return self.delay_ms > 0 or self.jitter_ms > 0 or self.loss_pct > 0

    def check(self):
        if self.delay_ms < 0 or self.jitter_ms < 0:
            raise CtrackError("delay and jitter cannot be negative")
        if self.delay_ms > 10000 or self.jitter_ms > 10000:
            raise CtrackError("delay and jitter are limited to 10 s")
        if not 0 <= self.loss_pct <= 100:
            raise CtrackError(f"loss must be between 0% and 100%, not {self.loss_pct}%")
        if not 1 <= self.cap <= 1000000:
            raise CtrackError("the queue cap must be between 1 and 1000000 packets")
        return self

    def describe(self):
        if not self.active:
            return "none"
        parts = [f"{self.delay_ms:g} ms"]
        if self.jitter_ms:
            parts.append(f"+/- {self.jitter_ms:g} ms jitter" + (" (in order)" if self.keep_order else ""))
        if self.loss_pct:
            parts.append(f"{self.loss_pct:g}% loss (seed {self.seed})")
        return ", ".join(parts) + " each way"

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: v for k, v in (d or {}).items() if k in cls.__dataclass_fields__})


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(us|ms|s)?\s*$")


def parse_duration_ms(text):
    """'20ms', '1.5ms', '500us', '0.1s', '20' (milliseconds) -> milliseconds."""
    m = _DURATION.match(str(text))
    if not m:
        raise CtrackError(f"bad duration {text!r}: write it like 20ms, 500us or 0.1s")
    value, unit = float(m.group(1)), m.group(2) or "ms"
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_percent(text):
    """'1%', '0.5%', '2' -> percent."""
    m = re.match(r"^\s*([0-9]*\.?[0-9]+)\s*%?\s*$", str(text))
    if not m:
        raise CtrackError(f"bad percentage {text!r}: write it like 1% or 0.5%")
    return float(m.group(1))


def delayline_binary():
    """The delay line's binary: built by setup.py into an installed package, or in a checkout's
    lab/bin on first need."""
    path = os.path.join(LAB_BIN, "delayline")
    if not os.access(path, os.X_OK) and LAB_SRC and os.path.exists(os.path.join(LAB_SRC, "Makefile")):
        subprocess.run(["make", "-s", "-C", LAB_SRC],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    if not os.access(path, os.X_OK):
        raise CtrackError(f"{path} is not built: run `make -C lab` (needs gcc, libnetfilter-queue-dev, "
                          "libmnl-dev) or `make setup`")
    return path


def require_iptables():
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            raise CtrackError(f"{tool} is not installed: apt-get install iptables")


def iptables(netns, family, args, check=True):
    """Run iptables (family 4) or ip6tables (6) inside NETNS; -w waits for the xtables lock."""
    tool = "iptables" if family == 4 else "ip6tables"
    res = labnet.run(netns, [tool, "-w", "5", *args], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True, timeout=30)
    if check and res.returncode != 0:
        raise CtrackError(f"{tool} {' '.join(args)} in {netns} failed: "
                          f"{res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode}")
    return res.returncode == 0


def queue_rule(point):
    """The rule (table, chain, arguments) that hands a delay point's packets to the delay line.
    --queue-bypass: while no delay line listens (restarting for `set`), packets pass undelayed
    instead of being dropped."""
    return ["-t", "mangle", point.chain, *point.match,
            "-j", "NFQUEUE", "--queue-num", str(DELAY_QUEUE), "--queue-bypass"]


def rule_cmd(op, rule):
    """Turn a recorded rule ['-t', table, chain, args...] into an iptables command: -A/-D."""
    return [rule[0], rule[1], op, *rule[2:]]


def start_line(lab_name, point, config, index):
    """Start one delay line in POINT's namespace, detached (it outlives `ctrack-lab up`), and
    wait until it has bound its queue. Returns the process record for the lab state."""
    binary = delayline_binary()
    os.makedirs(labstate.run_dir(lab_name), exist_ok=True)
    stats = labstate.log_path(lab_name, f"delay-{point.host}.json")
    log = labstate.log_path(lab_name, f"delay-{point.host}.log")
    for p in (stats, log):
        if os.path.exists(p):
            os.unlink(p)
    argv = [binary, "--netns", point.netns, "--queue", str(DELAY_QUEUE),
            "--delay", f"{config.delay_ms * 1000:.0f}us", "--jitter", f"{config.jitter_ms * 1000:.0f}us",
            "--loss", f"{config.loss_pct:g}", "--seed", str(config.seed + index),
            "--cap", str(config.cap), "--stats", stats]
    if config.keep_order:
        argv.append("--keep-order")
    with open(log, "w") as logf:
        # A session of its own: Ctrl-C in the terminal that ran `up` must not reach it.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    record = {"kind": "process", "role": "delayline", "host": point.host, "netns": point.netns,
              "pid": proc.pid, "starttime": labnet.proc_starttime(proc.pid), "stats": stats,
              "log": log, "argv": argv}
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CtrackError(f"the delay line in {point.netns} exited ({proc.returncode}): "
                              f"{_tail(log) or 'no output'}")
        s = read_stats(stats)
        if s and s.get("pid") == proc.pid:
            return record
        time.sleep(0.01)
    labnet.terminate([(proc.pid, record["starttime"])])
    raise CtrackError(f"the delay line in {point.netns} did not bind its queue within 5 s: {_tail(log)}")


def read_stats(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def refresh_stats(record, wait=0.3):
    """Ask a running delay line (SIGUSR1) to rewrite its statistics, and read them."""
    pid = record["pid"]
    if labnet.alive(pid, record.get("starttime")) and labnet.proc_comm(pid) == "delayline":
        before = os.stat(record["stats"]).st_mtime_ns if os.path.exists(record["stats"]) else 0
        try:
            os.kill(pid, 10)  # SIGUSR1
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if os.path.exists(record["stats"]) and os.stat(record["stats"]).st_mtime_ns != before:
                break
            time.sleep(0.01)
    return read_stats(record["stats"])


def stop_line(record):
    """SIGTERM: the delay line lets every held packet go, writes final stats and exits."""
    pid, st = record["pid"], record.get("starttime")
    if labnet.alive(pid, st) and labnet.proc_comm(pid) == "delayline":
        labnet.terminate([(pid, st)], timeout=3.0)


def _tail(path, lines=3):
    try:
        with open(path) as f:
            return " | ".join(f.read().strip().splitlines()[-lines:])
    except OSError:
        return ""

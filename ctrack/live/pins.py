"""Shared state of a running tracker: its maps pinned under /sys/fs/bpf/ctrack/<name>/ and a
description in /run/ctrack/<name>.json (pid, interfaces, mode, policy, timeouts, table size).

Other ctrack processes (list, events, top, gc) find a tracker here. A pin directory whose owner
is gone (killed tracker) is stale: claim() cleans it instead of trusting it.
"""
import json
import os
import sys
import time

from ctrack.errors import CtrackError

PIN_ROOT = "/sys/fs/bpf/ctrack"
RUN_DIR = "/run/ctrack"
PINNED_MAPS = ("flows", "stats", "events", "evict_queue")
DEFAULT_NAME = "default"
# Beside <name>.json: the event bus socket (ctrack/live/eventbus.py) and the collector's status and
# lock (ctrack/live/collector.py); removed with the rest.
RUN_FILES = (".events.sock", ".collector", ".collector.lock")


def _valid_name(name):
    if not name or "/" in name or name.startswith(".") or len(name) > 64:
        raise CtrackError(f"bad tracker name {name!r}: letters, digits, - and _ only")
    return name


def pin_dir(name):
    return os.path.join(PIN_ROOT, _valid_name(name))


def meta_path(name):
    return os.path.join(RUN_DIR, _valid_name(name) + ".json")


def pid_alive(pid):
    """Whether process `pid` still runs. A zombie (killed, not yet reaped by its parent) does
    not: it has closed its maps and ring buffer and will never detach or read anything, yet
    kill(pid, 0) succeeds on it until its parent waits for it."""
    if pid <= 0:
        return False   # kill(0, ...) would signal our own process group
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return _proc_state(pid) not in ("Z", "X", None)


def _proc_state(pid):
    """The state letter of /proc/PID/stat (R, S, D, Z, X, ...), or None when it is gone. The
    command name in parentheses may itself hold spaces and ')': the state follows the last ')'."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return "?"   # unreadable: kill() said it exists, so take it for alive
    rest = stat[stat.rfind(b")") + 1:].split()
    return rest[0].decode() if rest else "?"


def _is_tracker_meta(meta):
    return isinstance(meta, dict) and "pin_dir" in meta and "pid" in meta


def read_meta(name):
    try:
        with open(meta_path(name)) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def remove(name):
    """Unpin everything of tracker `name` and drop its description."""
    d = pin_dir(name)
    if os.path.isdir(d):
        for entry in os.listdir(d):
            try:
                os.unlink(os.path.join(d, entry))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(d)
        except OSError:
            pass
    try:
        os.unlink(meta_path(name))
    except FileNotFoundError:
        pass
    for suffix in RUN_FILES:
        try:
            os.unlink(os.path.join(RUN_DIR, _valid_name(name) + suffix))
        except FileNotFoundError:
            pass


def _clean_stale(name, meta):
    """Remove a dead tracker's pins and description, and what it left attached (a SIGKILLed
    tracker never detached: its programs would go on redirecting or dropping unseen)."""
    removed = []
    if _is_tracker_meta(meta):
        from .attach import remove_orphans   # pyroute2: only when there is something to clean
        rec = meta.get("attached") or {}
        removed = remove_orphans(meta.get("interfaces", []), int(meta["pid"]),
                                 rec.get("xdp"), rec.get("clsact", ()))
    remove(name)
    if removed:
        print(f"ctrack: tracker {name!r} (pid {meta['pid']}) had died without detaching; "
              f"removed its " + ", ".join(removed), file=sys.stderr)


def is_stale(name):
    meta = read_meta(name)
    return meta is None or not pid_alive(int(meta.get("pid", 0)))


def claim(name):
    """Reserve `name` for this process. Refuses when a live tracker has it; cleans stale pins.
    Returns True when stale state was cleaned."""
    d = pin_dir(name)
    meta = read_meta(name)
    if meta and pid_alive(int(meta.get("pid", 0))) and int(meta["pid"]) != os.getpid():
        raise CtrackError(f"a tracker named {name!r} is already running (pid {meta['pid']}, on "
                          f"{', '.join(meta.get('interfaces', []))}); stop it or use --name")
    stale = os.path.isdir(d) or meta is not None
    if stale:
        _clean_stale(name, meta)
    return stale


def publish(name, tracker, info):
    """Pin the tracker's maps and write its description. info: JSON-able dict."""
    from ctrack.bpf.syscall import obj_pin
    d = pin_dir(name)
    os.makedirs(d, exist_ok=True)
    for m in PINNED_MAPS:
        try:
            table = tracker.bpf[m]
        except KeyError:
            continue
        obj_pin(table.map_fd, os.path.join(d, m))
    os.makedirs(RUN_DIR, exist_ok=True)
    meta = dict(info, name=name, pid=os.getpid(), pin_dir=d, started=time.time(),
                started_monotonic_ns=time.monotonic_ns())
    tmp = meta_path(name) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(tmp, meta_path(name))
    return meta


def running(name=None):
    """Descriptions of live trackers (all, or the one named). Stale ones are cleaned up."""
    names = []
    if os.path.isdir(RUN_DIR):
        # other *.json live here too (the lab's lab-NAME.json): only trackers' descriptions
        names += [f[:-5] for f in os.listdir(RUN_DIR)
                  if f.endswith(".json") and _is_tracker_meta(read_meta(f[:-5]))]
    if os.path.isdir(PIN_ROOT):
        names += os.listdir(PIN_ROOT)
    out = []
    for n in sorted(set(names)):
        if name is not None and n != name:
            continue
        if is_stale(n):
            _clean_stale(n, read_meta(n))
            continue
        out.append(read_meta(n))
    return out


def find(name=None):
    """The running tracker to talk to: the one named, or the only one. CtrackError otherwise."""
    live = running(name)
    if not live:
        which = f"named {name!r} " if name else ""
        raise CtrackError(f"no running tracker {which}found (start one with `ctrack run`)")
    if name is None and len(live) > 1:
        raise CtrackError("several trackers are running (" + ", ".join(m["name"] for m in live)
                          + "): choose one with --name")
    return live[0]

"""The lab's memory: /run/ctrack/lab-NAME.json lists everything a lab created, in order, so
`down` removes exactly that (and nothing it did not make), even after a crash half-way through
`up`. The file is rewritten atomically after every step. A per-lab lock file serialises
commands that change the same lab."""
import contextlib
import json
import os
import shutil
import time

from ctrack.errors import CtrackError
from ctrack.live.filelock import try_lock

STATE_DIR = os.environ.get("CTRACK_LAB_DIR", "/run/ctrack")
VERSION = 1


def state_path(name):
    return os.path.join(STATE_DIR, f"lab-{name}.json")


def run_dir(name):
    """A lab's directory for its helpers' files (delay line logs and statistics)."""
    return os.path.join(STATE_DIR, f"lab-{name}")


def log_path(name, what):
    return os.path.join(run_dir(name), what)


def load(name):
    """The recorded state of lab NAME, or None when there is no such lab."""
    try:
        with open(state_path(name)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CtrackError(f"cannot read {state_path(name)}: {exc}") from None


def save(state):
    os.makedirs(STATE_DIR, exist_ok=True)
    path = state_path(state["name"])
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)  # readers see the old file or the new one, never half


def remove(name):
    """Forget lab NAME: its state file, its helpers' directory and its lock file."""
    shutil.rmtree(run_dir(name), ignore_errors=True)
    for path in (state_path(name), state_path(name)[:-5] + ".lock"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def list_names():
    try:
        entries = os.listdir(STATE_DIR)
    except FileNotFoundError:
        return []
    return sorted(e[4:-5] for e in entries if e.startswith("lab-") and e.endswith(".json"))


@contextlib.contextmanager
def locked(name, timeout=30.0):
    """Hold lab NAME's lock: two `up`s of one lab at once would each see it missing. The lock
    file goes when the lab does (no lab, no file left behind); a waiter that then wakes on the
    removed file sees it is no longer the one at the path and takes the new one."""
    os.makedirs(STATE_DIR, exist_ok=True)
    path = state_path(name)[:-5] + ".lock"
    deadline = time.monotonic() + timeout
    while True:
        fd = try_lock(path)
        if fd is None:
            if time.monotonic() > deadline:
                raise CtrackError(f"lab {name!r} is busy (another ctrack-lab holds {path})")
            time.sleep(0.05)
            continue
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)   # locked a file someone removed meanwhile: take the current one
    try:
        yield
    finally:
        if not os.path.exists(state_path(name)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        os.close(fd)

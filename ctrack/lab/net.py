"""Network-namespace plumbing for the lab: enter a namespace, open pyroute2 inside one, write a
namespace's sysctls, run programs in one, find and stop processes living in one.

Everything here works on names under /run/netns (the place `ip netns` uses), so a namespace
made by the lab is visible to `ip netns list` and the other way round."""
import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import time

from pyroute2 import IPRoute
from pyroute2 import netns as _pr_netns

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def netns_path(name):
    return os.path.join(NETNS_DIR, name)


def netns_exists(name):
    return os.path.exists(netns_path(name))


def netns_inode(name):
    """The namespace's identity (inode of its nsfs file), or None when it is gone."""
    try:
        return os.stat(netns_path(name)).st_ino
    except OSError:
        return None


def create_netns(name):
    """Create /run/netns/NAME; refuses to adopt one that exists (it is not ours)."""
    if netns_exists(name):
        raise FileExistsError(name)
    _pr_netns.create(name)


def remove_netns(name):
    if netns_exists(name):
        _pr_netns.remove(name)


def _setns_fd(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def setns(name):
    """Move the calling thread into namespace NAME (used in children before exec)."""
    fd = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns_fd(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def entered(name):
    """Run a block inside namespace NAME (None: stay where we are), then come back.
    setns(2) moves only the calling thread, which is all a block of netlink or /proc/sys
    work needs; sockets opened inside stay bound to NAME after we return."""
    if name is None:
        yield
        return
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(name)
        try:
            yield
        finally:
            _setns_fd(home)
    finally:
        os.close(home)


def ipr(name=None):
    """An IPRoute whose netlink socket lives in namespace NAME (None: ours). Cheaper than
    pyroute2's NetNS, which forks a proxy process per object; close it when done."""
    with entered(name):
        return IPRoute()


def sysctl(name, key, value):
    """Write a sysctl inside namespace NAME. KEY is the path under /proc/sys with slashes
    ("net/ipv6/conf/eth0/accept_dad"), so interface names with dots need no escaping.
    The net/ tree shows the namespace of the thread that opens the file."""
    with entered(name):
        with open("/proc/sys/" + key, "w") as f:
            f.write(str(value))


def _preexec(name, then=None):
    def child():
        if name is not None:
            setns(name)
        if then is not None:
            then()
    return child


def popen(name, argv, preexec=None, **kw):
    """subprocess.Popen of ARGV inside namespace NAME (None: ours)."""
    return subprocess.Popen(argv, preexec_fn=_preexec(name, preexec), **kw)


def run(name, argv, **kw):
    """subprocess.run of ARGV inside namespace NAME (None: ours)."""
    return subprocess.run(argv, preexec_fn=_preexec(name), **kw)


def pids_in(name):
    """Processes whose network namespace is NAME (what `ip netns pids` shows)."""
    ino = netns_inode(name)
    if ino is None:
        return []
    want = f"net:[{ino}]"
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/net") == want:
                pids.append(int(entry))
        except OSError:
            continue  # gone, or a kernel thread we may not read
    return sorted(pids)


def proc_starttime(pid):
    """Field 22 of /proc/PID/stat: with the pid, it names one process for its whole life,
    so a recorded pid that the kernel reused is never mistaken for ours."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses; fields after the last ')' are plain.
    return int(stat.rsplit(")", 1)[1].split()[19])


def proc_comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def alive(pid, starttime=None):
    """PID runs (a zombie does not count) and, given STARTTIME, is the process we recorded."""
    st = proc_starttime(pid)
    if st is None or _zombie(pid):
        return False
    return starttime is None or st == starttime


def terminate(pids, timeout=3.0):
    """SIGTERM each pid, wait up to TIMEOUT for all to go, SIGKILL what is left.
    PIDS are (pid, starttime-or-None) pairs so a reused pid is left alone."""
    live = [(p, s) for p, s in pids if alive(p, s)]
    for pid, _ in live:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while live and time.monotonic() < deadline:
        _reap(p for p, _ in live)
        live = [(p, s) for p, s in live if alive(p, s)]
        if live:
            time.sleep(0.02)
    for pid, _ in live:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if live:
        time.sleep(0.05)
        _reap(p for p, _ in live)


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _reap(pids):
    """Collect those of PIDS that are our own exited children (a delay line this process
    started), so they do not linger as zombies; anyone else's child is not ours to reap."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass

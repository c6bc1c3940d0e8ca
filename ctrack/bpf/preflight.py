"""Checks a tool runs before loading BPF: root, bpf(2), a header tree for BCC, tracefs, bpffs.
Each failure raises CtrackError with one line saying what is missing and how to fix it."""
import errno
import os
import platform

from ctrack.errors import CtrackError
from . import syscall

SETUP_HINT = "run `make setup` (as root) in the ctrack checkout"


def require_root():
    if os.geteuid() != 0:
        raise CtrackError("must run as root (BPF programs need CAP_BPF/CAP_NET_ADMIN): try sudo")


def require_bcc():
    """Import BCC, which Debian ships for /usr/bin/python3 only."""
    try:
        import bcc  # noqa: F401
    except ImportError:
        raise CtrackError(
            "the BCC Python module is missing: apt-get install python3-bpfcc, and run ctrack with "
            "Debian's /usr/bin/python3 (" + SETUP_HINT + ")") from None
    return bcc


def require_headers():
    """BCC compiles against /lib/modules/$(uname -r)/build; ctrack's programs read only packet
    bytes, uapi headers and tracepoint arguments, so any recent header tree serves."""
    kdir = f"/lib/modules/{platform.release()}"
    if not os.path.isdir(os.path.join(kdir, "build", "include")):
        raise CtrackError(f"no kernel header tree at {kdir}/build, which BCC needs: {SETUP_HINT}")


def require_bpf_syscall():
    """Probe bpf(2) itself: a kernel without it, or a seccomp/lockdown refusal, fails here."""
    err = syscall.probe()
    if err == errno.ENOSYS:
        raise CtrackError("this kernel has no bpf(2) system call (CONFIG_BPF_SYSCALL is off)")
    if err == errno.EPERM:
        raise CtrackError("bpf(2) is not permitted here (need root / CAP_BPF, or lockdown forbids it)")


def require_bpffs(path="/sys/fs/bpf"):
    if not os.path.ismount(path):
        raise CtrackError(f"bpffs is not mounted at {path}: mount -t bpf bpf {path} ({SETUP_HINT})")


def require_tracefs():
    for p in ("/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"):
        if os.path.isdir(p):
            return p
    raise CtrackError(
        "tracefs is not mounted: mount -t tracefs tracefs /sys/kernel/tracing (" + SETUP_HINT + ")")


def require_btf():
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        raise CtrackError("this kernel exposes no BTF (/sys/kernel/btf/vmlinux); CONFIG_DEBUG_INFO_BTF is needed")


def check_all(tracefs=False, bpffs=False):
    """The checks every BPF-loading tool runs first, in the order a user would fix them."""
    require_root()
    require_bpf_syscall()
    require_bcc()
    require_headers()
    if bpffs:
        require_bpffs()
    if tracefs:
        require_tracefs()

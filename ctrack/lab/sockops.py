"""A sock_ops program (lab/bpf/tcp_exp_option.c) writing an RFC 6994 experimental TCP option into
every segment of the processes of a cgroup v2 child made for the purpose: what the tcp-options
lab scenario puts on the wire.

    with ExpOptionWriter("to1234", exid=0xC7C7) as w:
        lab.spawn("ns2", w.wrap(["socat", ...]))    # the program joins the cgroup, then execs

The cgroup is a child of the unified (v2) hierarchy (/sys/fs/cgroup/unified on this kind of
hybrid system, /sys/fs/cgroup when it is pure v2); close() detaches the program and removes the
cgroup, which its processes must have left (exited) by then: it waits for them a little and says
so when one stays.
"""
import os
import time

from ctrack.errors import CtrackError

SOURCE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "lab", "bpf", "tcp_exp_option.c")
CGROUP2_ROOTS = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")
CGROUP2_MAGIC = 0x63677270


def cgroup2_root():
    """The cgroup v2 mount point, or CtrackError."""
    for path in CGROUP2_ROOTS:
        try:
            if os.path.isfile(os.path.join(path, "cgroup.procs")) and \
                    _fs_magic(path) == CGROUP2_MAGIC:
                return path
        except OSError:
            continue
    raise CtrackError("no cgroup v2 hierarchy (looked at " + ", ".join(CGROUP2_ROOTS) +
                      "): mount one, e.g. `mount -t cgroup2 none /sys/fs/cgroup/unified`")


def _fs_magic(path):
    import ctypes
    import ctypes.util
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    buf = ctypes.create_string_buffer(256)   # struct statfs: f_type first (a long)
    if libc.statfs(path.encode(), buf) != 0:
        raise OSError(ctypes.get_errno(), path)
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


class ExpOptionWriter:
    """The program loaded and attached to a new cgroup named NAME (see module docstring)."""

    def __init__(self, name, exid, kind=253, data_len=2):
        import bcc
        if kind not in (253, 254) or not 0 <= exid <= 0xFFFF or not 0 <= data_len <= 8:
            raise CtrackError("an RFC 6994 option: kind 253 or 254, a 16-bit ExID, 0-8 data bytes")
        self.kind, self.exid, self.data_len = kind, exid, data_len
        self.path = os.path.join(cgroup2_root(), f"ctrack-{name}")
        self.bpf = self.fd = self.fn = None
        try:
            os.mkdir(self.path)
        except FileExistsError:
            self._remove_cgroup()   # a dead run's: empty by now, or refused below
            os.mkdir(self.path)
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
            self.bpf = bcc.BPF(src_file=SOURCE.encode(), cflags=[
                f"-DLAB_OPT_KIND={kind}", f"-DLAB_OPT_EXID={exid:#x}", f"-DLAB_OPT_DATA_LEN={data_len}"])
            self.fn = self.bpf.load_func("tcp_exp_option", bcc.BPF.SOCK_OPS)
            self.bpf.attach_func(self.fn, self.fd, bcc.BPFAttachType.CGROUP_SOCK_OPS)
        except Exception as exc:
            self.close()
            raise CtrackError(f"cannot attach the sock_ops option writer: {exc}") from None

    def option_bytes(self):
        """The option as it must appear on the wire."""
        return bytes([self.kind, 4 + self.data_len, self.exid >> 8, self.exid & 0xFF] +
                     [i + 1 for i in range(self.data_len)])

    def wrap(self, argv):
        """ARGV run inside the cgroup: a shell joins it, then execs the program (so every socket
        the program makes is the cgroup's from the start)."""
        import shlex
        procs = shlex.quote(os.path.join(self.path, "cgroup.procs"))
        return ["sh", "-c", f"echo $$ > {procs} && exec {shlex.join(argv)}"]

    def _remove_cgroup(self, wait=3.0):
        end = time.monotonic() + wait
        while True:
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() >= end:
                    with open(os.path.join(self.path, "cgroup.procs")) as f:
                        left = f.read().split()
                    raise CtrackError(f"cgroup {self.path} still holds processes {' '.join(left)}: "
                                      "stop them, then rmdir it") from None
                time.sleep(0.05)

    def close(self):
        if self.bpf is not None:
            import bcc
            if self.fn is not None and self.fd is not None:
                try:
                    self.bpf.detach_func(self.fn, self.fd, bcc.BPFAttachType.CGROUP_SOCK_OPS)
                except Exception:
                    pass
            self.bpf.cleanup()
            self.bpf = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if os.path.isdir(self.path):
            self._remove_cgroup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

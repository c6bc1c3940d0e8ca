"""The one bpf(2) module: the syscall number, the command numbers and attribute layouts ctrack
uses, the raw call, and the object commands (pin, get, info, program statistics, loading XDP with
prog_flags). Everything else in ctrack that talks to bpf(2) directly (batch map operations in
maps.py, test runs in testrun.py, the preflight probe, the observers' statistics, bench/) imports
from here: a number or a layout is written once.

These are the commands BCC 0.26 does not offer (or offers only through Python objects per entry).
Layouts are the kernel's uapi (union bpf_attr), append-only and so stable across versions; every
structure carries trailing padding so the kernel sees zeros past the fields we set."""
import ctypes
import errno
import os
import platform

# bpf(2) is 321 on x86_64 and 280 on the asm-generic table (arm64, riscv, ...).
NR_BPF = 321 if platform.machine() == "x86_64" else 280

# enum bpf_cmd
BPF_PROG_LOAD = 5
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7
BPF_PROG_TEST_RUN = 10
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_MAP_LOOKUP_BATCH = 24
BPF_MAP_UPDATE_BATCH = 26
BPF_MAP_DELETE_BATCH = 27
BPF_ENABLE_STATS = 32

BPF_PROG_TYPE_XDP = 6
BPF_F_XDP_HAS_FRAGS = 1 << 5
BPF_F_LOCK = 4
BPF_STATS_RUN_TIME = 0

MAP_TYPES = {1: "hash", 2: "array", 6: "percpu_array", 22: "queue", 27: "ringbuf"}

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall


# ---- union bpf_attr members ---------------------------------------------------------------------

class ProgLoadAttr(ctypes.Structure):
    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32),
                ("insns", ctypes.c_uint64), ("license", ctypes.c_uint64),
                ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32),
                ("prog_flags", ctypes.c_uint32), ("prog_name", ctypes.c_char * 16),
                ("prog_ifindex", ctypes.c_uint32), ("expected_attach_type", ctypes.c_uint32),
                ("_rest", ctypes.c_uint8 * 96)]


class ObjAttr(ctypes.Structure):
    """BPF_OBJ_PIN / BPF_OBJ_GET."""
    _fields_ = [("pathname", ctypes.c_uint64), ("bpf_fd", ctypes.c_uint32),
                ("file_flags", ctypes.c_uint32), ("_rest", ctypes.c_uint8 * 32)]


class IdAttr(ctypes.Structure):
    """BPF_PROG_GET_FD_BY_ID (and the other *_GET_FD_BY_ID)."""
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32),
                ("open_flags", ctypes.c_uint32), ("_rest", ctypes.c_uint8 * 32)]


class InfoAttr(ctypes.Structure):
    """BPF_OBJ_GET_INFO_BY_FD."""
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32),
                ("info", ctypes.c_uint64)]


class BatchAttr(ctypes.Structure):
    """BPF_MAP_*_BATCH."""
    _fields_ = [("in_batch", ctypes.c_uint64), ("out_batch", ctypes.c_uint64),
                ("keys", ctypes.c_uint64), ("values", ctypes.c_uint64),
                ("count", ctypes.c_uint32), ("map_fd", ctypes.c_uint32),
                ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


class TestAttr(ctypes.Structure):
    """BPF_PROG_TEST_RUN (the `test` member, stable since 4.12)."""
    __test__ = False  # not a pytest class
    _fields_ = [
        ("prog_fd", ctypes.c_uint32), ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32), ("data_size_out", ctypes.c_uint32),
        ("data_in", ctypes.c_uint64), ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32), ("duration", ctypes.c_uint32),
        ("ctx_size_in", ctypes.c_uint32), ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64), ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32), ("batch_size", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32 * 4),
    ]


class StatsAttr(ctypes.Structure):
    """BPF_ENABLE_STATS."""
    _fields_ = [("type", ctypes.c_uint32), ("_rest", ctypes.c_uint8 * 12)]


class MapInfo(ctypes.Structure):
    """struct bpf_map_info (the part ctrack reads)."""
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("key_size", ctypes.c_uint32), ("value_size", ctypes.c_uint32),
                ("max_entries", ctypes.c_uint32), ("map_flags", ctypes.c_uint32),
                ("name", ctypes.c_char * 16), ("ifindex", ctypes.c_uint32),
                ("btf_vmlinux_value_type_id", ctypes.c_uint32),
                ("netns_dev", ctypes.c_uint64), ("netns_ino", ctypes.c_uint64),
                ("btf_id", ctypes.c_uint32), ("btf_key_type_id", ctypes.c_uint32),
                ("btf_value_type_id", ctypes.c_uint32), ("_pad", ctypes.c_uint32),
                ("map_extra", ctypes.c_uint64)]


# Offsets in struct bpf_prog_info (uapi, append-only so stable): id, run_time_ns, run_cnt.
_PROG_INFO_ID, _PROG_INFO_RUN_TIME_NS, _PROG_INFO_RUN_CNT, _PROG_INFO_SIZE = 4, 192, 200, 232


# ---- the call -----------------------------------------------------------------------------------

def raw(cmd, attr):
    """bpf(cmd, &attr, sizeof attr) as the kernel answers it: the result, or -errno. For callers
    that treat some errors as answers (a batch walk's ENOENT); everyone else uses bpf()."""
    rc = _syscall(NR_BPF, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    return rc if rc >= 0 else -ctypes.get_errno()


def bpf(cmd, attr, what):
    """bpf(2); OSError naming `what` (the command, and the object when there is one) on failure."""
    rc = _syscall(NR_BPF, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc


# ---- objects ------------------------------------------------------------------------------------

def obj_pin(fd, path):
    p = ctypes.create_string_buffer(os.fsencode(path))
    bpf(BPF_OBJ_PIN, ObjAttr(pathname=ctypes.addressof(p), bpf_fd=fd), f"BPF_OBJ_PIN {path}")


def obj_get(path):
    """fd of a pinned object; FileNotFoundError when nothing is pinned there."""
    p = ctypes.create_string_buffer(os.fsencode(path))
    try:
        return bpf(BPF_OBJ_GET, ObjAttr(pathname=ctypes.addressof(p)), f"BPF_OBJ_GET {path}")
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise FileNotFoundError(errno.ENOENT, f"nothing pinned at {path}") from None
        raise


def map_info(fd):
    info = MapInfo()
    a = InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    bpf(BPF_OBJ_GET_INFO_BY_FD, a, "BPF_OBJ_GET_INFO_BY_FD")
    return info


def prog_fd_by_id(prog_id):
    try:
        return bpf(BPF_PROG_GET_FD_BY_ID, IdAttr(id=prog_id), "BPF_PROG_GET_FD_BY_ID")
    except OSError as exc:
        raise OSError(exc.errno, f"no BPF program with id {prog_id}") from None


def prog_stats(fd):
    """(prog id, run_time_ns, run_cnt) of the program behind fd; the counters move only while
    BPF statistics are enabled (see enable_stats)."""
    info = ctypes.create_string_buffer(_PROG_INFO_SIZE)
    bpf(BPF_OBJ_GET_INFO_BY_FD, InfoAttr(fd, _PROG_INFO_SIZE, ctypes.addressof(info)),
        "BPF_OBJ_GET_INFO_BY_FD")
    raw_info = info.raw
    get = lambda off, n: int.from_bytes(raw_info[off:off + n], "little")  # noqa: E731
    return get(_PROG_INFO_ID, 4), get(_PROG_INFO_RUN_TIME_NS, 8), get(_PROG_INFO_RUN_CNT, 8)


class enable_stats:
    """Context manager: BPF run-time statistics on while inside (BPF_ENABLE_STATS: the kernel
    turns them off again when the fd closes, so nothing is left changed even after a crash,
    unlike the kernel.bpf_stats_enabled sysctl)."""

    def __enter__(self):
        self.fd = bpf(BPF_ENABLE_STATS, StatsAttr(type=BPF_STATS_RUN_TIME), "BPF_ENABLE_STATS")
        return self

    def __exit__(self, *exc):
        os.close(self.fd)
        return False


def load_xdp_with_frags(insns, name):
    """Loads already-relocated XDP instructions (BCC's dump_func) as a program that accepts
    multi-buffer frames. Returns the fd; OSError with the verifier's last lines on refusal."""
    buf = ctypes.create_string_buffer(bytes(insns), len(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(64 * 1024)
    a = ProgLoadAttr(prog_type=BPF_PROG_TYPE_XDP, insn_cnt=len(insns) // 8,
                     insns=ctypes.addressof(buf), license=ctypes.addressof(lic),
                     prog_flags=BPF_F_XDP_HAS_FRAGS, prog_name=name.encode()[:15])
    try:
        return bpf(BPF_PROG_LOAD, a, "BPF_PROG_LOAD")
    except OSError:
        # again with the verifier's log, to say why
        a.log_level, a.log_size, a.log_buf = 1, len(log), ctypes.addressof(log)
        try:
            return bpf(BPF_PROG_LOAD, a, "BPF_PROG_LOAD")
        except OSError as exc:
            tail = log.value.decode(errors="replace").strip().splitlines()[-3:]
            raise OSError(exc.errno, f"{os.strerror(exc.errno)}: {' / '.join(tail)}") from None


def probe():
    """0 when bpf(2) exists and this process may use it, else the errno the kernel answered
    (ENOSYS: no bpf(2); EPERM: not permitted). BPF_PROG_LOAD with an all-zero attribute: a
    kernel with bpf(2) that lets us in answers EINVAL."""
    rc = raw(BPF_PROG_LOAD, ProgLoadAttr())
    return -rc if rc in (-errno.ENOSYS, -errno.EPERM) else 0

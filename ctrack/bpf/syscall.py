"""The few bpf(2) commands BCC 0.26 does not offer: loading BCC's compiled instructions with
prog_flags (BPF_F_XDP_HAS_FRAGS), pinning an fd, program info. Layouts are the kernel's uapi
(union bpf_attr), stable across versions."""
import ctypes
import os
import platform

NR_BPF = 321 if platform.machine() == "x86_64" else 280
BPF_PROG_LOAD, BPF_OBJ_PIN, BPF_OBJ_GET, BPF_OBJ_GET_INFO_BY_FD = 5, 6, 7, 15
BPF_PROG_TYPE_XDP = 6
BPF_F_XDP_HAS_FRAGS = 1 << 5

_libc = ctypes.CDLL(None, use_errno=True)


class _ProgLoadAttr(ctypes.Structure):
    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32),
                ("insns", ctypes.c_uint64), ("license", ctypes.c_uint64),
                ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32),
                ("prog_flags", ctypes.c_uint32), ("prog_name", ctypes.c_char * 16),
                ("prog_ifindex", ctypes.c_uint32), ("expected_attach_type", ctypes.c_uint32),
                ("_rest", ctypes.c_uint8 * 96)]


class _ObjAttr(ctypes.Structure):
    _fields_ = [("pathname", ctypes.c_uint64), ("bpf_fd", ctypes.c_uint32),
                ("file_flags", ctypes.c_uint32), ("_rest", ctypes.c_uint8 * 32)]


def _sys(cmd, attr):
    rc = _libc.syscall(NR_BPF, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return rc


def load_xdp_with_frags(insns, name):
    """Loads already-relocated XDP instructions (BCC's dump_func) as a program that accepts
    multi-buffer frames. Returns the fd; OSError with the verifier's last lines on refusal."""
    buf = ctypes.create_string_buffer(bytes(insns), len(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(64 * 1024)
    a = _ProgLoadAttr(prog_type=BPF_PROG_TYPE_XDP, insn_cnt=len(insns) // 8,
                      insns=ctypes.addressof(buf), license=ctypes.addressof(lic),
                      prog_flags=BPF_F_XDP_HAS_FRAGS, prog_name=name.encode()[:15])
    try:
        return _sys(BPF_PROG_LOAD, a)
    except OSError:
        a.log_level, a.log_size, a.log_buf = 1, len(log), ctypes.addressof(log)
        try:
            return _sys(BPF_PROG_LOAD, a)
        except OSError as exc:
            tail = log.value.decode(errors="replace").strip().splitlines()[-3:]
            raise OSError(exc.errno, f"{exc.strerror}: {' / '.join(tail)}") from None


def obj_pin(fd, path):
    p = ctypes.create_string_buffer(path.encode())
    _sys(BPF_OBJ_PIN, _ObjAttr(pathname=ctypes.addressof(p), bpf_fd=fd))


def obj_get(path):
    p = ctypes.create_string_buffer(path.encode())
    return _sys(BPF_OBJ_GET, _ObjAttr(pathname=ctypes.addressof(p)))

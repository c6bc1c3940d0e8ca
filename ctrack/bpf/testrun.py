"""BPF_PROG_TEST_RUN through bpf(2): run a loaded program on one frame, get its return value.

The attribute layout is the kernel's uapi (union bpf_attr, `test` member), stable since 4.12;
ctx fields are left zero, which XDP and SCHED_CLS programs accept.
"""
import ctypes
import os
import platform

_NR_BPF = 321 if platform.machine() == "x86_64" else 280
_BPF_PROG_TEST_RUN = 10
_libc = ctypes.CDLL(None, use_errno=True)


class _TestAttr(ctypes.Structure):
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


class TestRunner:
    """Runs one program fd on frames. Reuses its buffers; not thread-safe."""

    def __init__(self, prog_fd, max_frame=65536 + 256):
        self.fd = prog_fd
        self._out = ctypes.create_string_buffer(max_frame)
        self._attr = _TestAttr()

    def run_at(self, addr_in, size, addr_out):
        """Runs once on `size` bytes at address addr_in (a caller's buffer, no copy in Python);
        what the program left in the packet is written to addr_out (size bytes; may be
        addr_in). Returns the program's return value."""
        a = self._attr
        ctypes.memset(ctypes.addressof(a), 0, ctypes.sizeof(a))
        a.prog_fd = self.fd
        a.data_in, a.data_size_in = addr_in, size
        a.data_out, a.data_size_out = addr_out, size
        a.repeat = 1
        rc = _libc.syscall(_NR_BPF, _BPF_PROG_TEST_RUN, ctypes.byref(a), ctypes.sizeof(a))
        if rc < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"BPF_PROG_TEST_RUN: {os.strerror(err)}")
        return a.retval

    def run(self, frame, repeat=1):
        """Returns (retval, duration_ns_per_run). Raises OSError on refusal."""
        buf = ctypes.create_string_buffer(bytes(frame), len(frame))
        a = self._attr
        ctypes.memset(ctypes.addressof(a), 0, ctypes.sizeof(a))
        a.prog_fd = self.fd
        a.data_in = ctypes.addressof(buf)
        a.data_size_in = len(frame)
        a.data_out = ctypes.addressof(self._out)
        a.data_size_out = len(self._out)
        a.repeat = repeat
        rc = _libc.syscall(_NR_BPF, _BPF_PROG_TEST_RUN, ctypes.byref(a), ctypes.sizeof(a))
        if rc < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"BPF_PROG_TEST_RUN: {os.strerror(err)}")
        return a.retval, a.duration

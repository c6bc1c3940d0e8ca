"""BPF_PROG_TEST_RUN through bpf(2): run a loaded program on one frame, get its return value.

The attribute layout (syscall.TestAttr) is the kernel's uapi, stable since 4.12; ctx fields are
left zero, which XDP and SCHED_CLS programs accept.
"""
import ctypes
import os

from .syscall import BPF_PROG_TEST_RUN, TestAttr, raw


class TestRunner:
    """Runs one program fd on frames. Reuses its buffers; not thread-safe."""

    def __init__(self, prog_fd, max_frame=65536 + 256):
        self.fd = prog_fd
        self._out = ctypes.create_string_buffer(max_frame)
        self._attr = TestAttr()

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
        rc = raw(BPF_PROG_TEST_RUN, a)
        if rc < 0:
            raise OSError(-rc, f"BPF_PROG_TEST_RUN: {os.strerror(-rc)}")
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
        rc = raw(BPF_PROG_TEST_RUN, a)
        if rc < 0:
            raise OSError(-rc, f"BPF_PROG_TEST_RUN: {os.strerror(-rc)}")
        return a.retval, a.duration

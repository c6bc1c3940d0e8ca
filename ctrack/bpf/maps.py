"""bpf(2) map commands BCC 0.26 does not expose usefully: batch lookup/update/delete into
caller-owned buffers (one syscall per thousands of entries, no Python object per entry), and map
info (to check a pinned map is the one we expect, re-exported from syscall.py).

The syscall, the command numbers and the layouts are in syscall.py. Every failure raises OSError
with the command's name.
"""
import ctypes
import errno
import os

from .syscall import (BPF_F_LOCK, BPF_MAP_DELETE_BATCH, BPF_MAP_LOOKUP_BATCH,
                      BPF_MAP_UPDATE_BATCH, MAP_TYPES, BatchAttr, bpf, map_info, obj_get, raw)

__all__ = ["Batch", "MAP_TYPES", "map_info", "obj_get"]


class Batch:
    """Reusable buffers for batch operations on one hash map of (key_size, value_size).

    lookup_all() walks the whole map chunk by chunk and yields (count, keys, values) with the
    buffers filled (valid until the next chunk). Entries deleted or added during the walk may be
    missed or seen once; none is seen twice (the kernel walks bucket by bucket)."""

    def __init__(self, fd, key_size, value_size, chunk=4096):
        self.fd, self.ks, self.vs, self.chunk = fd, key_size, value_size, chunk
        self.keys = ctypes.create_string_buffer(key_size * chunk)
        self.values = ctypes.create_string_buffer(value_size * chunk)
        self._attr = BatchAttr()
        self._in = ctypes.c_uint64(0)
        self._out = ctypes.c_uint64(0)

    def lookup_all(self, lock=False):
        a = self._attr
        first = True
        while True:
            ctypes.memset(ctypes.addressof(a), 0, ctypes.sizeof(a))
            a.map_fd = self.fd
            a.keys = ctypes.addressof(self.keys)
            a.values = ctypes.addressof(self.values)
            a.count = self.chunk
            a.in_batch = 0 if first else ctypes.addressof(self._in)
            a.out_batch = ctypes.addressof(self._out)
            a.elem_flags = BPF_F_LOCK if lock else 0
            rc = raw(BPF_MAP_LOOKUP_BATCH, a)
            err = -rc if rc < 0 else 0
            if rc < 0 and err not in (errno.ENOENT,):
                if err == errno.ENOSPC and self.chunk < (1 << 20):
                    # one bucket holds more entries than a chunk: grow and retry
                    self.__init__(self.fd, self.ks, self.vs, self.chunk * 4)
                    first = True
                    continue
                raise OSError(err, f"BPF_MAP_LOOKUP_BATCH: {os.strerror(err)}")
            if a.count:
                yield a.count, self.keys, self.values
            if err == errno.ENOENT:
                return
            self._in.value = self._out.value
            first = False

    def update(self, keys, values, count):
        """Write count entries (keys, values: ctypes buffers) in one call."""
        a = BatchAttr(keys=ctypes.addressof(keys), values=ctypes.addressof(values), count=count,
                       map_fd=self.fd)
        bpf(BPF_MAP_UPDATE_BATCH, a, "BPF_MAP_UPDATE_BATCH")
        return a.count

    def delete(self, keys, count):
        """Delete count keys in one call; returns how many were deleted before a missing key
        stopped the kernel (ENOENT), so callers delete key by key past that point."""
        a = BatchAttr(keys=ctypes.addressof(keys), count=count, map_fd=self.fd)
        rc = raw(BPF_MAP_DELETE_BATCH, a)
        if rc < 0 and rc != -errno.ENOENT:
            raise OSError(-rc, f"BPF_MAP_DELETE_BATCH: {os.strerror(-rc)}")
        return a.count

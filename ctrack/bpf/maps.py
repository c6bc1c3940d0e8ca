"""bpf(2) map commands BCC 0.26 does not expose usefully: batch lookup/update/delete into
caller-owned buffers (one syscall per thousands of entries, no Python object per entry), and map
info (to check a pinned map is the one we expect).

Layouts are the kernel's uapi (union bpf_attr), stable across versions. Every failure raises
OSError with the command's name.
"""
import ctypes
import errno
import os
import platform

NR_BPF = 321 if platform.machine() == "x86_64" else 280
BPF_OBJ_GET, BPF_OBJ_GET_INFO_BY_FD = 7, 15
BPF_MAP_LOOKUP_BATCH, BPF_MAP_UPDATE_BATCH, BPF_MAP_DELETE_BATCH = 24, 26, 27
BPF_F_LOCK = 4

MAP_TYPES = {1: "hash", 2: "array", 6: "percpu_array", 22: "queue", 27: "ringbuf"}

_libc = ctypes.CDLL(None, use_errno=True)


class _BatchAttr(ctypes.Structure):
    _fields_ = [("in_batch", ctypes.c_uint64), ("out_batch", ctypes.c_uint64),
                ("keys", ctypes.c_uint64), ("values", ctypes.c_uint64),
                ("count", ctypes.c_uint32), ("map_fd", ctypes.c_uint32),
                ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32),
                ("info", ctypes.c_uint64)]


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


class _ObjAttr(ctypes.Structure):
    _fields_ = [("pathname", ctypes.c_uint64), ("bpf_fd", ctypes.c_uint32),
                ("file_flags", ctypes.c_uint32), ("_rest", ctypes.c_uint8 * 32)]


def _sys(cmd, attr, what):
    rc = _libc.syscall(NR_BPF, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc


def obj_get(path):
    """fd of a pinned object; FileNotFoundError when nothing is pinned there."""
    p = ctypes.create_string_buffer(os.fsencode(path))
    try:
        return _sys(BPF_OBJ_GET, _ObjAttr(pathname=ctypes.addressof(p)), f"BPF_OBJ_GET {path}")
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise FileNotFoundError(errno.ENOENT, f"nothing pinned at {path}") from None
        raise


def map_info(fd):
    info = MapInfo()
    a = _InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    _sys(BPF_OBJ_GET_INFO_BY_FD, a, "BPF_OBJ_GET_INFO_BY_FD")
    return info


class Batch:
    """Reusable buffers for batch operations on one hash map of (key_size, value_size).

    lookup_all() walks the whole map chunk by chunk and yields (count, keys, values) with the
    buffers filled (valid until the next chunk). Entries deleted or added during the walk may be
    missed or seen once; none is seen twice (the kernel walks bucket by bucket)."""

    def __init__(self, fd, key_size, value_size, chunk=4096):
        self.fd, self.ks, self.vs, self.chunk = fd, key_size, value_size, chunk
        self.keys = ctypes.create_string_buffer(key_size * chunk)
        self.values = ctypes.create_string_buffer(value_size * chunk)
        self._attr = _BatchAttr()
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
            rc = _libc.syscall(NR_BPF, BPF_MAP_LOOKUP_BATCH, ctypes.byref(a), ctypes.sizeof(a))
            err = ctypes.get_errno() if rc < 0 else 0
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
        a = _BatchAttr(keys=ctypes.addressof(keys), values=ctypes.addressof(values), count=count,
                       map_fd=self.fd)
        _sys(BPF_MAP_UPDATE_BATCH, a, "BPF_MAP_UPDATE_BATCH")
        return a.count

    def delete(self, keys, count):
        """Delete count keys in one call; returns how many were deleted before a missing key
        stopped the kernel (ENOENT), so callers delete key by key past that point."""
        a = _BatchAttr(keys=ctypes.addressof(keys), count=count, map_fd=self.fd)
        rc = _libc.syscall(NR_BPF, BPF_MAP_DELETE_BATCH, ctypes.byref(a), ctypes.sizeof(a))
        if rc < 0 and ctypes.get_errno() != errno.ENOENT:
            err = ctypes.get_errno()
            raise OSError(err, f"BPF_MAP_DELETE_BATCH: {os.strerror(err)}")
        return a.count

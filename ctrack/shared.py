"""A running tracker's pinned maps, opened from another process: the one way every tool reads.

    from ctrack.shared import Shared
    with Shared.open("edge") as sh:            # or Shared.open() for the only tracker
        rows = sh.rows()                       # every entry, decoded fast (FlowRow tuples)
        for key, entry in sh.entries(): ...    # BCC ctypes views, for ctrack.flows.flow_object
        print(sh.stats())                      # the tracker's counters by name
        print(sh.gc_totals())                  # the collector's counters

No second tracker is loaded: ctrack/shared.c declares the tracker's maps with BCC's
BPF_TABLE_PINNED (BCC opens the pins) and includes kernel/ctrack.h, so the ctypes types are
BCC's own, built from the header the tracker was built from. The pinned table's size comes from
the kernel (map info) and its key and value sizes are checked against those types: a tracker
built from another ctrack.h is refused in one line, never misread.

Whole-table reads use batch lookups into reused buffers (ctrack.mapops.Batch) and decode only
the fields tools need with one struct.Struct whose offsets come from the ctypes types.
"""
import ctypes
import os
import struct

from . import pins
from .defs import defs
from .errors import CtrackError
from .mapops import Batch, map_info, obj_get, MAP_TYPES

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shared.c")
ITER_FN = "bpf_iter__bpf_map_elem"


class FlowRow(tuple):
    """One entry, decoded: a plain tuple (cheap for 100,000 rows) with named indexes.

    KEY: the raw key bytes (identity of the entry), then proto, family, addr0, addr1 (16 raw
    bytes each), port0, port1 (host order), state, orig_side, flags, close_reason, first_seen,
    last_seen, expires, orig_state, reply_state, packets0, packets1, bytes0, bytes1 (per
    direction: 0 orig, 1 reply)."""
    __slots__ = ()
    KEY, PROTO, FAMILY, ADDR0, ADDR1, PORT0, PORT1 = range(7)
    STATE, ORIG_SIDE, FLAGS, CLOSE_REASON, FIRST, LAST, EXPIRES = range(7, 14)
    ORIG_STATE, REPLY_STATE, PKTS0, PKTS1, BYTES0, BYTES1 = range(14, 20)


def _field(ctype, name):
    """(offset, ctypes type) of a field."""
    for fname, ftype in ctype._fields_:
        if fname == name:
            return getattr(ctype, fname).offset, ftype
    raise CtrackError(f"{ctype.__name__} has no field {name!r}: kernel/ctrack.h changed")


_CODES = {ctypes.c_uint8: "B", ctypes.c_ubyte: "B", ctypes.c_uint16: "H", ctypes.c_ushort: "H",
          ctypes.c_uint32: "I", ctypes.c_uint: "I", ctypes.c_uint64: "Q", ctypes.c_ulong: "Q",
          ctypes.c_ulonglong: "Q"}


def _code(ftype, size):
    if ftype in _CODES:
        return _CODES[ftype]
    return {1: "B", 2: "H", 4: "I", 8: "Q"}[size]


def _struct_of(parts, total, order):
    """(struct.Struct, perm): reads the (offset, code) parts of a record of `total` bytes in
    offset order, pad bytes skipping the rest; perm[i] is where part i lands in the tuple."""
    fmt, pos = order, 0
    ranked = sorted(range(len(parts)), key=lambda i: parts[i][0])
    for i in ranked:
        off, code = parts[i]
        if off > pos:
            fmt += f"{off - pos}x"
        fmt += code
        pos = off + struct.calcsize("=" + code)
    if total > pos:
        fmt += f"{total - pos}x"
    return struct.Struct(fmt), [ranked.index(i) for i in range(len(parts))]


class RowLayout:
    """Decoders of raw key and entry bytes into FlowRow fields, from BCC's ctypes types."""

    def __init__(self, Key, Entry):
        ks, es = ctypes.sizeof(Key), ctypes.sizeof(Entry)
        addr_off, addr_t = _field(Key, "addr")
        port_off, port_t = _field(Key, "port")
        asize, psize = ctypes.sizeof(addr_t) // 2, ctypes.sizeof(port_t) // 2
        # ports are in network order, so the key is decoded big-endian (addresses are bytes)
        kparts = [(addr_off, f"{asize}s"), (addr_off + asize, f"{asize}s"),
                  (port_off, _code(None, psize)), (port_off + psize, _code(None, psize)),
                  (_field(Key, "proto")[0], "B"), (_field(Key, "family")[0], "B")]
        self.key, self._kperm = _struct_of(kparts, ks, ">")
        eparts = []
        for n in ("state", "orig_side", "flags", "close_reason", "first_seen", "last_seen",
                  "expires"):
            off, ft = _field(Entry, n)
            eparts.append((off, _code(ft, ctypes.sizeof(ft))))
        dir_off, dir_t = _field(Entry, "dir")
        Dir = dir_t._type_
        dsize = ctypes.sizeof(Dir)
        for sub in ("state", "packets", "bytes"):
            off, ft = _field(Dir, sub)
            for i in (0, 1):
                eparts.append((dir_off + i * dsize + off, _code(ft, ctypes.sizeof(ft))))
        self.entry, self._eperm = _struct_of(eparts, es, "=")
        self.key_size, self.entry_size = ks, es

    def rows(self, count, keys, values):
        """FlowRows of `count` entries in raw buffers."""
        ks, es = self.key_size, self.entry_size
        kb = bytes(memoryview(keys)[:count * ks])
        vb = memoryview(values)[:count * es]
        k0, k1, k2, k3, k4, k5 = self._kperm
        p = self._eperm
        out = []
        append = out.append
        for i, kv, ev in zip(range(0, count * ks, ks), self.key.iter_unpack(kb),
                             self.entry.iter_unpack(vb)):
            append(FlowRow((kb[i:i + ks], kv[k4], kv[k5], kv[k0], kv[k1], kv[k2], kv[k3],
                            ev[p[0]], ev[p[1]], ev[p[2]], ev[p[3]], ev[p[4]], ev[p[5]], ev[p[6]],
                            ev[p[7]], ev[p[8]], ev[p[9]], ev[p[10]], ev[p[11]], ev[p[12]])))
        return out


class Shared:
    """The pinned maps of one running tracker (see the module docstring)."""

    def __init__(self, meta):
        from .preflight import require_bcc, require_root
        require_root()
        bcc = require_bcc()
        self.meta = meta
        self.name = meta["name"]
        self.pin_dir = meta.get("pin_dir") or pins.pin_dir(self.name)
        self.defs = defs()
        # Open the pins ourselves first: BCC would silently create (and pin) a fresh map where a
        # pin has vanished (the tracker stopped meanwhile), and we must check the real size.
        fds = {}
        try:
            for m in ("flows", "stats", "events"):
                fds[m] = obj_get(os.path.join(self.pin_dir, m))
        except FileNotFoundError:
            for fd in fds.values():
                os.close(fd)
            raise CtrackError(f"tracker {self.name!r} stopped (its pinned maps are gone)") from None
        try:
            info = map_info(fds["flows"])
        finally:
            for fd in fds.values():
                os.close(fd)
        if MAP_TYPES.get(info.type) != "hash":
            raise CtrackError(f"{self.pin_dir}/flows is not a hash map: not a ctrack tracker's pin")
        self.table_size = info.max_entries
        cflags = ["-I" + os.path.dirname(defs().path), "-Wno-unused-function",
                  f'-DCT_PIN_DIR="{self.pin_dir}"', f"-DCT_TABLE_SIZE={info.max_entries}"]
        try:
            self.bpf = bcc.BPF(src_file=SOURCE.encode(), cflags=cflags)
        except Exception as exc:  # BCC raises bare Exception on compile/open failures
            raise CtrackError(f"cannot open tracker {self.name!r}'s maps: {exc}") from None
        self.flows = self.bpf["flows"]
        self.Key, self.Entry = self.flows.Key, self.flows.Leaf
        self.Event = self.bpf["event_layout"].Leaf
        if (ctypes.sizeof(self.Key), ctypes.sizeof(self.Entry)) != (info.key_size, info.value_size):
            self.close()
            raise CtrackError(
                f"tracker {self.name!r} was built from another kernel/ctrack.h (key/entry "
                f"{info.key_size}/{info.value_size} bytes, this ctrack's "
                f"{ctypes.sizeof(self.Key)}/{ctypes.sizeof(self.Entry)}): use the ctrack that started it")
        self.layout = RowLayout(self.Key, self.Entry)
        self._batch = None
        self._iter = None

    @classmethod
    def open(cls, name=None):
        """The running tracker named NAME (or the only one): CtrackError when there is none."""
        return cls(pins.find(name))

    # ---- reading ----

    def batch(self):
        if self._batch is None:
            self._batch = Batch(self.flows.map_fd, self.layout.key_size, self.layout.entry_size)
        return self._batch

    def rows(self):
        """Every entry of the table (expired ones included: see FlowRow.EXPIRES) as FlowRows."""
        out = []
        for count, keys, values in self.batch().lookup_all():
            out.extend(self.layout.rows(count, keys, values))
        return out

    def entries(self):
        """Every entry as (key, entry) BCC ctypes objects (copies)."""
        K, E = self.Key, self.Entry
        ks, es = self.layout.key_size, self.layout.entry_size
        out = []
        for count, keys, values in self.batch().lookup_all():
            for i in range(count):
                out.append((K.from_buffer_copy(keys, i * ks), E.from_buffer_copy(values, i * es)))
        return out

    def key_of(self, raw):
        """The ctypes key of a FlowRow's raw key bytes."""
        return self.Key.from_buffer_copy(raw)

    def stats(self):
        """The tracker's global counters by name (ctrack.stats.decode_stats)."""
        from .stats import decode_stats
        return decode_stats(self.bpf["stats"], self.defs)

    def gc_totals(self):
        """The collector's counters summed over CPUs: scans, scanned, removed, timeouts,
        flushed, revived, events_lost."""
        t = self.bpf["gc_stats"]
        per_cpu = t[t.Key(0)]
        names = [f for f, _ in t.sLeaf._fields_]
        return {n: sum(getattr(c, n) for c in per_cpu) for n in names}

    def event_reader(self):
        """An EventReader on the pinned ring buffer. Only one reader of a ring buffer gets each
        event: `ctrack run` is that reader and re-publishes (ctrack/eventbus.py); use this only
        for a tracker with no publisher."""
        from .events import EventReader
        return EventReader(self.bpf)

    # ---- the collector's program ----

    def collector(self):
        """(iterator link fd, control table, flush_keys table), loaded on first use."""
        if self._iter is None:
            import bcc
            from .mapops import iter_link
            try:
                fn = self.bpf.load_func(ITER_FN, bcc.BPF.TRACING)
                link = iter_link(fn.fd, self.flows.map_fd)
            except Exception as exc:
                raise CtrackError(f"the kernel refused the collector's iterator: {exc}") from None
            self._iter = (link, self.bpf["gc_ctl"], self.bpf["flush_keys"])
        return self._iter

    def close(self):
        if self._iter is not None:
            os.close(self._iter[0])
            self._iter = None
        if getattr(self, "bpf", None) is not None:
            self.bpf.cleanup()
            self.bpf = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

"""A running tracker's pinned maps, opened from another process: the one way every tool reads.

    from ctrack.live.maps import Shared
    with Shared.open("edge") as sh:            # or Shared.open() for the only tracker
        rows = sh.rows()                       # every entry as a tuple (RowLayout)
        for key, entry in sh.entries(): ...    # BCC ctypes views, for ctrack.engine.flows.flow_object
        print(sh.stats())                      # the tracker's counters by name
        print(sh.gc_totals())                  # the collector's counters

No second tracker is loaded: kernel/collector.c declares the tracker's maps with BCC's
BPF_TABLE_PINNED (BCC opens the pins) and includes kernel/ctrack.h, so the ctypes types are
BCC's own, built from the header the tracker was built from. The pinned table's size comes from
the kernel (map info) and its key and value sizes are checked against those types: a tracker
built from another ctrack.h is refused in one line, never misread.

Whole-table reads use batch lookups into reused buffers (ctrack.bpf.maps.Batch) and decode only
the fields tools need with one struct.Struct whose offsets come from the ctypes types.
"""
import ctypes
import gc
import os
import struct
import threading

from ctrack import KERNEL_DIR

from . import pins
from ctrack.engine.defs import defs
from ctrack.errors import CtrackError
from ctrack.bpf.maps import Batch, map_info, obj_get, MAP_TYPES

SOURCE = os.path.join(KERNEL_DIR, "collector.c")
REMOVE_FN, PASS_DONE_FN = "ct_gc_remove", "ct_gc_pass_done"
REMOVE_EVENTS_FN = "ct_gc_remove_events"   # the same, leaving the events for callers to print


def _field(ctype, name):
    """(offset, ctypes type) of a field."""
    for fname, ftype in ctype._fields_:
        if fname == name:
            return getattr(ctype, fname).offset, ftype
    raise CtrackError(f"{ctype.__name__} has no field {name!r}: kernel/ctrack.h changed")


def _code(size):
    return {1: "B", 2: "H", 4: "I", 8: "Q"}[size]


def _struct_of(parts, total, order):
    """(struct.Struct, names in unpack order) reading the named (name, offset, code) parts of a
    record of `total` bytes in offset order; pad bytes skip the rest."""
    fmt, pos, names = order, 0, []
    for name, off, code in sorted(parts, key=lambda p: p[1]):
        if off > pos:
            fmt += f"{off - pos}x"
        fmt += code
        names.append(name)
        pos = off + struct.calcsize("=" + code)
    if total > pos:
        fmt += f"{total - pos}x"
    return struct.Struct(fmt), names


class RowLayout:
    """Decodes raw keys and entries into rows: plain tuples (cheap by the 100,000), the key's
    fields then the entry's, each part in the kernel's field order. The index of every field
    is an attribute computed from BCC's ctypes types, never a retyped offset:

        PROTO FAMILY ADDR0 ADDR1 (16 raw bytes) PORT0 PORT1 (host order)  -- key sides 0/1
        STATE ORIG_SIDE FLAGS CLOSE_REASON FIRST LAST EXPIRES
        STATE0 STATE1 PKTS0 PKTS1 BYTES0 BYTES1  -- per direction: 0 orig, 1 reply
        SRTT8_0 SRTT8_1 RTTN0 RTTN1              -- passive RTT per direction (struct ct_rtt)
        ZEEK  -- the raw bytes of struct ct_zeek (decoded only for the rows shown: zeek_of)

    and last KEY, the key's raw bytes: the entry's identity (a dict key whose hash Python
    caches, unlike a tuple's), and what a removal or a ctypes view needs."""

    def __init__(self, Key, Entry):
        ks, es = ctypes.sizeof(Key), ctypes.sizeof(Entry)
        addr_off, addr_t = _field(Key, "addr")
        port_off, port_t = _field(Key, "port")
        asize, psize = ctypes.sizeof(addr_t) // 2, ctypes.sizeof(port_t) // 2
        # ports are in network order, so the key is read big-endian (addresses are bytes);
        # the key's pad bytes are zero in every key the tracker makes, so pack() rebuilds it
        kparts = [("ADDR0", addr_off, f"{asize}s"), ("ADDR1", addr_off + asize, f"{asize}s"),
                  ("PORT0", port_off, _code(psize)), ("PORT1", port_off + psize, _code(psize)),
                  ("PROTO", _field(Key, "proto")[0], "B"), ("FAMILY", _field(Key, "family")[0], "B")]
        self.key, knames = _struct_of(kparts, ks, ">")
        eparts = []
        for attr, n in (("STATE", "state"), ("ORIG_SIDE", "orig_side"), ("FLAGS", "flags"),
                        ("CLOSE_REASON", "close_reason"), ("FIRST", "first_seen"),
                        ("LAST", "last_seen"), ("EXPIRES", "expires")):
            off, ft = _field(Entry, n)
            eparts.append((attr, off, _code(ctypes.sizeof(ft))))
        dir_off, dir_t = _field(Entry, "dir")
        dsize = ctypes.sizeof(dir_t._type_)
        for attr, sub in (("STATE", "state"), ("PKTS", "packets"), ("BYTES", "bytes")):
            off, ft = _field(dir_t._type_, sub)
            for i in (0, 1):
                eparts.append((f"{attr}{i}", dir_off + i * dsize + off, _code(ctypes.sizeof(ft))))
        # passive RTT per direction (struct ct_rtt): smoothed x8 and sample count (ctrack.engine.rtt)
        rtt_off, rtt_t = _field(Entry, "rtt")
        rsize = ctypes.sizeof(rtt_t._type_)
        for attr, sub in (("SRTT8_", "srtt8_us"), ("RTTN", "samples")):
            off, ft = _field(rtt_t._type_, sub)
            for i in (0, 1):
                eparts.append((f"{attr}{i}", rtt_off + i * rsize + off, _code(ctypes.sizeof(ft))))
        zoff, zt = _field(Entry, "zeek")
        eparts.append(("ZEEK", zoff, f"{ctypes.sizeof(zt)}s"))
        self.zeek_type = zt
        self.entry, enames = _struct_of(eparts, es, "=")
        self.NKEY = len(knames)
        for i, n in enumerate(knames + enames + ["KEY"]):
            setattr(self, n, i)
        self.RAW = self.KEY + 1   # rows read with raw=True: the entry's raw bytes
        self._raw_key = struct.Struct(f"{ks}s")
        self.key_size, self.entry_size = ks, es

    def rows(self, count, keys, values, raw=False):
        """Rows of `count` entries in raw buffers; raw=True appends each entry's raw bytes
        (for its ctypes view, see Shared.entry_of)."""
        ks, es = self.key_size, self.entry_size
        kb = bytes(memoryview(keys)[:count * ks])
        vb = memoryview(values)[:count * es]
        if raw:
            vbytes = bytes(vb)
            return [k + e + (kb[i * ks:(i + 1) * ks], vbytes[i * es:(i + 1) * es]) for i, k, e in
                    zip(range(count), self.key.iter_unpack(kb), self.entry.iter_unpack(vb))]
        # the raw key as a third struct's one field: cheaper than slicing in Python
        return [k + e + r for k, e, r in
                zip(self.key.iter_unpack(kb), self.entry.iter_unpack(vb), self._raw_key.iter_unpack(kb))]

    def key_bytes(self, row):
        return row[self.KEY]

    def zeek_of(self, row):
        """{"conn_state", "history"} of a row (Zeek's view, ctrack/engine/zeek.py)."""
        from ctrack.engine import zeek
        return zeek.summary(self.zeek_type.from_buffer_copy(row[self.ZEEK]), row[self.PROTO])


class Shared:
    """The pinned maps of one running tracker (see the module docstring)."""

    def __init__(self, meta):
        from ctrack.bpf.preflight import require_bcc, require_root
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
        self._local = threading.local()
        self._progs = {}

    @classmethod
    def open(cls, name=None):
        """The running tracker named NAME (or the only one): CtrackError when there is none."""
        return cls(pins.find(name))

    # ---- reading ----

    def batch(self):
        """Batch-lookup buffers of the calling thread (the metrics server reads from its own)."""
        b = getattr(self._local, "batch", None)
        if b is None:
            b = self._local.batch = Batch(self.flows.map_fd, self.layout.key_size,
                                          self.layout.entry_size)
        return b

    def rows(self, raw=False):
        """Every entry of the table as rows (see RowLayout), expired ones included: an entry
        whose row[layout.EXPIRES] <= the tracker's clock counts as absent. raw=True: each row
        ends with the entry's raw bytes (entry_of)."""
        out = []
        # 100,000 new tuples would set off Python's cyclic collector several times over (they
        # hold no cycles): hold it off for the read, which halves the time
        was = gc.isenabled()
        gc.disable()
        try:
            for count, keys, values in self.batch().lookup_all():
                out.extend(self.layout.rows(count, keys, values, raw))
        finally:
            if was:
                gc.enable()
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

    def key_of(self, row):
        """The ctypes key (struct ct_key) of a row."""
        return self.Key.from_buffer_copy(self.layout.key_bytes(row))

    def entry_of(self, row):
        """The ctypes entry (struct ct_entry) of a row read with raw=True."""
        return self.Entry.from_buffer_copy(row[self.layout.RAW])

    def stats(self):
        """The tracker's global counters by name (ctrack.engine.stats.decode_stats)."""
        from ctrack.engine.stats import decode_stats
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
        event: `ctrack run` is that reader and re-publishes (ctrack/live/eventbus.py); use this only
        for a tracker with no publisher."""
        from ctrack.engine.events import EventReader
        return EventReader(self.bpf)

    # ---- the collector's programs ----

    def collector(self, events=False):
        """(remove program fd, pass-done program fd, control table), loaded on first use: the
        XDP programs of kernel/collector.c, run with BPF_PROG_TEST_RUN (ctrack/live/collector.py).
        events: the remove program that also leaves each candidate's event in gc_out (a second
        program, loaded only by the callers that print what they removed: it costs the
        verifier about as much again)."""
        if events not in self._progs:
            import bcc
            from ctrack.engine.tracker import _StderrCapture
            fds = []
            # BCC prints the verifier's log on a refusal: one line instead, naming what is
            # missing and what it costs (CTRACK_DEBUG=1 shows the log)
            with _StderrCapture() as cap:
                try:
                    for fn in (REMOVE_EVENTS_FN if events else REMOVE_FN, PASS_DONE_FN):
                        fds.append(self.bpf.load_func(fn, bcc.BPF.XDP).fd)
                    failure = None
                except Exception as exc:
                    failure = exc
            if os.environ.get("CTRACK_DEBUG") and cap.text:
                os.write(2, cap.text.encode())
            if failure is not None:
                raise CtrackError(f"the kernel refused the collector's XDP program ({failure}): "
                                  f"no collector, idle flows stay until a packet of the same "
                                  f"flow comes") from None
            self._progs[events] = (fds[0], fds[1], self.bpf["gc_ctl"])
        return self._progs[events]

    def close(self):
        self._progs = {}   # BCC closes the programs' fds
        if getattr(self, "bpf", None) is not None:
            self.bpf.cleanup()
            self.bpf = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

"""Names and numbers shared with the kernel programs, read from kernel/ctrack.h (never retyped).

The one parser of ctrack's C headers: `defs()` parses kernel/ctrack.h once, `defs(OBSERVERS_HEADER)`
the observers' kernel/observers.h, each with the local headers it includes (`#include "x.h"`,
e.g. tcp_states.h, which both share). Every `enum` becomes a dict name -> value (and its
reverse), CT_TIMEOUT_* defaults become seconds by name, and plain numeric macros are kept too.
Struct layouts are not parsed here: they come from the loaded program's maps (BCC builds ctypes
types from the same C).
"""
import functools
import os
import re

from ctrack import KERNEL_DIR

HEADER = os.path.join(KERNEL_DIR, "ctrack.h")
OBSERVERS_HEADER = os.path.join(KERNEL_DIR, "observers.h")

_ENUM_RE = re.compile(r"enum\s+(\w+)\s*\{(.*?)\};", re.S)
_ITEM_RE = re.compile(r"^\s*(\w+)\s*(?:=\s*(-?\w+))?\s*,?", re.M)
_DEFINE_RE = re.compile(r"^#define\s+([A-Z][A-Z0-9_]*)\s+(0x[0-9a-fA-F]+|\d+)\b", re.M)
_INCLUDE_RE = re.compile(r'^#include\s+"([^"]+)"', re.M)


class Enum:
    """One C enum: `e.CT_STATE_SYN_SENT` -> 1, `e.name(1)` -> 'SYN_SENT' (prefix stripped)."""

    def __init__(self, cname, items, prefix):
        self.cname = cname
        self.items = dict(items)
        self.prefix = prefix
        self._by_value = {}
        for k, v in items:
            self._by_value.setdefault(v, k[len(prefix):])

    def __getattr__(self, name):
        try:
            return self.items[name]
        except KeyError:
            raise AttributeError(name) from None

    def name(self, value):
        """Short name of a value ('SYN_SENT'); unknown values print as numbers."""
        return self._by_value.get(value, str(value))

    def value(self, short):
        """Value of a short name, case-insensitive; KeyError if there is none."""
        return self.items[self.prefix + short.upper()]

    def names(self):
        """Short names in value order, without sentinels (*_MAX)."""
        return [k[len(self.prefix):] for k, v in sorted(self.items.items(), key=lambda kv: kv[1])
                if not k.endswith("_MAX")]


def _strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _find(name, here, top):
    """Where the compiler finds `#include "name"`: beside the including file first, then in the
    kernel directory, which every BCC compile of ours passes as -I (a kernel/lib/ header includes
    "ctrack.h" from there)."""
    for d in (here, top):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    return os.path.join(here, name)   # missing: open() names it


def _read(path, seen, top=None):
    """The header's text with its local includes spliced in where they stand (each file once,
    as the include guards would)."""
    path = os.path.realpath(path)
    top = top or os.path.dirname(path)
    if path in seen:
        return ""
    seen.add(path)
    with open(path) as f:
        text = _strip_comments(f.read())
    return _INCLUDE_RE.sub(
        lambda m: _read(_find(m.group(1), os.path.dirname(path), top), seen, top), text)


def _common_prefix(names):
    prefix = os.path.commonprefix(names)
    return prefix[: prefix.rfind("_") + 1] if "_" in prefix else prefix


class Defs:
    """Everything parsed from one header."""

    def __init__(self, path):
        self.path = path
        text = _read(path, set())
        self.enums = {}
        self.macros = {}
        for m in _DEFINE_RE.finditer(text):
            self.macros.setdefault(m.group(1), int(m.group(2), 0))
        for m in _ENUM_RE.finditer(text):
            items, nxt = [], 0
            for im in _ITEM_RE.finditer(m.group(2)):
                name, val = im.group(1), im.group(2)
                if val is not None:
                    nxt = int(val, 0) if re.match(r"-?\d|0x", val) else dict(items)[val]
                items.append((name, nxt))
                nxt += 1
            names = [k for k, _ in items]
            self.enums[m.group(1)] = Enum(m.group(1), items, _common_prefix(names))
        self.timeouts = {k[len("CT_TIMEOUT_"):]: v for k, v in self.macros.items()
                         if k.startswith("CT_TIMEOUT_")}

    def __getattr__(self, name):
        # d.ct_state -> the enum; d.CT_TABLE_SIZE -> the macro
        if name in self.__dict__.get("enums", {}):
            return self.enums[name]
        if name in self.__dict__.get("macros", {}):
            return self.macros[name]
        raise AttributeError(name)


@functools.lru_cache(maxsize=None)
def defs(path=HEADER):
    return Defs(path)

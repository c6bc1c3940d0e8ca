"""The header parser (ctrack/engine/defs.py) and what it derives: no BPF, no root.

Linux's TCP states are defined once (kernel/tcp_states.h) and reach the tracker's Python and
the observers' through the headers that include them."""
import os

from ctrack import KERNEL_DIR
from ctrack.engine.defs import HEADER, OBSERVERS_HEADER, Defs, defs
from ctrack.observers import STATE_NUMBERS, TCP_STATES, state_name


def test_tracker_and_observers_share_one_tcp_state_enum():
    tracker, observers = defs().ct_tcp_endpoint, defs(OBSERVERS_HEADER).ct_tcp_endpoint
    assert tracker.items == observers.items
    # the observers' names are the tracker's, without its "not known yet"
    assert TCP_STATES == {v: tracker.name(v) for v in tracker.items.values() if v}
    assert STATE_NUMBERS["TIME_WAIT"] == tracker.CT_TCP_TIME_WAIT
    assert state_name(99) == "STATE_99"


def test_tcp_states_are_enumerated_in_one_header_only():
    holders = []
    for name in sorted(os.listdir(KERNEL_DIR)):
        if name.endswith((".h", ".c")):
            with open(os.path.join(KERNEL_DIR, name)) as f:
                text = f.read()
            if "= 12," in text and "NEW_SYN_RECV" in text:
                holders.append(name)
    assert holders == ["tcp_states.h"]


def test_includes_are_followed_once(tmp_path):
    (tmp_path / "a.h").write_text('#include "b.h"\n#include "b.h"\n#define CT_A 1\n')
    (tmp_path / "b.h").write_text('#include "a.h"\nenum e {\n\tE_X = 0,\n\tE_Y,\n};\n#define OBS_B 0x10\n')
    d = Defs(str(tmp_path / "a.h"))
    assert d.e.items == {"E_X": 0, "E_Y": 1} and d.CT_A == 1 and d.OBS_B == 16


def test_macros_of_both_headers():
    assert defs(OBSERVERS_HEADER).OBS_AF_INET6 == 10
    assert defs(HEADER).timeouts  # CT_TIMEOUT_* defaults by name


def test_includes_resolve_as_the_compiler_does():
    # collector.c includes lib/summary.h, which includes "ctrack.h" from the kernel directory
    # (BCC's -I), not from lib/: the parser must find it there, or the collector cannot start
    d = Defs(os.path.join(KERNEL_DIR, "collector.c"))
    assert "CT_GC_RUN_MAX" in d.macros and "CT_TIMEOUT_SYN_SENT" in d.macros
    assert d.ct_tcp_endpoint.items == defs().ct_tcp_endpoint.items

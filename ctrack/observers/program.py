"""Building, loading and measuring the observers' BPF programs (shared by tcpstates and tcprtt).

A program is kernel/<name>.c with a block of #defines in front: the filters the user asked for,
written as C so that a filter not asked for is not in the program at all (BCC style). The full
text is what `--ebpf` prints and what BCC compiles."""
import ctypes
import os
import platform

from ctrack import KERNEL_DIR
from ctrack.bpf import preflight
from ..errors import CtrackError
from .addr import networks_c_expr, parse_networks, parse_ports, ports_c_expr, family_number


class Filters:
    """What a user may restrict an observer to. Every field empty/None means 'everything'."""

    def __init__(self, family=None, lports=(), rports=(), laddrs=(), raddrs=()):
        if family not in (None, 4, 6):
            raise CtrackError(f"bad address family {family!r}: want 4 or 6")
        self.family = family
        self.lports = parse_ports(lports, "local")
        self.rports = parse_ports(rports, "remote")
        self.laddrs = parse_networks(laddrs, "local")
        self.raddrs = parse_networks(raddrs, "remote")
        # With -6 an IPv4 filter still matches IPv4-mapped addresses of IPv6 sockets; with -4
        # an IPv6 filter could match nothing, which is surely a mistake.
        for nets, what in ((self.laddrs, "local"), (self.raddrs, "remote")):
            if family == 4 and any(n.version == 6 for n in nets):
                raise CtrackError(f"an IPv6 {what} address cannot match with -4 (IPv4 only)")

    def defines(self):
        """The #define lines that compile these filters into a program (see kernel/observers.h)."""
        out = []
        if self.family:
            out.append(f"#define OBS_FAMILY {family_number(self.family)}")
        if self.lports:
            out.append(f"#define OBS_LPORT_OK(p) {ports_c_expr(self.lports)}")
        if self.rports:
            out.append(f"#define OBS_RPORT_OK(p) {ports_c_expr(self.rports)}")
        if self.laddrs:
            out.append(f"#define OBS_LADDR_OK(f, a) {networks_c_expr(self.laddrs)}")
        if self.raddrs:
            out.append(f"#define OBS_RADDR_OK(f, a) {networks_c_expr(self.raddrs)}")
        return out


def program_text(name, defines):
    """kernel/<name>.c preceded by the given #define lines."""
    path = os.path.join(KERNEL_DIR, name + ".c")
    with open(path) as f:
        source = f.read()
    head = f"/* ctrack observer {name}: generated settings */\n" + "".join(d + "\n" for d in defines)
    return head + "\n" + source


def check_environment(tracepoint):
    """The one-line errors a user can act on, before BCC prints pages of its own."""
    preflight.check_all(tracefs=True)
    preflight.require_btf()
    events = preflight.require_tracefs()
    if not os.path.isdir(os.path.join(events, tracepoint)):
        raise CtrackError(f"this kernel ({platform.release()}) has no tracepoint {tracepoint.replace('/', ':')}"
                          " (needs Linux 4.16 or later)")


def load(text):
    """Compile and load with BCC; kernel/ is on the include path for observers.h."""
    from bcc import BPF
    try:
        return BPF(text=text.encode(), cflags=["-I" + KERNEL_DIR, "-Wno-unused-function"])
    except Exception as exc:
        raise CtrackError(f"cannot load the BPF program: {str(exc).splitlines()[-1]}") from None


def percpu_sum(table):
    """Sum over CPUs of slot 0 of a BPF_PERCPU_ARRAY (the lost-event counters)."""
    vals = table[ctypes.c_int(0)]
    return sum(int(v) for v in vals)

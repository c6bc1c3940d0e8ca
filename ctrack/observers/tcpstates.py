"""The TCP state-change observer: kernel/tcpstates.c on sock:inet_sock_set_state, as typed events.

    with StateObserver(Filters(lports=[8080])) as obs:
        for ev in obs.events(duration=5):
            print(ev.oldstate, "->", ev.newstate, ev.ms)
"""
import time
from dataclasses import asdict, dataclass
from typing import Optional

from ctrack.text import addr_text

from .base import Observer
from .defs import AF_INET, state_name


@dataclass(frozen=True)
class StateEvent:
    ts: float               # wall-clock time of the transition (seconds since the epoch)
    mono_ns: int            # the same instant, CLOCK_MONOTONIC ns (the kernel's clock)
    skaddr: int             # address of the kernel socket: identifies it while it lives
    pid: Optional[int]      # owning process, None when never seen in process context
    comm: Optional[str]
    family: int             # 4 or 6 (the socket's family: a dual-stack socket is 6)
    laddr: str
    lport: int
    raddr: str
    rport: int
    oldstate: str           # Linux's names: SYN_SENT, ESTABLISHED, FIN_WAIT1, ...
    newstate: str
    ms: Optional[float]     # time spent in oldstate; None when the socket was first seen here

    def as_dict(self):
        """The JSON form: one object per line in `ctrack-tcpstates --json`."""
        d = asdict(self)
        d["skaddr"] = f"{self.skaddr:#x}"
        return d


class StateObserver(Observer):
    program = "tcpstates"
    tracepoint = "sock/inet_sock_set_state"

    def _opened(self):
        self.bpf[b"events"].open_ring_buffer(self._on_record)

    def _on_record(self, ctx, data, size):
        # Decoded with the struct BCC derives from the C (no Python mirror of the layout); the
        # record is only valid during this callback, so it is copied into an event now.
        r = self.bpf[b"events"].event(data)
        self._pending.append(StateEvent(
            ts=self.wall_time(r.ts_ns),
            mono_ns=r.ts_ns,
            skaddr=r.skaddr,
            pid=r.pid or None,
            comm=r.comm.decode("utf-8", "replace") or None,
            family=4 if r.family == AF_INET else 6,
            laddr=addr_text(r.family, r.laddr),
            lport=r.lport,
            raddr=addr_text(r.family, r.raddr),
            rport=r.rport,
            oldstate=state_name(r.oldstate),
            newstate=state_name(r.newstate),
            ms=r.delta_ns / 1e6 if r.have_delta else None,
        ))
        return 0

    def events(self, duration=None, stop=None, poll_ms=100):
        """Yield events as they come, for duration seconds (None: no limit) or until stop()
        returns true; what is still buffered is handed over at the end."""
        end = None if duration is None else time.monotonic() + duration
        while (end is None or time.monotonic() < end) and not (stop and stop()):
            wait = poll_ms if end is None else max(0, min(poll_ms, int((end - time.monotonic()) * 1000)))
            yield from self.poll(wait)
        yield from self.drain()

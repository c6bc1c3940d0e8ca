"""ctrack's observers: the endpoints' kernels' own view of TCP, from tracepoints.

StateObserver yields every TCP state change (sock:inet_sock_set_state); RttObserver builds
histograms and per-connection statistics of the kernel's smoothed RTT (tcp:tcp_probe).
Both read only tracepoint arguments; filters are compiled into the programs."""
from ctrack.bpf.syscall import enable_stats

from .defs import STATE_NUMBERS, TCP_STATES, state_name
from .program import Filters
from .tcprtt import FlowStats, Log2Hist, RttObserver
from .tcpstates import StateEvent, StateObserver

__all__ = ["Filters", "FlowStats", "Log2Hist", "RttObserver", "StateEvent", "StateObserver",
           "STATE_NUMBERS", "TCP_STATES", "state_name", "enable_stats"]

"""Names and numbers the observers' C and Python share, from kernel/observers.h (never retyped),
parsed by ctrack.engine.defs like every header.

TCP_STATES maps Linux's TCP_* numbers to the names Linux prints (ESTABLISHED, SYN_SENT, ...):
enum ct_tcp_endpoint of kernel/tcp_states.h, which the tracker uses too, without its NONE (the
tracker's "not known yet", not a Linux state)."""
from ctrack.engine.defs import OBSERVERS_HEADER, defs

_d = defs(OBSERVERS_HEADER)
_states = _d.ct_tcp_endpoint
TCP_STATES = {v: _states.name(v) for v in sorted(set(_states.items.values()))
              if v != _states.CT_TCP_NONE}
STATE_NUMBERS = {name: num for num, name in TCP_STATES.items()}
AF_INET = _d.OBS_AF_INET
AF_INET6 = _d.OBS_AF_INET6


def state_name(num):
    """The Linux name of a TCP state number; unknown numbers stay visible, not dropped."""
    return TCP_STATES.get(num, f"STATE_{num}")

"""Names and numbers the observers' C and Python share, read from kernel/observers.h (never retyped).

TCP_STATES maps Linux's TCP_* numbers to the names Linux prints (ESTABLISHED, SYN_SENT, ...)."""
import os
import re

from .. import KERNEL_DIR

HEADER = os.path.join(KERNEL_DIR, "observers.h")


def _parse(path=HEADER):
    with open(path) as f:
        text = f.read()
    body = re.search(r"enum obs_tcp_state \{(.*?)\};", text, re.S)
    if not body:
        raise RuntimeError(f"{path}: no `enum obs_tcp_state` found")
    states = {int(num): name for name, num in re.findall(r"OBS_TCP_(\w+)\s*=\s*(\d+)", body.group(1))}
    defines = {name: int(num) for name, num in re.findall(r"#define (OBS_\w+) (\d+)\s*$", text, re.M)}
    return states, defines


TCP_STATES, _DEFINES = _parse()
STATE_NUMBERS = {name: num for num, name in TCP_STATES.items()}
AF_INET = _DEFINES["OBS_AF_INET"]
AF_INET6 = _DEFINES["OBS_AF_INET6"]


def state_name(num):
    """The Linux name of a TCP state number; unknown numbers stay visible, not dropped."""
    return TCP_STATES.get(num, f"STATE_{num}")

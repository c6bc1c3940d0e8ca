"""Benchmark helper: a real tracker loaded (not attached) and pinned like `ctrack run` pins it,
with its flow table filled by writing synthetic entries straight into the map (batch updates).

    with bench_tracker("bench-gc", table_size=1 << 20) as (meta, sh):
        fill(sh, 1_000_000, expired_every=2)     # every 2nd entry already expired

Entries are TCP ESTABLISHED flows between 10.x.y.z:port and 10.255.0.1:80 (the rest UDP when
udp_every is set), built with the ctypes types of the pinned map, so layouts are never retyped.
"""
import contextlib
import ctypes
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ctrack.live import pins  # noqa: E402
from ctrack.engine.defs import defs  # noqa: E402
from ctrack.bpf.maps import Batch  # noqa: E402
from ctrack.live.maps import Shared  # noqa: E402
from ctrack.engine.tracker import Tracker, TrackerConfig, kernel_now_ns  # noqa: E402

CHUNK = 8192


@contextlib.contextmanager
def bench_tracker(name, table_size, **cfg):
    """A loaded tracker pinned as NAME (no interface attached), and a Shared view of it."""
    tracker = Tracker(TrackerConfig(table_size=table_size, **cfg))
    pins.claim(name)
    sh = None
    try:
        meta = pins.publish(name, tracker, {"interfaces": [], "wire": False, "mode": "bench",
                                            "policy": "observe", "pickup": False,
                                            "timeouts": TrackerConfig().effective_timeouts(),
                                            "table_size": table_size})
        sh = Shared(meta)
        yield meta, sh
    finally:
        if sh is not None:
            sh.close()
        pins.remove(name)
        tracker.close()


def fill(sh, n, expired_every=0, udp_every=0, start=0, now=None, lifetime_s=3600,
         bytes_base=1000):
    """Write n entries (indexes start..start+n-1). expired_every=k: every k-th has expired;
    the others expire lifetime_s from now. Returns the tracker time used as now."""
    d = defs()
    now = kernel_now_ns() if now is None else now
    K, E = sh.Key, sh.Entry
    ks, es = ctypes.sizeof(K), ctypes.sizeof(E)
    b = Batch(sh.flows.map_fd, ks, es, CHUNK)
    karr = (K * CHUNK).from_buffer(b.keys)
    varr = (E * CHUNK).from_buffer(b.values)
    est = d.ct_state.CT_STATE_ESTABLISHED
    tcp_est = d.ct_tcp_endpoint.CT_TCP_ESTABLISHED
    peer = int.from_bytes(socket.inet_aton("10.255.0.1"), "little")
    i = start
    while i < start + n:
        m = min(CHUNK, start + n - i)
        ctypes.memset(b.keys, 0, ks * m)
        ctypes.memset(b.values, 0, es * m)
        for j in range(m):
            x = i + j
            k, v = karr[j], varr[j]
            # a distinct client address per entry: 10.(x>>16).(x>>8).(x) in network order
            k.addr[0].v4 = 10 | ((x >> 16) & 0xff) << 8 | ((x >> 8) & 0xff) << 16 | (x & 0xff) << 24
            k.addr[1].v4 = peer
            k.port[0] = socket.htons(1024 + (x >> 24))
            k.port[1] = socket.htons(80)
            k.family = 4
            udp = udp_every and x % udp_every == 0
            k.proto = socket.IPPROTO_UDP if udp else socket.IPPROTO_TCP
            v.state = est
            if not udp:
                v.dir[0].state = tcp_est
                v.dir[1].state = tcp_est
            v.flags = 0x03  # seen reply, assured
            v.first_seen = now - (x % 600) * 1_000_000_000
            v.last_seen = now
            v.expires = now - 1 if expired_every and x % expired_every == 0 \
                else now + lifetime_s * 1_000_000_000
            v.dir[0].packets = 10 + x % 100
            v.dir[1].packets = 8 + x % 90
            v.dir[0].bytes = bytes_base + (x % 1000) * 100
            v.dir[1].bytes = bytes_base + (x % 777) * 1000
        b.update(b.keys, b.values, m)
        i += m
    return now

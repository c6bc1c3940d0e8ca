"""Seeding a flow: a struct ct_entry written straight into a test tracker's table (the SETUP step
of Cilium's datapath tests), so that a state is tested without replaying its whole history.

    conv = TcpConv(rp)
    seed_tcp(conv, "CLOSE_WAIT", "FIN_WAIT2", "CLOSE_WAIT", fin=("orig",))
    r = conv.s("R", advance=False)          # the packet under test meets the seeded entry

The key and value types are the map's own (BCC's ctypes from the program's BTF), every constant
comes from kernel/ctrack.h through ctrack.engine.defs, and the key is normalised as the tracker
normalises it (side 0: the lower (address, port) compared as the kernel compares them, as native
u32 words then the port's raw __be16). The entry is what an orderly history would have left:
both SYNs seen (no window scaling), everything sent acknowledged, each side's window `win`, a FIN
counted in its sender's sequence space. tests/tracker/test_seed.py checks the seed against the
entry a replayed history leaves, field by field.
"""
import ctypes
import ipaddress
import socket
import struct

from ctrack.engine.defs import defs

ORIG, REPLY = 0, 1


def _addr16(text):
    a = ipaddress.ip_address(text)
    return a.packed if a.version == 6 else a.packed + bytes(12)


def _after(a, pa, b, pb):
    """ct_endpoint_after() of kernel/tracker.c, on the same bytes."""
    wa, wb = struct.unpack("=4I", a), struct.unpack("=4I", b)
    if wa != wb:
        return wa > wb
    return struct.unpack("=H", struct.pack("!H", pa)) > struct.unpack("=H", struct.pack("!H", pb))


def key_of(flows, proto, family, src, sport, dst, dport):
    """(the map key of a flow whose opener is src:sport, the key side of that opener)."""
    a, b = _addr16(src), _addr16(dst)
    k = flows.Key()
    swap = _after(a, sport, b, dport)
    ends = ((b, dport), (a, sport)) if swap else ((a, sport), (b, dport))
    for i, (addr, port) in enumerate(ends):
        ctypes.memmove(ctypes.addressof(k.addr[i]), addr, 16)
        k.port[i] = struct.unpack("=H", struct.pack("!H", port))[0]
    k.proto, k.family = proto, family
    return k, int(swap)


def seed_tcp(conv, state, orig_state, reply_state, fin=(), win=65535, flags=("SEEN_REPLY", "ASSURED"),
             now_ns=None):
    """Write conv's connection (client = the opener) into conv.rp's table in overall `state`
    (enum ct_state short name) with the endpoints in orig_state / reply_state (enum
    ct_tcp_endpoint short names). conv's sides are advanced past their SYNs (if not sent yet)
    and past the FINs of the directions in fin ("orig", "reply"); every FIN is acknowledged. Times are conv's clock; the entry expires after its state's timeout.
    Returns the map key."""
    d = defs()
    rp = conv.rp
    flows = rp.tracker.flows
    cli, srv = conv.cli, conv.srv
    for name, side in (("orig", cli), ("reply", srv)):
        if side.nxt == side.isn:       # its SYN, as if sent
            side.nxt = (side.nxt + 1) & 0xFFFFFFFF
        if name in fin:                # its FIN takes one sequence number
            side.nxt = (side.nxt + 1) & 0xFFFFFFFF
    key, opener_side = key_of(flows, socket.IPPROTO_TCP, conv.family, cli.addr, cli.port,
                              srv.addr, srv.port)
    now = conv.clock.advance(0) if now_ns is None else now_ns
    e = flows.Leaf()
    e.state = d.ct_state.value(state)
    e.orig_side = opener_side
    e.flags = sum(d.macros["CT_F_" + f] for f in flags)
    e.first_seen = e.last_seen = now
    e.expires = now + rp.tracker.config.effective_timeouts()[state] * 1_000_000_000
    for i, (me, peer, st, name) in enumerate(((cli, srv, orig_state, "orig"),
                                              (srv, cli, reply_state, "reply"))):
        dr = e.dir[i]
        dr.isn = me.isn
        dr.td_end = me.nxt
        dr.td_maxwin = win
        dr.td_maxend = (me.nxt + win) & 0xFFFFFFFF    # the peer acknowledged all of it, window win
        dr.td_maxack = peer.nxt
        dr.flags = d.macros["CT_DF_SYN"] | d.macros["CT_DF_MAXACK_SET"]
        if name in fin:
            dr.fin_seq = (me.nxt - 1) & 0xFFFFFFFF
            dr.flags |= d.macros["CT_DF_FIN"] | d.macros["CT_DF_FIN_ACKED"]
        dr.state = d.ct_tcp_endpoint.value(st)
        dr.mss = 1460
    flows[key] = e
    return key

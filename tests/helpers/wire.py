"""Builds TCP/UDP conversations with scapy and runs them through a Replayer.

    conv = TcpConv(rp)                      # client 10.1.0.1:40000, server 10.2.0.2:80
    conv.c("S"); conv.s("SA"); conv.c("A")  # each call builds, sends and returns a PacketResult
    conv.c("PA", b"data"); conv.s("FA")

Each side keeps its next sequence number; ACK numbers default to the peer's. Anything can be
overridden (seq=, ack=, win=, options=). The clock advances by `dt` seconds per packet.
"""
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

T0_NS = 1_700_000_000 * 1_000_000_000

# The endpoints the parse and ICMP tests share: TCP client/server, UDP client/server, v4 and v6.
C4, S4 = ("10.1.0.1", 40000), ("10.2.0.2", 80)
C6, S6 = ("fd00::1", 40000), ("fd00::2", 80)
U4, U4S = ("10.1.0.1", 5353), ("10.2.0.2", 53)
U6, U6S = ("fd00::1", 5353), ("fd00::2", 53)
LINUX_SYN_OPTIONS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]


class Side:
    def __init__(self, addr, port, isn):
        self.addr, self.port, self.isn = addr, port, isn
        self.nxt = isn            # next sequence number to send
        self.peer_acked = isn     # highest ack received from the peer (informational)


class Clock:
    def __init__(self, t0_ns=T0_NS):
        self.now = t0_ns

    def advance(self, seconds):
        self.now += int(seconds * 1e9)
        return self.now


def l3(src, dst, family):
    return IPv6(src=src, dst=dst) if family == 6 else IP(src=src, dst=dst)


def frame(l3pkt, vlans=()):
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    for vid in vlans:
        eth = eth / Dot1Q(vlan=vid)
    return eth / l3pkt


class TcpConv:
    def __init__(self, rp, client=("10.1.0.1", 40000), server=("10.2.0.2", 80), family=None,
                 cisn=1000, sisn=5000, clock=None, dt=0.001, vlans=()):
        self.rp = rp
        self.family = family or (6 if ":" in client[0] else 4)
        self.cli = Side(client[0], client[1], cisn)
        self.srv = Side(server[0], server[1], sisn)
        self.clock = clock or Clock()
        self.dt = dt
        self.vlans = vlans
        self.sent = []

    def build(self, sender, flags, data=b"", seq=None, ack=None, win=65535, options=None):
        peer = self.srv if sender is self.cli else self.cli
        if seq is None:
            seq = sender.nxt
        if ack is None:
            ack = peer.nxt if "A" in flags else 0
        if options is None and "S" in flags:
            options = LINUX_SYN_OPTIONS
        tcp = TCP(sport=sender.port, dport=peer.port, flags=flags, seq=seq & 0xFFFFFFFF,
                  ack=ack & 0xFFFFFFFF, window=win, options=options or [])
        pkt = frame(l3(sender.addr, peer.addr, self.family) / tcp, self.vlans)
        if data:
            pkt = pkt / Raw(data)
        return pkt, seq

    def send(self, sender, flags, data=b"", advance=True, wait=None, **kw):
        pkt, seq = self.build(sender, flags, data, **kw)
        if advance:
            end = seq + len(data) + ("S" in flags) + ("F" in flags)
            if (end - sender.nxt) & 0x80000000 == 0:   # only moves forward (mod 2^32)
                sender.nxt = end & 0xFFFFFFFF
        now = self.clock.advance(self.dt if wait is None else wait)
        res = self.rp.run(bytes(pkt), now)
        self.sent.append((pkt, res))
        return res

    def c(self, flags, data=b"", **kw):
        return self.send(self.cli, flags, data, **kw)

    def s(self, flags, data=b"", **kw):
        return self.send(self.srv, flags, data, **kw)

    def handshake(self):
        r = [self.c("S"), self.s("SA"), self.c("A")]
        return r

    def flow(self):
        """This conversation's flow object from the table, or None."""
        for f in self.rp.flows():
            o = f["orig"]
            ends = {(o["src"], o["sport"]), (o["dst"], o["dport"])}
            if ends == {(self.cli.addr, self.cli.port), (self.srv.addr, self.srv.port)}:
                return f
        return None


def states(res):
    """(state, orig_state, reply_state) of a PacketResult's flow, or None."""
    if res.flow is None:
        return None
    return res.flow["state"], res.flow["orig_state"], res.flow["reply_state"]


def udp_frame(src, sport, dst, dport, payload=b"x", family=None, vlans=()):
    family = family or (6 if ":" in src else 4)
    return bytes(frame(l3(src, dst, family) / UDP(sport=sport, dport=dport) / Raw(payload), vlans))


def table(rp):
    """The flow table as raw bytes, key -> entry: any change to any field shows."""
    return {bytes(k): bytes(v) for k, v in rp.tracker.flows.items()}


def table_without_zeek(rp):
    """table(rp) with each entry's Zeek record (struct ct_zeek) blanked: the tracker's own part."""
    E = rp.tracker.flows.Leaf
    off, size = E.zeek.offset, E.zeek.size
    return {k: v[:off] + bytes(size) + v[off + size:] for k, v in table(rp).items()}


def eth(l3, ethertype=None):
    """An Ethernet frame (bytes) around an L3 packet; ethertype overrides the type field."""
    e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if ethertype is not None:
        e.type = ethertype
    return bytes(e / l3)

"""What a replayed packet is, for `ctrack replay`'s lines and its --json packet objects.

Packets the tracker parsed (TCP, UDP, ICMP errors) are described from the kernel's own trace
(struct ct_trace), so the line says what the tracker saw. Frames it did not parse (ARP, IGMP,
ICMP echo, later fragments, malformed frames) are decoded here, shallowly, from the frame's
bytes: the EtherType or IP protocol by name and the addresses, as tcpdump names them. Only such
frames pay for this decoding.
"""
import ipaddress
import struct

# EtherTypes and IP protocol numbers (IANA's registries; names as tcpdump prints them). The
# tracker has its own definitions for what it parses; these only name what it does not.
ETHERTYPES = {0x0800: "ip", 0x0806: "arp", 0x8035: "rarp", 0x86DD: "ip6", 0x8100: "vlan",
              0x88A8: "qinq", 0x8847: "mpls", 0x8848: "mpls-mc", 0x8863: "pppoe-disc",
              0x8864: "pppoe", 0x888E: "eapol", 0x8809: "slow", 0x88CC: "lldp", 0x88F7: "ptp",
              0x88E5: "macsec", 0x9000: "loopback", 0x893A: "ieee1905", 0x22F0: "avtp"}
IP_PROTOS = {0: "hopopt", 1: "icmp", 2: "igmp", 4: "ipip", 6: "tcp", 17: "udp", 41: "ip6",
             43: "ip6-route", 44: "ip6-frag", 47: "gre", 50: "esp", 51: "ah", 58: "icmp6",
             59: "ip6-nonxt", 60: "ip6-opts", 89: "ospf", 103: "pim", 112: "vrrp", 132: "sctp",
             136: "udplite", 137: "mpls-in-ip"}
ICMP_NAMES = {(4, 0): "echo reply", (4, 8): "echo request", (6, 128): "echo request",
              (6, 129): "echo reply", (6, 133): "router solicitation",
              (6, 134): "router advertisement", (6, 135): "neighbor solicitation",
              (6, 136): "neighbor advertisement", (6, 143): "multicast listener report v2"}
VLAN_TYPES = (0x8100, 0x88A8)
IP6_EXT = (0, 43, 60, 51)   # hop-by-hop, routing, destination options, AH: skipped by length


def ethertype_name(t):
    if t < 0x0600:
        return "llc"   # an 802.3 length field: LLC follows (STP, ...)
    return ETHERTYPES.get(t, f"ethertype-0x{t:04x}")


def proto_name(p):
    return IP_PROTOS.get(p, f"ip-proto-{p}")


def empty_fields():
    """The packet fields of every --json packet object, none known."""
    return {"proto": None, "family": None, "src": None, "sport": None, "dst": None,
            "dport": None, "tcp_flags": None, "payload_len": None, "icmp": None, "quoted": None}


def decode_frame(frame):
    """(fields, text) of a frame the tracker did not parse: fields as in empty_fields(), text a
    tcpdump-like description. Never raises: what cannot be read is left out."""
    f = empty_fields()
    off, etype = 12, None
    for _ in range(3):   # up to two VLAN tags, then the EtherType
        if len(frame) < off + 2:
            return f, "frame cut inside its Ethernet header"
        etype = struct.unpack_from("!H", frame, off)[0]
        if etype not in VLAN_TYPES:
            break
        off += 4
    off += 2
    if etype == 0x0800 and len(frame) >= off + 20:
        return _ipv4(frame, off, f)
    if etype == 0x86DD and len(frame) >= off + 40:
        return _ipv6(frame, off, f)
    f["proto"] = ethertype_name(etype)
    if etype == 0x0806:
        return f, _arp(frame, off, f)
    if etype in (0x0800, 0x86DD):
        return f, f"{f['proto']} (cut short)"
    return f, f["proto"]


def _arp(frame, off, f):
    # Ethernet/IPv4 ARP: htype 1, ptype 0x0800, hlen 6, plen 4
    if len(frame) < off + 28 or frame[off + 4:off + 6] != b"\x06\x04":
        return "arp"
    op = struct.unpack_from("!H", frame, off + 6)[0]
    sha = ":".join(f"{b:02x}" for b in frame[off + 8:off + 14])
    spa = str(ipaddress.IPv4Address(frame[off + 14:off + 18]))
    tpa = str(ipaddress.IPv4Address(frame[off + 24:off + 28]))
    f.update(family=4, src=spa, dst=tpa)
    if op == 1:
        return f"arp who-has {tpa} tell {spa}"
    if op == 2:
        return f"arp reply {spa} is-at {sha}"
    return f"arp op {op} {spa} > {tpa}"


def _ipv4(frame, off, f):
    ihl = (frame[off] & 0x0F) * 4
    proto = frame[off + 9]
    frag = struct.unpack_from("!H", frame, off + 6)[0] & 0x1FFF
    src = str(ipaddress.IPv4Address(frame[off + 12:off + 16]))
    dst = str(ipaddress.IPv4Address(frame[off + 16:off + 20]))
    f.update(family=4, src=src, dst=dst)
    return f, _l4(frame, off + max(ihl, 20), proto, frag * 8, 4, f)


def _ipv6(frame, off, f):
    nh = frame[off + 6]
    src = str(ipaddress.IPv6Address(frame[off + 8:off + 24]))
    dst = str(ipaddress.IPv6Address(frame[off + 24:off + 40]))
    f.update(family=6, src=src, dst=dst)
    pos, frag = off + 40, 0
    for _ in range(6):
        if nh == 44 and len(frame) >= pos + 8:
            frag = struct.unpack_from("!H", frame, pos + 2)[0] & 0xFFF8
            nh, pos = frame[pos], pos + 8
        elif nh in IP6_EXT and len(frame) >= pos + 2:
            step = (frame[pos + 1] + 2) * 4 if nh == 51 else (frame[pos + 1] + 1) * 8
            nh, pos = frame[pos], pos + step
        else:
            break
    return f, _l4(frame, pos, nh, frag, 6, f)


def _l4(frame, pos, proto, frag_off, family, f):
    name = proto_name(proto)
    if proto == 58 and family == 4:
        name = "ip-proto-58"
    f["proto"] = name
    where = f"[{f['src']}] > [{f['dst']}]" if family == 6 else f"{f['src']} > {f['dst']}"
    if frag_off:
        return f"{where} {name} fragment off={frag_off}"
    if proto in (1, 58) and len(frame) >= pos + 2:
        t, c = frame[pos], frame[pos + 1]
        f["icmp"] = {"type": t, "code": c}
        what = ICMP_NAMES.get((family, t))
        return f"{where} {name} " + (what if what and c == 0 else f"type={t} code={c}")
    if proto in (6, 17) and len(frame) >= pos + 4:
        f["sport"], f["dport"] = struct.unpack_from("!HH", frame, pos)
        where = (f"[{f['src']}]:{f['sport']} > [{f['dst']}]:{f['dport']}" if family == 6
                 else f"{f['src']}:{f['sport']} > {f['dst']}:{f['dport']}")
    return f"{where} {name}"

"""Addresses for the observers: parse the user's address filters into C, format kernel bytes.

Programs carry addresses as u8[16] with an IPv4 address in the first 4 bytes and the family
beside them; a filter becomes a C expression over those bytes, compiled into the program."""
import ipaddress

from ..errors import CtrackError
from .defs import AF_INET, AF_INET6


def family_number(version):
    return {4: AF_INET, 6: AF_INET6}[version]


def parse_networks(specs, what):
    """'10.77.0.1', '10.77.0.0/24', '::1', 'fd00::/8' (also comma-separated) -> ip_network list."""
    nets = []
    for spec in specs or ():
        for item in str(spec).split(","):
            item = item.strip()
            if not item:
                continue
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise CtrackError(f"bad {what} address {item!r}: want an IPv4/IPv6 address or prefix "
                                  "such as 10.77.0.1, 10.77.0.0/24, ::1") from None
    return nets


def _words_match(var, packed, prefixlen):
    """C test that the first prefixlen bits of the address at var equal packed's: the address is
    read as 32-bit words and the differences OR-ed together, so one network costs one branch
    (byte-by-byte && chains made the verifier explore too many paths)."""
    terms = []
    for i in range(0, len(packed), 4):
        bits = min(32, max(0, prefixlen - 8 * i))
        if bits == 0:
            break
        mask_be = ((1 << bits) - 1) << (32 - bits)
        # Words are loaded in host (little-endian) order from network-order bytes.
        mask = int.from_bytes(mask_be.to_bytes(4, "big"), "little")
        value = int.from_bytes(packed[i:i + 4], "little") & mask
        terms.append(f"((((const u32 *)({var}))[{i // 4}] ^ {value:#x}) & {mask:#x})")
    return f"({' | '.join(terms)}) == 0" if terms else "1"


def networks_c_expr(nets, fam_var="f", addr_var="a"):
    """One C expression true when (family fam_var, address bytes addr_var, 4-byte aligned) lies
    in any of nets. An IPv4 network also matches IPv4-mapped addresses of IPv6 sockets
    (::ffff:a.b.c.d), the same peer seen through a dual-stack socket."""
    alts = []
    for net in nets:
        packed = net.network_address.packed
        if net.version == 4:
            alts.append(f"(({fam_var}) == {AF_INET} && {_words_match(addr_var, packed, net.prefixlen)})")
            mapped = bytes(10) + b"\xff\xff" + packed
            alts.append(f"(({fam_var}) == {AF_INET6} && {_words_match(addr_var, mapped, 96 + net.prefixlen)})")
        else:
            alts.append(f"(({fam_var}) == {AF_INET6} && {_words_match(addr_var, packed, net.prefixlen)})")
    return "(" + " || ".join(alts) + ")"


def parse_ports(specs, what):
    """'80', '80,443', ['22', '8080'] -> sorted unique ints."""
    ports = set()
    for spec in specs or ():
        for item in str(spec).split(","):
            item = item.strip()
            if not item:
                continue
            if not item.isdigit() or not 0 <= int(item) <= 65535:
                raise CtrackError(f"bad {what} port {item!r}: want a number 0-65535 (lists: 80,443)")
            ports.add(int(item))
    return sorted(ports)


def ports_c_expr(ports, var="p"):
    return "(" + " || ".join(f"({var}) == {p}" for p in ports) + ")"

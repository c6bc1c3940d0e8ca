"""Small text helpers shared by the tools' messages, and the one address formatter."""
import socket

# Address families as ctrack's structs carry them: the tracker's key says 4 or 6, the observers'
# tracepoint records say AF_INET or AF_INET6.
_AF = {4: (socket.AF_INET, 4), socket.AF_INET: (socket.AF_INET, 4),
       6: (socket.AF_INET6, 16), socket.AF_INET6: (socket.AF_INET6, 16)}


def addr_text(family, raw):
    """Text of an address the kernel wrote in 16 bytes (IPv4 in the first 4): family 4 or
    AF_INET, 6 or AF_INET6; raw bytes or a ctypes u8[16]. The kernel's and ss's form
    (inet_ntop): an IPv4-mapped IPv6 address prints as ::ffff:a.b.c.d. The one formatter for
    the tracker's flows, ctrack list/top's rows and the observers' events (inet_ntop, not
    ipaddress: ctrack-top formats every row of a large table each refresh)."""
    af, n = _AF.get(family, _AF[6])
    return socket.inet_ntop(af, bytes(raw)[:n])


def plural(n, one, many=None):
    """'1 flow', '2 flows', '1 summary', '3 summaries': a count with its noun agreeing.
    many: the plural when it is not one + 's' (entry -> entries)."""
    if n == 1:
        return f"{n} {one}"
    return f"{n} {many or one + 's'}"

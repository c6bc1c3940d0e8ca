"""The one address formatter (ctrack.text.addr_text), as the tracker's flow objects, ctrack
list/top's rows and the observers' events use it: no root, no BPF."""
import ctypes
import ipaddress
import socket
from types import SimpleNamespace

import pytest

from ctrack.engine.flows import endpoint
from ctrack.text import addr_text

MAPPED = ipaddress.IPv6Address("::ffff:10.1.2.3").packed


@pytest.mark.parametrize("family, raw, text", [
    (4, ipaddress.IPv4Address("10.1.0.1").packed + bytes(12), "10.1.0.1"),
    (socket.AF_INET, ipaddress.IPv4Address("192.0.2.7").packed + bytes(12), "192.0.2.7"),
    (6, ipaddress.IPv6Address("fd00::1").packed, "fd00::1"),
    (socket.AF_INET6, ipaddress.IPv6Address("2001:db8:0:1::").packed, "2001:db8:0:1::"),
    (6, MAPPED, "::ffff:10.1.2.3"),
], ids=["4", "AF_INET", "6", "AF_INET6", "ipv4-mapped"])
def test_addr_text(family, raw, text):
    assert addr_text(family, raw) == text
    assert addr_text(family, (ctypes.c_uint8 * 16)(*raw)) == text   # a program's u8[16]


def test_flow_endpoints_print_a_mapped_address_as_list_and_the_observers_do():
    """`ctrack replay --json` (flow objects) printed ::ffff:a01:203 where `ctrack list` and the
    observers print ::ffff:10.1.2.3: one formatter now."""
    key = SimpleNamespace(family=6, addr=[SimpleNamespace(v6=MAPPED)] * 2, port=[socket.htons(80)] * 2)
    assert endpoint(key, 0) == ("::ffff:10.1.2.3", 80)


def test_size_and_rate_scale_as_top_and_list_print_them():
    from ctrack.engine.flowview import rate, size
    assert [size(n) for n in (0, 1023, 1024, 1536, 150 * 1024, 3 * 1024 ** 3)] == \
        ["0B", "1023B", "1.0KB", "1.5KB", "150KB", "3.0GB"]
    assert [rate(v) for v in (0, 950, 12345, 1.2e6, 5e15)] == ["0", "950", "12.3k", "1.2M", "5000T"]

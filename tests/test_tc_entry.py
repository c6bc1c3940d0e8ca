"""The TC entry point (ct_tc) judges packets exactly as the XDP one (ct_xdp): the same
conversations through both give the same verdicts, reasons and states, packet by packet."""
import pytest

from conftest import get_replayer
from wire import TcpConv, udp_frame, Clock


def script_handshake_close(conv):
    conv.handshake(); conv.c("PA", b"req"); conv.s("PA", b"resp"); conv.c("FA"); conv.s("FA"); conv.c("A")


def script_rsts(conv):
    conv.handshake()
    conv.s("R", seq=conv.srv.nxt + 50_000_000, advance=False)   # out of window
    conv.c("PA", b"still")
    conv.s("R", advance=False)                                  # in window
    conv.c("PA", b"after")


def script_simultaneous(conv):
    conv.c("S"); conv.s("S")
    conv.c("SA", seq=conv.cli.isn); conv.s("SA", seq=conv.srv.isn)
    ca, sa = conv.srv.nxt, conv.cli.nxt
    conv.c("FA", ack=ca); conv.s("FA", ack=sa); conv.c("A"); conv.s("A")


def script_invalid(conv):
    conv.c("PA", b"no flow"); conv.c("S"); conv.s("SA", ack=7); conv.s("SA"); conv.c("FS")


@pytest.mark.parametrize("script", [script_handshake_close, script_rsts, script_simultaneous, script_invalid])
@pytest.mark.parametrize("family", [4, 6])
def test_tc_and_xdp_agree(script, family):
    hosts = (("10.1.0.1", 4000), ("10.2.0.2", 80)) if family == 4 else (("fd00::1", 4000), ("fd00::2", 80))
    results = {}
    for entry in ("ct_xdp", "ct_tc"):
        rp = get_replayer(entry=entry)
        conv = TcpConv(rp, client=hosts[0], server=hosts[1])
        script(conv)
        results[entry] = [(r.klass, r.reason, r.verdict, r.flow) for _, r in conv.sent]
    assert results["ct_tc"] == results["ct_xdp"]
    assert len(results["ct_tc"]) >= 5


def test_tc_enforce_drops_and_udp():
    rp = get_replayer(entry="ct_tc", policy="enforce")
    conv = TcpConv(rp)
    r = conv.c("PA", b"x")
    assert (r.verdict, r.reason) == ("drop", "tcp_no_flow")
    clock = Clock()
    r1 = rp.run(udp_frame("10.1.0.1", 53000, "10.2.0.2", 53), clock.advance(0.1))
    r2 = rp.run(udp_frame("10.2.0.2", 53, "10.1.0.1", 53000), clock.advance(0.1))
    assert (r1.klass, r2.flow["state"]) == ("NEW", "ESTABLISHED")

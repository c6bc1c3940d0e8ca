"""The TC entry point (ct_tc) judges packets exactly as the XDP one (ct_xdp): the same
conversations through both give the same verdicts, reasons and states, packet by packet; and,
live, it tracks the GSO super-packets a local TCP sender hands a veth (headers linear, payload
in page fragments) by their full length."""
import json

import pytest

from helpers.replayers import get_replayer
from helpers.wire import TcpConv, udp_frame, Clock
from helpers.live import make_lab, trackers  # noqa: F401


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


# ---- live: GSO super-packets through a TC tracker ------------------------------------------------

BULK_SERVER = """
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1]))); srv.listen(1); srv.settimeout(15)
conn, _ = srv.accept(); conn.settimeout(15)
got = 0
while got < int(sys.argv[2]):
    data = conn.recv(1 << 20)
    if not data:
        break
    got += len(data)
conn.sendall(b"%d" % got)
conn.close()
"""

BULK_CLIENT = """
import socket, sys, time
for attempt in range(50):   # the server may still be starting
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=15)
        break
    except ConnectionRefusedError:
        time.sleep(0.1)
c.sendall(b"x" * int(sys.argv[3]))
print(c.recv(100).decode())
c.close()
"""


def test_tc_tracks_gso_super_packets_live(make_lab, trackers):
    """A bulk TCP transfer between the lab's hosts (default offloads: the sender's TSO/GSO
    hands the veth super-packets whose payload lies in page fragments, beyond the skb's
    linear part). ct_tc reads their headers where they lie and judges them by their full
    length: every packet is tracked (none INVALID), the flow counts every byte, and fewer
    packets than MTU-sized segments would need, i.e. it did see super-packets; and the
    established fast path took most of them."""
    from helpers.live import PY
    lab = make_lab("to")   # t<letter><tag>: the suite's lab naming (conftest clears leftovers)
    t = trackers(lab, "gso", ["--mode", "tc"])
    size, port = 8 << 20, 7301
    srv = lab.spawn("ns2", [PY, "-c", BULK_SERVER, str(port), str(size)])
    res = lab.exec("ns1", [PY, "-c", BULK_CLIENT, lab.addr("ns2"), str(port), str(size)], timeout=60)
    srv.wait(20)
    assert res.stdout.strip() == str(size)
    [f] = [f for f in t.flows("--dport", str(port))]
    code, out, err = t.stop()
    summary = [json.loads(x)["summary"] for x in out.splitlines() if x.startswith('{"summary"')][0]
    assert summary["class.invalid"] == 0, {k: v for k, v in summary.items() if k.startswith("reason.") and v}
    # the client's direction carried the payload and its headers: IP bytes >= payload
    assert f["bytes"][0] >= size
    assert f["packets"][0] < size // 1448 // 2, f   # super-packets, not MTU-sized frames
    assert f["state"] in ("ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT"), f
    # a bulk transfer is the established fast path's case (kernel/lib/fastpath.h): its data
    # super-packets and the receiver's ACKs, all but the handshake's, first letters and close
    assert summary["fastpath"] > summary["class.established"] * 0.8, summary

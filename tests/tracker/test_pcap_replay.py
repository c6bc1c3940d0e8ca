"""Captures in, verdicts out: `ctrack replay` on files written by tests/helpers/captures.py
(struct), by scapy, by Wireshark's tools (editcap) and by dumpcap on loopback. (The reader alone,
in process, is tests/unit/test_pcap_reader.py.)

The same conversation (TCP and UDP, IPv4 and IPv6, a 20 kB GRO-sized segment, an orderly close)
is written in every container and link type the reader claims: each must replay to exactly what
the Ethernet pcap replays to (bytes are counted at the IP layer, so even the byte counters must
agree). Then the awkward files: snaplen cuts, files cut mid-record, corrupt lengths, unsupported
link types. The last test captures real kernel TCP on loopback and replays it.
"""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from ctrack.errors import CtrackError
from ctrack.engine.pcap import read_capture
from helpers.wire import Clock, TcpConv, udp_frame

CTRACK = shutil.which("ctrack")
EDITCAP = shutil.which("editcap")
DUMPCAP = shutil.which("dumpcap")


from helpers.captures import (CORRUPT_NG, FRAMES, LINKS, N4, Recorder, link_records, ng_epb,
                              ng_idb, ng_shb, pcap_file, to_link)

# ---- running the CLI -----------------------------------------------------------------------------
def ctrack(*args, timeout=120):
    return subprocess.run([CTRACK, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def replay_json(path, *flags):
    r = ctrack("replay", "--json", *flags, path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return json.loads(r.stdout)


def one_line_error(r, *words, code=1):
    """A CLI failure the way ctrack promises it: one line on stderr, the exit code, no traceback,
    nothing on stdout."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert r.stdout == ""
    return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The Ethernet pcap's replay, checked once for what the conversation must give."""
    path = tmp_path_factory.mktemp("ref") / "ethernet.pcap"
    path.write_bytes(pcap_file(link_records(1)))
    doc = replay_json(path)
    assert len(doc["packets"]) == len(FRAMES)
    assert all(p["reason"] is None and p["verdict"] == "pass" for p in doc["packets"])
    flows = {(f["proto"], f["family"]): f for f in doc["flows"]}
    assert set(flows) == {("tcp", 4), ("udp", 4), ("tcp", 6), ("udp", 6)}
    for fam, hdr in ((4, 40), (6, 60)):
        tcp = flows[("tcp", fam)]
        assert (tcp["state"], tcp["orig_state"], tcp["reply_state"]) == \
            ("TIME_WAIT", "TIME_WAIT", "CLOSE")
        assert tcp["packets"] == [6, 4]
        # the 20 kB segment counts whole, though only 3000 bytes of it ran
        assert tcp["bytes"][1] == (hdr + 20) + hdr + (hdr + 20000) + hdr
        udp = flows[("udp", fam)]
        assert (udp["state"], udp["packets"]) == ("ESTABLISHED", [1, 1])
    return doc


def subset(doc, family):
    """The reference restricted to one family's packets and flows (IPv4 packets come first),
    indices renumbered as a file holding only those packets would number them."""
    pk = doc["packets"][:N4] if family == 4 else doc["packets"][N4:]
    pk = [dict(p, index=i) for i, p in enumerate(pk)]
    return {"packets": pk, "flows": [f for f in doc["flows"] if f["family"] == family]}


# ---- ctrack replay on damaged files: one line -------------------------------------------------
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_corrupt_record_length_is_an_error_not_an_allocation(tmp_path, fmt):
    if fmt == "pcap":
        data = pcap_file([]) + struct.pack("<IIII", 0, 0, 0xFFFFFFF0, 0xFFFFFFF0) + bytes(64)
    else:
        data = ng_shb("<") + ng_idb("<", 1) + struct.pack("<II", 6, 0xFFFFFFF0) + bytes(64)
    p = tmp_path / f"corrupt.{fmt}"
    p.write_bytes(data)
    with pytest.raises(CtrackError, match="corrupt"):
        list(read_capture(p))
    one_line_error(ctrack("replay", p), "corrupt")


@pytest.mark.parametrize("data, words", [
    (pcap_file([])[:10], "truncated pcap file header"),
    (pcap_file([]) + struct.pack("<IIII", 0, 0, 0xFFFFFFF0, 0xFFFFFFF0), "corrupt pcap record 0"),
    (pcap_file([(0, b"\x08" * 40, 40)], linktype=105), "unsupported link type 105"),
    (ng_shb("<") + ng_idb("<", 1) + struct.pack("<II", 6, 0xFFFFFFF0), "corrupt pcapng block"),
], ids=["cut-in-file-header", "corrupt-record", "link-type", "corrupt-pcapng-block"])
def test_every_capture_error_names_the_file(tmp_path, data, words):
    """Like "no such file" or "not a pcap": each reader error starts with the file's name."""
    p = tmp_path / "bad.cap"
    p.write_bytes(data)
    with pytest.raises(CtrackError, match="^" + str(p) + ": " + words):
        list(read_capture(p))
    line = one_line_error(ctrack("replay", p), words)
    assert line.startswith(f"ctrack: {p}: "), line


def test_corrupt_pcapng_block_on_the_command_line(tmp_path):
    p = tmp_path / "corrupt.pcapng"
    p.write_bytes(CORRUPT_NG["epb-without-body"]())
    one_line_error(ctrack("replay", "--json", p), "corrupt")


# ---- ctrack replay: every container and link type replays like the Ethernet pcap ----------------
@pytest.mark.parametrize("lt, kw", list(LINKS.values()), ids=list(LINKS))
def test_replay_link_type_matches_ethernet(tmp_path, reference, lt, kw):
    p = tmp_path / "c.pcap"
    p.write_bytes(pcap_file(link_records(lt, **kw), linktype=lt))
    assert replay_json(p) == reference


def test_replay_ethernet_with_fcs_matches_ethernet(tmp_path, reference):
    p = tmp_path / "fcs.pcap"
    recs = [(ts, f + b"\xde\xad\xbe\xef", len(f) + 4) for ts, f in FRAMES]
    p.write_bytes(pcap_file(recs, linktype=(2 << 28) | (1 << 26) | 1))
    assert replay_json(p) == reference


@pytest.mark.parametrize("lt, family", [(228, 4), (229, 6)], ids=["ipv4-228", "ipv6-229"])
def test_replay_single_family_link_type(tmp_path, reference, lt, family):
    frames = FRAMES[:N4] if family == 4 else FRAMES[N4:]
    p = tmp_path / "c.pcap"
    p.write_bytes(pcap_file(link_records(lt, frames), linktype=lt))
    assert replay_json(p) == subset(reference, family)


def test_replay_pcapng_two_interfaces_matches_ethernet(tmp_path, reference):
    """ns and µs interfaces of different link types in one file: the µs interface rounds the
    clock, which moves no verdict (the conversation's gaps are milliseconds)."""
    e = "<"
    out = ng_shb(e) + ng_idb(e, 1) + ng_idb(e, 113, 9)
    for i, (ts, f) in enumerate(FRAMES):
        if i % 2:
            rec = to_link(113, f)
            out += ng_epb(e, 1, ts, rec, len(rec))
        else:
            out += ng_epb(e, 0, ts // 1000, f, len(f))
    p = tmp_path / "two.pcapng"
    p.write_bytes(out)
    assert replay_json(p) == reference


@pytest.mark.skipif(not EDITCAP, reason="editcap (wireshark-common) not installed")
def test_replay_editcap_pcapng_and_snaplen(tmp_path, reference):
    """Files written by Wireshark's own tools: the pcap converted to pcapng (ns), and cut to a
    96-byte snaplen as `tcpdump -s 96` would: caplen < origlen on every long packet."""
    src = tmp_path / "ethernet.pcap"
    src.write_bytes(pcap_file(link_records(1), nanos=True))
    ng, cut = tmp_path / "conv.pcapng", tmp_path / "cut96.pcap"
    subprocess.run([EDITCAP, "-F", "pcapng", src, ng], check=True, capture_output=True)
    subprocess.run([EDITCAP, "-s", "96", src, cut], check=True, capture_output=True)
    assert open(ng, "rb").read(4) == b"\x0a\x0d\x0d\x0a"
    frames = list(read_capture(cut))
    assert max(len(f.data) for f in frames) == 96
    assert sum(f.wire_len > len(f.data) for f in frames) == 2   # the 20 kB segments
    assert replay_json(ng) == reference
    assert replay_json(cut) == reference


def test_replay_snaplen_cut_inside_l4_headers(tmp_path, reference):
    """A snaplen of 54 cuts every IPv6 frame inside its TCP or UDP header: the tracker says so
    (l4_truncated, never ip_truncated: the wire length vouches for the IP length). The IPv4
    frames, left whole, replay as before."""
    recs = [(ts, f if i < N4 else f[:54], len(f)) for i, (ts, f) in enumerate(FRAMES)]
    p = tmp_path / "s54.pcap"
    p.write_bytes(pcap_file(recs, snaplen=54))
    doc = replay_json(p)
    assert doc["packets"][:N4] == reference["packets"][:N4]
    assert {p["reason"] for p in doc["packets"][N4:]} == {"l4_truncated"}
    assert [f["family"] for f in doc["flows"]] == [4, 4]


def test_replay_file_cut_mid_record(tmp_path, reference):
    recs = link_records(1)
    data = pcap_file(recs)
    p = tmp_path / "cut.pcap"
    p.write_bytes(data[:-10])
    r = ctrack("replay", "--json", p)
    assert r.returncode == 0 and "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    assert doc["packets"] == reference["packets"][:-1]


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_unsupported_link_type(tmp_path, fmt):
    p = tmp_path / f"wifi.{fmt}"
    if fmt == "pcap":
        p.write_bytes(pcap_file([(0, b"\x08" * 40, 40)], linktype=105))
    else:
        p.write_bytes(ng_shb("<") + ng_idb("<", 105) + ng_epb("<", 0, 0, b"\x08" * 40, 40))
    with pytest.raises(CtrackError, match="unsupported link type 105"):
        list(read_capture(p))
    one_line_error(ctrack("replay", p), "unsupported link type 105")


def test_pcapng_packet_of_undeclared_interface(tmp_path):
    p = tmp_path / "bad.pcapng"
    f = FRAMES[0][1]
    p.write_bytes(ng_shb("<") + ng_idb("<", 1) + ng_epb("<", 3, 0, f, len(f)))
    one_line_error(ctrack("replay", p), "interface 3")


# ---- the capture's clock drives the timeouts ----------------------------------------------------
@pytest.mark.parametrize("gap, second_class, packets", [(3.0, "NEW", [1, 0]),
                                                        (1.0, "ESTABLISHED", [2, 0])],
                         ids=["idle-past-timeout", "within-timeout"])
def test_udp_timeout_follows_capture_timestamps(tmp_path, gap, second_class, packets):
    t0 = 1_700_000_000 * 10**9
    f = udp_frame("10.1.0.1", 5353, "10.2.0.2", 53, b"q")
    p = tmp_path / "udp.pcap"
    p.write_bytes(pcap_file([(t0, f, len(f)), (t0 + int(gap * 1e9), f, len(f))], nanos=True))
    r = ctrack("replay", "--timeout", "UDP_NEW=2", p)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[2:4] == ["VERDICT", "CLASS"]   # the header
    assert lines[1].split()[2:4] == ["pass", "NEW"], r.stdout
    assert lines[2].split()[2:4] == ["pass", second_class], r.stdout
    doc = replay_json(p, "--timeout", "UDP_NEW=2")
    (flow,) = doc["flows"]
    assert (flow["state"], flow["packets"]) == ("NEW", packets)
    # without the override UDP_NEW is 30 s: both gaps keep the flow
    (flow,) = replay_json(p)["flows"]
    assert flow["packets"] == [2, 0]


def test_tcp_idle_timeout_then_pickup(tmp_path):
    """ESTABLISHED=5 and 10 s of silence: the next ACK finds no flow (tcp_no_flow, dropped when
    enforcing) unless pickup (observe's default, or --pickup) lets it open a new one."""
    rec, clock = Recorder(), Clock()
    t = TcpConv(rec, clock=clock)
    t.handshake()
    t.c("PA", b"hi", wait=10.0)
    p = tmp_path / "idle.pcap"
    p.write_bytes(pcap_file([(ts, f, len(f)) for ts, f in rec.frames], nanos=True))
    doc = replay_json(p, "--timeout", "ESTABLISHED=5", "--no-pickup")
    assert doc["packets"][3]["reason"] == "tcp_no_flow" and doc["flows"] == []
    doc = replay_json(p, "--timeout", "ESTABLISHED=5", "--policy", "enforce")
    assert (doc["packets"][3]["reason"], doc["packets"][3]["verdict"]) == ("tcp_no_flow", "drop")
    doc = replay_json(p, "--timeout", "ESTABLISHED=5")   # observe: pickup by default
    assert doc == replay_json(p, "--timeout", "ESTABLISHED=5", "--pickup")
    assert doc["packets"][3]["reason"] is None
    assert doc["packets"][3]["flow"]["state"] == "ESTABLISHED"
    (flow,) = doc["flows"]
    assert flow["packets"] == [1, 0]   # a new flow, picked up mid-stream
    doc = replay_json(p)
    assert doc["packets"][3]["reason"] is None and doc["flows"][0]["packets"] == [3, 1]


# ---- real kernel TCP, captured on loopback -------------------------------------------------------
def _free_port(family=socket.AF_INET):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        return s.getsockname()[1]


def _tcp_exchange(host, port, family, payload, rst=False):
    """One connection to ourselves: the client sends payload, the server echoes its length, the
    client closes first (or aborts with an RST), then the server."""
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(1)
    done = threading.Event()

    def serve():
        conn, _ = srv.accept()
        n = 0
        while True:
            try:
                b = conn.recv(65536)
            except ConnectionResetError:   # the client aborted (SO_LINGER 0)
                break
            if not b:
                break
            n += len(b)
            if n >= len(payload):
                conn.sendall(str(n).encode())
        conn.close()
        done.set()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    cli = socket.create_connection((host, port), timeout=5)
    cli.sendall(payload)
    assert cli.recv(100) == str(len(payload)).encode()
    if rst:
        cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    cli.close()
    done.wait(5)
    srv.close()
    th.join(5)


def _pcapng_first_linktype(path):
    data = open(path, "rb").read(4096)
    shb_len = struct.unpack_from("<I", data, 4)[0]
    assert struct.unpack_from("<I", data, shb_len)[0] == 1   # an Interface Description Block
    return struct.unpack_from("<H", data, shb_len + 8)[0]


@pytest.mark.skipif(not DUMPCAP, reason="dumpcap not installed")
@pytest.mark.parametrize("iface, linktype", [("lo", 1), ("any", 113)],
                         ids=["lo-ethernet", "any-linux-cooked"])
def test_real_loopback_capture(tmp_path, iface, linktype):
    """dumpcap on lo (Ethernet framing) or on `any` (Linux cooked framing) while this process
    talks to itself over 127.0.0.1 and ::1 (the filter keeps only this test's ports; traffic
    on loopback only, bounded to a few seconds): what the kernel really sends, replayed."""
    ports = [_free_port(), _free_port(), _free_port(socket.AF_INET6), _free_port()]
    probe_port = _free_port()
    capfilter = " or ".join(f"port {p}" for p in ports + [probe_port])
    path = tmp_path / "lo.pcapng"
    cap = subprocess.Popen([DUMPCAP, "-i", iface, "-f", capfilter, "-a", "duration:30",
                            "-w", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # dumpcap announces "Capturing on" before its socket sees anything: probe with UDP
        # datagrams until one shows in the file (dumpcap flushes it every 100 ms)
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(100):
            probe.sendto(b"probe", ("127.0.0.1", probe_port))
            time.sleep(0.05)
            if path.exists() and any(True for _ in read_capture(path)):
                break
        else:
            pytest.fail("dumpcap captured nothing in 5 s")
        probe.close()
        big = os.urandom(300_000)   # loopback's 64 KiB MTU: GSO-sized segments in the capture
        _tcp_exchange("127.0.0.1", ports[0], socket.AF_INET, big)
        _tcp_exchange("127.0.0.1", ports[1], socket.AF_INET, b"bye", rst=True)
        _tcp_exchange("::1", ports[2], socket.AF_INET6, b"hello over v6" * 100)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        v.bind(("127.0.0.1", ports[3]))
        u.sendto(b"ping", ("127.0.0.1", ports[3]))
        data, addr = v.recvfrom(100)
        v.sendto(b"pong", addr)
        assert u.recv(100) == b"pong"
        u.close()
        v.close()
        time.sleep(0.5)   # let the last packets reach the capture
    finally:
        cap.send_signal(signal.SIGINT)    # our own dumpcap, by its pid
        try:
            cap.wait(10)
        except subprocess.TimeoutExpired:
            cap.kill()
            cap.wait()
    assert _pcapng_first_linktype(path) == linktype
    frames = list(read_capture(path))
    assert len(frames) > 20
    assert any(f.wire_len > 3000 for f in frames), "no GSO-sized segment was captured"

    doc = replay_json(path)
    bad = [p for p in doc["packets"] if p["reason"] is not None]
    assert bad == []
    by_port = {}
    for f in doc["flows"]:
        by_port[f["orig"]["dport"]] = f
    assert set(by_port) == set(ports + [probe_port])

    # the handshake, packet by packet, on the first connection (after the UDP probes)
    tcp = [p["flow"] for p in doc["packets"] if p["flow"] and p["flow"]["orig_state"]]
    first = tcp[:3]
    assert [(f["state"], f["orig_state"], f["reply_state"]) for f in first] == [
        ("SYN_SENT", "SYN_SENT", "SYN_RECV"), ("SYN_RECV", "ESTABLISHED", "SYN_RECV"),
        ("ESTABLISHED", "ESTABLISHED", "ESTABLISHED")]
    for port, fam in ((ports[0], 4), (ports[2], 6)):
        f = by_port[port]
        assert (f["proto"], f["family"]) == ("tcp", fam)
        # the client closed first: it waits in TIME_WAIT, the server is CLOSED
        assert (f["state"], f["orig_state"], f["reply_state"]) == \
            ("TIME_WAIT", "TIME_WAIT", "CLOSE"), f
    assert by_port[ports[0]]["bytes"][0] > 300_000
    rst = by_port[ports[1]]
    assert (rst["state"], rst["orig_state"], rst["reply_state"]) == ("CLOSE", "CLOSE", "CLOSE")
    udp = by_port[ports[3]]
    assert (udp["proto"], udp["state"], udp["packets"]) == ("udp", "ESTABLISHED", [1, 1])

    # Zeek's view of the same real connections (worked out from Zeek's rules): the client's
    # data (D), the server's ACKs (a) and answer (d), both FINs, the client's first: SF; the
    # aborted one ends with the client's RST: RSTO; UDP both ways SF (Dd), the probes S0 (D).
    # The 300 KB blast may fill the server's receive buffer: its zero window is a "w" (seen
    # here: ShADawdFf), as Zeek would log it.
    for port in (ports[0], ports[2]):
        z = by_port[port]
        assert z["conn_state"] == "SF" and z["history"].startswith("ShAD"), z
        assert set("ShADadFf") <= set(z["history"]) <= set("ShADadFfw"), z
        assert z["history"].index("F") < z["history"].index("f"), z
    assert (rst["conn_state"], rst["history"]) == ("RSTO", "ShADadR"), rst
    assert (udp["conn_state"], udp["history"]) == ("SF", "Dd")
    assert (by_port[probe_port]["conn_state"], by_port[probe_port]["history"]) == ("S0", "D")
    rows = [json.loads(x) for x in ctrack("replay", "-o", "zeek", path).stdout.splitlines()]
    assert len(rows) == 5 and {r["id.resp_p"] for r in rows} == set(ports + [probe_port])
    big = next(r for r in rows if r["id.resp_p"] == ports[0])
    assert big["orig_bytes"] == 300_000 and big["resp_bytes"] == len("300000")   # seq space

    # The same capture cut to 96 bytes a packet replays to the same verdicts and counters.
    if EDITCAP:
        cut = tmp_path / "lo96.pcapng"
        subprocess.run([EDITCAP, "-s", "96", path, cut], check=True, capture_output=True)
        assert replay_json(cut) == doc

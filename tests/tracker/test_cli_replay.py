"""`ctrack replay` as a user meets it: the installed command (the one on PATH) in a subprocess.

Help and examples, the text and JSON outputs (the JSON shape is a contract other tools read),
the --policy/--pickup/--timeout/--table-size options, and every way to hold it wrong: bad flags
(usage, exit 2), bad values and bad files (one line, exit 1), no root (one line, non-zero),
a reader that goes away (no traceback). Captures are written with scapy's wrpcap.
"""
import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time

import pytest
from scapy.layers.l2 import ARP, Ether
from scapy.utils import wrpcap

from helpers.wire import Clock, TcpConv, udp_frame

CTRACK = shutil.which("ctrack")
SETPRIV = shutil.which("setpriv")
pytestmark = pytest.mark.skipif(not CTRACK, reason="ctrack is not installed on PATH")


class Recorder:
    """A Replayer stand-in for TcpConv that records (timestamp ns, frame)."""

    def __init__(self):
        self.frames = []

    def run(self, frame, ts_ns, *a, **kw):
        self.frames.append((ts_ns, bytes(frame)))


def write_capture(path, frames):
    pkts = []
    for ts, f in frames:
        p = Ether(f)
        p.time = ts / 1e9
        pkts.append(p)
    wrpcap(str(path), pkts)
    return path


def ctrack(*args, timeout=120):
    return subprocess.run([CTRACK, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def ok(*args):
    r = ctrack(*args)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r.stdout


def one_line_error(r, *words, code=1):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("ctrack: "), lines[0]
    for w in words:
        assert w in lines[0], lines[0]
    assert r.stdout == ""
    return lines[0]


def usage_error(r, *words):
    """One line naming the problem and pointing at -h, exit 2."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("ctrack") and lines[0].endswith(" -h`)"), lines[0]
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture(scope="module")
def session_pcap(tmp_path_factory):
    """A handshake, data, an ARP frame, a UDP exchange, then a bare ACK of no flow."""
    rec, clock = Recorder(), Clock()
    t = TcpConv(rec, clock=clock)
    t.handshake()
    t.c("PA", b"hello")
    t.s("A")
    rec.run(bytes(Ether() / ARP(psrc="10.1.0.1", pdst="10.2.0.2")), clock.advance(0.001))
    rec.run(udp_frame("fd00::1", 5353, "fd00::2", 53, b"q"), clock.advance(0.001))
    rec.run(udp_frame("fd00::2", 53, "fd00::1", 5353, b"a"), clock.advance(0.001))
    stray = TcpConv(rec, client=("10.7.0.1", 1111), server=("10.2.0.2", 80), clock=clock)
    stray.c("A", seq=4242, ack=99)
    return write_capture(tmp_path_factory.mktemp("cli") / "session.pcap", rec.frames)


# ---- help ----------------------------------------------------------------------------------------
def test_top_level_help_shows_examples():
    out = ok("-h")
    assert out.startswith("usage: ctrack")
    assert "replay" in out and "examples:" in out and "ctrack replay " in out


def test_replay_help_shows_options_and_examples():
    out = ok("replay", "-h")
    for word in ("--policy", "--pickup", "--timeout", "--table-size", "--json", "examples:",
                 "ctrack replay --json", "UDP_NEW"):
        assert word in out, word


def test_no_command_prints_help_and_fails():
    r = ctrack()
    assert r.returncode == 2 and "usage: ctrack" in r.stdout and "Traceback" not in r.stderr


HELP_TOOLS = ([["ctrack-tcpstates"], ["ctrack-tcprtt"], ["ctrack-top"]]
              + [["ctrack", c] for c in ("replay", "run", "list", "events", "flush", "delete", "gc")]
              + [["ctrack-lab", c] for c in ("up", "down", "status", "exec", "set", "bridge",
                                             "list", "run")])


@pytest.mark.parametrize("argv", HELP_TOOLS, ids=[" ".join(a) for a in HELP_TOOLS])
def test_every_flag_a_help_names_is_listed(argv):
    """A flag the help text talks about (`see --ebpf`) is one the help lists; examples of other
    commands and `quoted` commands may name theirs."""
    import re
    h = subprocess.run([shutil.which(argv[0]) or argv[0], *argv[1:], "-h"], capture_output=True,
                       text=True, timeout=60).stdout
    assert h.startswith("usage:"), h
    listed = {"--help"}
    for line in h.splitlines():
        m = re.match(r"\s+(?:-\w(?: \S+)?, )?(--[a-z][a-z0-9-]*)", line)
        if m:
            listed.add(m.group(1))
    own = " ".join(argv)
    said = []
    for line in h.splitlines():
        s = line.strip()
        if re.match(r"(sudo )?ctrack", s):   # an example: only our own command's flags count
            if (s.split("#")[0] + " ").startswith(own + " "):
                said.append(s.split("#")[0])
        else:
            said.append(re.sub(r"`[^`]*`", "", line))
    mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", "\n".join(said)))
    assert mentioned <= listed, f"named in -h but not listed: {sorted(mentioned - listed)}"


# ---- outputs -------------------------------------------------------------------------------------
PACKET_KEYS = {"index", "verdict", "reason", "flow", "class", "time", "ts_ns", "proto", "family",
               "src", "sport", "dst", "dport", "tcp_flags", "payload_len", "icmp", "quoted"}


def _cols(line):
    """A packet line's fixed columns and the packet: (NO, TIME, VERDICT, CLASS, REASON, STATE,
    ENDPOINTS, PACKET)."""
    parts = line.split(None, 7)
    return parts


def test_text_output(session_pcap):
    # --no-pickup: packet 8, a mid-stream ACK, stays INVALID tcp_no_flow (observe picks it up by
    # default: test_pickup_default_follows_the_policy)
    lines = ok("replay", "--no-pickup", session_pcap).splitlines()
    assert lines[0].split() == ["NO", "TIME", "VERDICT", "CLASS", "REASON", "STATE", "ENDPOINTS",
                                "PACKET"]
    pk = lines[1:10]
    # fixed columns: every packet starts where the header's PACKET does
    at = lines[0].index("PACKET")
    assert all(len(x) > at and x[at - 1] == " " and x[at] != " " for x in pk), pk
    assert _cols(pk[0])[:7] == ["0", "0.000000", "pass", "NEW", "-", "SYN_SENT",
                                "SYN_SENT/SYN_RECV"]
    assert _cols(pk[0])[7].startswith("10.1.0.1:40000 > 10.2.0.2:80 tcp [S] seq=1000 ack=0")
    assert _cols(pk[1])[2:7] == ["pass", "ESTABLISHED", "-", "SYN_RECV", "ESTABLISHED/SYN_RECV"]
    assert _cols(pk[2])[5:7] == ["ESTABLISHED", "ESTABLISHED/ESTABLISHED"]
    assert _cols(pk[5])[2:] == ["pass", "UNTRACKED", "-", "-", "-",
                                "arp who-has 10.2.0.2 tell 10.1.0.1"]
    assert _cols(pk[6])[2:] == ["pass", "NEW", "-", "NEW", "-",
                                "[fd00::1]:5353 > [fd00::2]:53 udp len=1"]
    assert _cols(pk[7])[2:7] == ["pass", "ESTABLISHED", "-", "ESTABLISHED", "-"]
    assert _cols(pk[8])[2:7] == ["pass", "INVALID", "tcp_no_flow", "-", "-"]
    assert lines[10] == ""
    assert lines[11] == "flows (2):"
    assert lines[12].split()[:4] == ["tcp", "ESTABLISHED", "10.1.0.1:40000", "->"]
    assert "pkts=3/2" in lines[12]
    assert lines[13].split()[:2] == ["udp", "ESTABLISHED"]
    assert len(lines) == 14


def test_json_contract(session_pcap):
    doc = json.loads(ok("replay", "--json", "--no-pickup", session_pcap))
    assert set(doc) == {"packets", "flows"}
    pk = doc["packets"]
    assert [p["index"] for p in pk] == list(range(9))
    for p in pk:
        assert set(p) == PACKET_KEYS
        assert p["verdict"] == "pass"
        if p["flow"] is not None:
            assert set(p["flow"]) == {"state", "orig_state", "reply_state"}
    assert pk[0]["flow"] == {"state": "SYN_SENT", "orig_state": "SYN_SENT",
                             "reply_state": "SYN_RECV"}
    assert pk[0]["reason"] is None
    # ARP: no flow, untracked, named
    assert {k: pk[5][k] for k in ("index", "verdict", "reason", "flow", "class", "proto")} == {
        "index": 5, "verdict": "pass", "reason": None, "flow": None, "class": "untracked",
        "proto": "arp"}
    assert pk[6]["flow"] == {"state": "NEW", "orig_state": None, "reply_state": None}
    # observe: the reason is reported, the packet passes, it has no flow
    assert {k: pk[8][k] for k in ("index", "verdict", "reason", "flow", "class")} == {
        "index": 8, "verdict": "pass", "reason": "tcp_no_flow", "flow": None, "class": "invalid"}
    tcp, udp = doc["flows"]
    assert set(tcp) == {"proto", "family", "orig", "state", "orig_state", "reply_state",
                        "packets", "bytes", "rtt", "tcp_options", "conn_state", "history"}
    # passive RTT and the SYNs' options (tests/tracker/test_rtt.py, tests/tracker/test_tcpopts.py check values)
    rtt, opts = tcp.pop("rtt"), tcp.pop("tcp_options")
    assert set(rtt) == {"handshake_us", "srtt_us", "min_us", "samples", "orig", "reply"}
    for side in ("orig", "reply"):
        assert set(rtt[side]) == {"srtt_us", "min_us", "last_us", "samples", "handshake_us"}
    assert set(opts) == {"orig", "reply"}
    assert (udp.pop("rtt"), udp.pop("tcp_options")) == (None, None)
    assert tcp == {"proto": "tcp", "family": 4,
                   "orig": {"src": "10.1.0.1", "sport": 40000, "dst": "10.2.0.2", "dport": 80},
                   "state": "ESTABLISHED", "orig_state": "ESTABLISHED",
                   "reply_state": "ESTABLISHED", "packets": [3, 2], "bytes": [145, 100],
                   "conn_state": "S1", "history": "ShADa"}
    assert udp == {"proto": "udp", "family": 6,
                   "orig": {"src": "fd00::1", "sport": 5353, "dst": "fd00::2", "dport": 53},
                   "state": "ESTABLISHED", "orig_state": None, "reply_state": None,
                   "packets": [1, 1], "bytes": [49, 49], "conn_state": "SF", "history": "Dd"}


def test_no_zeek_json_and_text(session_pcap):
    """--no-zeek: the same verdicts and flows, conn_state and history null in the JSON (the keys
    stay, as --no-rtt's rtt stays with nulls), no zeek= in the text's flow lines."""
    full = json.loads(ok("replay", "--json", "--no-pickup", session_pcap))
    doc = json.loads(ok("replay", "--json", "--no-pickup", "--no-zeek", session_pcap))
    assert doc["packets"] == full["packets"]
    assert [(f["conn_state"], f["history"]) for f in doc["flows"]] == [(None, None), (None, None)]
    strip = lambda fl: [{k: v for k, v in f.items() if k not in ("conn_state", "history")} for f in fl]  # noqa: E731
    assert strip(doc["flows"]) == strip(full["flows"])
    text = ok("replay", "--no-pickup", "--no-zeek", session_pcap)
    assert "zeek=" not in text and "ESTABLISHED" in text


def test_o_zeek_refused_without_zeek(session_pcap):
    one_line_error(ctrack("replay", "-o", "zeek", "--no-zeek", session_pcap), "-o zeek", "--no-zeek")


@pytest.fixture(scope="module")
def mixed_pcap(tmp_path_factory):
    """A UDP exchange, the ICMP port unreachable RELATED to it, a TCP handshake with data, and
    what the tracker does not track: ARP reply, IGMP, ICMP echo, LLDP, a later IPv4 fragment."""
    from scapy.contrib.igmp import IGMP
    from scapy.layers.inet import ICMP, IP, UDP
    rec, clock = Recorder(), Clock()
    rec.run(udp_frame("10.1.0.1", 5000, "10.2.0.2", 53, b"query"), clock.advance(0.001))
    rec.run(udp_frame("10.2.0.2", 53, "10.1.0.1", 5000, b"answer!"), clock.advance(0.001))
    rec.run(bytes(Ether() / IP(src="10.2.0.2", dst="10.1.0.1") / ICMP(type=3, code=3)
                  / IP(src="10.1.0.1", dst="10.2.0.2") / UDP(sport=5000, dport=53)),
            clock.advance(0.001))
    t = TcpConv(rec, clock=clock)
    t.handshake()
    t.c("PA", b"hello")
    rec.run(bytes(Ether() / ARP(op=2, psrc="10.2.0.2", hwsrc="02:00:00:00:00:02",
                                pdst="10.1.0.1")), clock.advance(0.001))
    rec.run(bytes(Ether() / IP(src="10.1.0.1", dst="224.0.0.22") / IGMP()), clock.advance(0.001))
    rec.run(bytes(Ether() / IP(src="10.1.0.1", dst="10.2.0.2") / ICMP()), clock.advance(0.001))
    rec.run(bytes(Ether(type=0x88CC) / (b"\x02" * 46)), clock.advance(0.001))
    rec.run(bytes(Ether() / IP(src="10.1.0.1", dst="10.2.0.2", proto=17, frag=185)
                  / (b"x" * 40)), clock.advance(0.001))
    return write_capture(tmp_path_factory.mktemp("mixed") / "mixed.pcap", rec.frames), rec.frames


def test_json_packets_say_what_they_are(mixed_pcap):
    """Each packet object carries its class (names from kernel/ctrack.h), capture time,
    protocol, addresses, ports, TCP flags and payload length: no re-parsing of the capture."""
    from ctrack.engine.defs import defs
    path, frames = mixed_pcap
    pk = json.loads(ok("replay", "--json", path))["packets"]
    assert all(set(p) == PACKET_KEYS for p in pk)
    assert {p["class"] for p in pk} == {n.lower() for n in defs().ct_class.names()} - {"invalid"}
    assert [p["ts_ns"] for p in pk] == [ts for ts, _ in frames]
    assert all(abs(p["time"] - p["ts_ns"] / 1e9) < 1e-6 for p in pk)
    udp_q, udp_a, icmp, syn, synack, ack, data, arp, igmp, echo, lldp, frag = pk
    assert {k: udp_q[k] for k in ("class", "proto", "family", "src", "sport", "dst", "dport",
                                  "tcp_flags", "payload_len")} == {
        "class": "new", "proto": "udp", "family": 4, "src": "10.1.0.1", "sport": 5000,
        "dst": "10.2.0.2", "dport": 53, "tcp_flags": None, "payload_len": 5}
    assert (udp_a["class"], udp_a["src"], udp_a["sport"], udp_a["payload_len"]) == (
        "established", "10.2.0.2", 53, 7)
    # the ICMP error: RELATED, its own addresses, type and code, and the packet it quotes
    assert icmp["class"] == "related" and icmp["verdict"] == "pass" and icmp["reason"] is None
    assert (icmp["proto"], icmp["src"], icmp["dst"], icmp["sport"]) == (
        "icmp", "10.2.0.2", "10.1.0.1", None)
    assert icmp["icmp"] == {"type": 3, "code": 3}
    assert icmp["quoted"] == {"proto": "udp", "src": "10.1.0.1", "sport": 5000,
                              "dst": "10.2.0.2", "dport": 53}
    assert icmp["flow"]["state"] == "ESTABLISHED"
    assert (syn["class"], syn["tcp_flags"], syn["payload_len"]) == ("new", "S", 0)
    assert (synack["tcp_flags"], ack["tcp_flags"]) == ("S.", ".")
    assert (data["class"], data["tcp_flags"], data["payload_len"], data["sport"]) == (
        "established", "P.", 5, 40000)
    assert (arp["class"], arp["proto"], arp["src"], arp["dst"]) == (
        "untracked", "arp", "10.2.0.2", "10.1.0.1")
    assert (igmp["class"], igmp["proto"], igmp["dst"]) == ("untracked", "igmp", "224.0.0.22")
    assert (echo["proto"], echo["icmp"]) == ("icmp", {"type": 8, "code": 0})
    assert (lldp["class"], lldp["proto"], lldp["family"], lldp["src"]) == (
        "untracked", "lldp", None, None)
    assert (frag["class"], frag["proto"], frag["sport"]) == ("untracked", "udp", None)


def test_text_names_what_is_not_tracked(mixed_pcap):
    path, _ = mixed_pcap
    lines = ok("replay", path).splitlines()
    pk = [_cols(x) for x in lines[1:13]]
    assert pk[0][7] == "10.1.0.1:5000 > 10.2.0.2:53 udp len=5"
    assert pk[1][7] == "10.2.0.2:53 > 10.1.0.1:5000 udp len=7"
    assert pk[2][2:6] == ["pass", "RELATED", "-", "ESTABLISHED"]
    assert pk[2][7] == ("icmp 10.2.0.2 > 10.1.0.1 error type=3 code=3 about "
                        "10.1.0.1:5000 > 10.2.0.2:53 udp")
    assert pk[7][3] == "UNTRACKED" and pk[7][7] == "arp reply 10.2.0.2 is-at 02:00:00:00:00:02"
    assert pk[8][7] == "10.1.0.1 > 224.0.0.22 igmp"
    assert pk[9][7] == "10.1.0.1 > 10.2.0.2 icmp echo request"
    assert pk[10][7] == "lldp"
    assert pk[11][7] == "10.1.0.1 > 10.2.0.2 udp fragment off=1480"
    assert all(p[4] == "-" for p in pk)


def test_enforce_drops_invalid_only(session_pcap):
    doc = json.loads(ok("replay", "--json", "--policy", "enforce", session_pcap))
    verdicts = [p["verdict"] for p in doc["packets"]]
    assert verdicts == ["pass"] * 8 + ["drop"]
    last = ok("replay", "--policy", "enforce", session_pcap).splitlines()[9]
    assert _cols(last)[2:5] == ["drop", "INVALID", "tcp_no_flow"]


def test_pickup_opens_a_flow_from_a_mid_stream_ack(session_pcap):
    doc = json.loads(ok("replay", "--json", "--pickup", "--policy", "enforce", session_pcap))
    last = doc["packets"][8]
    assert (last["verdict"], last["reason"]) == ("pass", None)
    assert last["flow"] == {"state": "ESTABLISHED", "orig_state": "ESTABLISHED",
                            "reply_state": "ESTABLISHED"}
    assert {f["orig"]["src"] for f in doc["flows"]} == {"10.1.0.1", "fd00::1", "10.7.0.1"}


def test_pickup_default_follows_the_policy(session_pcap):
    """Packet 8 is a mid-stream ACK: observe picks it up unless --no-pickup; enforce refuses it
    (drops it) unless --pickup."""
    def last(*args):
        p = json.loads(ok("replay", "--json", *args, session_pcap))["packets"][8]
        return p["verdict"], p["reason"], p["flow"] is not None
    assert last() == ("pass", None, True)
    assert last("--no-pickup") == ("pass", "tcp_no_flow", False)
    assert last("--policy", "enforce") == ("drop", "tcp_no_flow", False)
    assert last("--policy", "enforce", "--pickup") == ("pass", None, True)
    r = ctrack("replay", "--pickup", "--no-pickup", session_pcap)
    assert r.returncode == 2 and "not allowed with" in r.stderr and "Traceback" not in r.stderr


def test_table_size(tmp_path):
    """--table-size 1: one assured flow fills the table; the next flow's SYN finds no room."""
    rec, clock = Recorder(), Clock()
    a = TcpConv(rec, clock=clock)
    a.handshake()
    b = TcpConv(rec, client=("10.3.0.1", 3333), server=("10.2.0.2", 80), clock=clock)
    b.c("S")
    cap = write_capture(tmp_path / "two.pcap", rec.frames)
    doc = json.loads(ok("replay", "--json", "--table-size", "1", cap))
    assert doc["packets"][3]["reason"] == "table_full"
    assert len(doc["flows"]) == 1
    doc = json.loads(ok("replay", "--json", cap))
    assert doc["packets"][3]["reason"] is None and len(doc["flows"]) == 2
    one_line_error(ctrack("replay", "--table-size", "0", cap), "table size")


def test_lowercase_timeout_name_is_accepted(session_pcap):
    doc = json.loads(ok("replay", "--json", "--timeout", "udp_new=5", "--timeout",
                        "established=100", session_pcap))
    assert len(doc["packets"]) == 9


def test_empty_capture(tmp_path):
    p = write_capture(tmp_path / "empty.pcap", [])
    assert json.loads(ok("replay", "--json", p)) == {"packets": [], "flows": []}
    assert "flows (0):" in ok("replay", p)


def test_reader_going_away_is_quiet(tmp_path):
    """`ctrack replay big.pcap | head -1`: the pipe closes under the writer; no traceback."""
    rec, clock = Recorder(), Clock()
    frame = udp_frame("10.1.0.1", 5353, "10.2.0.2", 53, b"q")
    for _ in range(3000):
        rec.run(frame, clock.advance(0.001))
    cap = write_capture(tmp_path / "many.pcap", rec.frames)
    p = subprocess.Popen([CTRACK, "replay", str(cap)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    header, first = p.stdout.readline(), p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read()
    rc = p.wait(60)
    assert header.split()[0] == "NO" and "udp" in first
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert rc == 0


# ---- wrong usage ---------------------------------------------------------------------------------
@pytest.mark.parametrize("args, words", [
    (["replay", "--bogus"], ["ctrack replay: unrecognized arguments: --bogus", "ctrack replay -h"]),
    (["replay", "--policy", "nope"], ["--policy", "nope"]),
    (["replay"], ["FILE"]),
    (["replay", "--table-size", "many"], ["--table-size"]),
    (["nosuchcommand"], ["nosuchcommand"]),
], ids=["unknown-flag", "bad-policy", "no-file", "table-size-not-int", "unknown-command"])
def test_bad_usage_is_one_line_and_exits_2(session_pcap, args, words):
    if args[-1] == "--bogus":
        args = args + [session_pcap]
    usage_error(ctrack(*args), *words)


@pytest.mark.parametrize("spec, words", [
    ("BOGUS=1", ["BOGUS", "unknown"]),
    ("ESTABLISHED=abc", ["ESTABLISHED=abc"]),
    ("ESTABLISHED", ["STATE=SECONDS"]),
    ("ESTABLISHED=-5", ["ESTABLISHED=-5"]),
    ("=5", ["=5"]),
], ids=["unknown-state", "not-a-number", "no-value", "negative", "no-name"])
def test_bad_timeout_is_one_line(session_pcap, spec, words):
    one_line_error(ctrack("replay", "--timeout", spec, session_pcap), "--timeout", *words)


def test_bad_files_are_one_line(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("this is not a capture\n")
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    short = tmp_path / "short.pcap"
    short.write_bytes(bytes.fromhex("d4c3b2a1020004000000"))
    one_line_error(ctrack("replay", text), "not a pcap or pcapng")
    one_line_error(ctrack("replay", empty), "not a pcap or pcapng")
    one_line_error(ctrack("replay", short), "truncated")
    one_line_error(ctrack("replay", tmp_path / "missing.pcap"), "no such file")
    one_line_error(ctrack("replay", tmp_path), "directory")


@pytest.mark.skipif(not SETPRIV, reason="setpriv (util-linux) not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")
def test_without_root_says_so_in_one_line(session_pcap):
    # a copy anyone may read, in a directory anyone may enter: all that is missing is root
    d = tempfile.mkdtemp(prefix="ctrack-noroot-")
    try:
        os.chmod(d, 0o755)
        cap = os.path.join(d, "s.pcap")
        shutil.copy(session_pcap, cap)
        os.chmod(cap, 0o644)
        r = subprocess.run([SETPRIV, "--reuid=65534", "--regid=65534", "--clear-groups",
                            CTRACK, "replay", cap], capture_output=True, text=True, timeout=60,
                           cwd="/")
        assert r.returncode != 0
        assert "Traceback" not in r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "root" in lines[0], r.stderr
        assert r.stdout == ""
    finally:
        shutil.rmtree(d)


def test_interrupt_mid_replay_is_quiet(tmp_path):
    """Ctrl-C (SIGINT) or SIGTERM while replaying a long capture: exit 130, nothing on stderr."""
    f = udp_frame("10.1.0.1", 5353, "10.2.0.2", 53, b"q")
    # 200k packets (about 4 s of replay), written directly: scapy is too slow for this many
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    recs = b"".join(struct.pack("<IIII", 1_700_000_000 + i // 1000, i % 1000 * 1000, len(f),
                                len(f)) + f for i in range(200_000))
    cap = tmp_path / "long.pcap"
    cap.write_bytes(head + recs)
    for sig in (signal.SIGINT, signal.SIGTERM):
        p = subprocess.Popen([CTRACK, "replay", str(cap)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        time.sleep(2)                # compiled (about 1 s), replaying
        p.send_signal(sig)           # our own child, by its pid
        err = p.stderr.read()
        assert p.wait(30) == 130
        assert err == "", err


def two_udp_packets(tmp_path, gap):
    rec, clock = Recorder(), Clock()
    f = udp_frame("10.1.0.1", 5353, "10.2.0.2", 53, b"q")
    rec.run(f, clock.now)
    rec.run(f, clock.advance(gap))
    return write_capture(tmp_path / "udp2.pcap", rec.frames)


def test_absurd_timeout_is_refused_or_honoured(tmp_path):
    cap = two_udp_packets(tmp_path, 1.0)
    r = ctrack("replay", "--timeout", "UDP_NEW=18446744074", cap)
    if r.returncode != 0:
        one_line_error(r, "--timeout")
    else:
        assert "pass ESTABLISHED" in r.stdout.splitlines()[1], r.stdout


def test_table_size_beyond_u32_is_refused(tmp_path):
    one_line_error(ctrack("replay", "--table-size", str(2**32 + 1), two_udp_packets(tmp_path, 1)),
                   "table size")


def test_table_size_too_big_to_allocate_is_one_clear_line(tmp_path):
    line = one_line_error(ctrack("replay", "--table-size", "2000000000",
                                 two_udp_packets(tmp_path, 1)))
    assert "compile" not in line and ("memory" in line or "table" in line), line

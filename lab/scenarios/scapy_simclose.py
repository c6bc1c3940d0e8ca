"""Simultaneous close built with scapy: both FINs cross, CLOSING/CLOSING, then TIME_WAIT on both sides.

No socket can be made to close simultaneously on cue, so both ends are played by scapy: one
process opens an AF_PACKET socket on eth0 inside each host's namespace (setns, then socket: a
socket stays in the namespace it was made in) and sends, 20 ms apart, a whole conversation
from both sides: SYN, SYN/ACK, ACK, 5 bytes of data and their ACK, then the client's FIN and
the server's FIN, neither acknowledging the other (they crossed on the wire), then each side's
ACK of the other's FIN. The hosts' own kernels have no socket for this connection and would
answer every segment with RST, which would reset the flow; an iptables rule in each host
(OUTPUT, RST dropped) silences them for the run and is removed afterwards. Its counters show
the kernels did try.

Expected (overall state, opener's/responder's endpoint states): after the crossed FINs both
endpoints are CLOSING (overall LAST_ACK, netfilter's name); each ACK of a crossed FIN moves its
receiver to TIME_WAIT; when both are acknowledged the flow is TIME_WAIT, closed by fin.
"""
import json
import subprocess
import time

CODE = "sc"
SPORT, DPORT = 41000, 7600
CLIENT_ISN, SERVER_ISN = 1000000, 5000000

# Events come only when the overall state changes, so the step in between (the client has
# acknowledged the server's FIN: CLOSING/TIME_WAIT, overall still LAST_ACK) is read from the
# table with `ctrack list` while the conversation is paused before its last segment.
BEFORE_LAST = [
    "SYN_SENT (SYN_SENT/SYN_RECV)",            # SYN
    "SYN_RECV (ESTABLISHED/SYN_RECV)",         # SYN/ACK
    "ESTABLISHED (ESTABLISHED/ESTABLISHED)",   # ACK (data and its ACK change nothing)
    "FIN_WAIT (FIN_WAIT1/CLOSE_WAIT)",         # client's FIN
    "LAST_ACK (CLOSING/CLOSING)",              # server's FIN, not acknowledging the client's
]
PAUSED = "LAST_ACK (CLOSING/TIME_WAIT)"        # client acknowledged the server's FIN
AFTER_LAST = [
    "TIME_WAIT (TIME_WAIT/TIME_WAIT)",         # server acknowledges the client's FIN
    "closed:fin",
]
PAUSE_BEFORE = 8                               # index of the server's ACK in the script

# Runs as a separate /usr/bin/python3: setns() would otherwise move the runner's own thread.
_PLAY = r"""
import ctypes, json, os, socket, sys, time
from scapy.all import Ether, IP, TCP
ns1, ns2, mac1, mac2, ip1, ip2, sport, dport, cisn, sisn = sys.argv[1:11]
sport, dport, cisn, sisn = int(sport), int(dport), int(cisn), int(sisn)
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000

def sock_in(ns):
    fd = os.open("/run/netns/" + ns, os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns " + ns)
    os.close(fd)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(("eth0", 0))
    return s

c_sock, s_sock = sock_in(ns1), sock_in(ns2)
opts = [("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]
def c(flags, seq, ack, data=b"", options=None):
    return c_sock, Ether(src=mac1, dst=mac2) / IP(src=ip1, dst=ip2) / TCP(
        sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=502, options=options or []) / data
def s(flags, seq, ack, data=b"", options=None):
    return s_sock, Ether(src=mac2, dst=mac1) / IP(src=ip2, dst=ip1) / TCP(
        sport=dport, dport=sport, flags=flags, seq=seq, ack=ack, window=509, options=options or []) / data
ci, si = cisn, sisn
script = [
    ("SYN", c("S", ci, 0, options=opts)),
    ("SYN/ACK", s("SA", si, ci + 1, options=opts)),
    ("ACK", c("A", ci + 1, si + 1)),
    ("data", c("PA", ci + 1, si + 1, b"hello")),
    ("ACK of data", s("A", si + 1, ci + 6)),
    ("client FIN", c("FA", ci + 6, si + 1)),
    ("server FIN (crossed)", s("FA", si + 1, ci + 6)),
    ("client ACK of server FIN", c("A", ci + 7, si + 2)),
    ("server ACK of client FIN", s("A", si + 2, ci + 7)),
]
pause = int(sys.argv[11])
for i, (name, (sock, pkt)) in enumerate(script):
    if i == pause:
        print(json.dumps({"paused": i}), flush=True)
        sys.stdin.readline()   # the runner looks at the tracker, then lets us go on
    sock.send(bytes(pkt))
    time.sleep(0.02)
print(json.dumps({"sent": [name for name, _ in script]}), flush=True)
"""


def rst_drops(lab, host, rule):
    """Packets counted by our RST-drop rule in HOST (iptables -v -x)."""
    res = lab.exec(host, ["iptables", "-v", "-x", "-n", "-L", "OUTPUT"], check=False)
    for line in res.stdout.splitlines():
        if "DROP" in line and "0x04/0x04" in line:
            return int(line.split()[0])
    return None


def run(s):
    from ctrack.lab.scenario import PY, steps
    lab = s.lab
    rule = ["OUTPUT", "-p", "tcp", "--tcp-flags", "RST", "RST", "-j", "DROP"]
    for h in ("ns1", "ns2"):
        s.iptables(h, rule)
    play = subprocess.Popen([PY, "-c", _PLAY, lab.netns("ns1"), lab.netns("ns2"), lab.mac("ns1"), lab.mac("ns2"),
                             lab.addr("ns1"), lab.addr("ns2"), str(SPORT), str(DPORT), str(CLIENT_ISN),
                             str(SERVER_ISN), str(PAUSE_BEFORE)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    s.cleanup(play.kill)
    first = play.stdout.readline()   # bounded: scapy's import, then 8 segments 20 ms apart
    if '"paused"' not in first:
        play.kill()
        s.check("scapy played the conversation", "paused before the last segment",
                (play.stderr.read().strip().splitlines() or ["nothing"])[-1])
        return
    s.tracker.wait_for(lambda e: e["state"] == "LAST_ACK", 1)
    time.sleep(0.1)
    flows = s.flows("tcp", DPORT)
    evs = flows[0][1] if flows else []
    s.check("events up to the client's ACK of the crossed FIN", BEFORE_LAST, steps(evs, True))
    table = s.list_flows()
    if table is None:
        s.note("this ctrack has no `ctrack list`: the paused state is not checked")
    else:
        mine = [f for f in table if f["orig"]["dport"] == DPORT]
        seen = (f"{mine[0]['state']} ({mine[0]['orig_state']}/{mine[0]['reply_state']})" if mine
                else "no such flow")
        s.check("ctrack list, paused before the server's ACK", PAUSED, seen)
    play.stdin.write("go\n")
    play.stdin.flush()
    try:
        out, err = play.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        play.kill()
        out, err = "", "timed out"
    sent = json.loads(out.strip().splitlines()[-1]).get("sent", []) if out.strip() else []
    s.check("scapy sent the whole conversation (segments)", 9, len(sent) if sent else (err.strip() or "?")[-80:])
    s.tracker.wait_for(lambda e: e["type"] == "closed", 2)
    evs = s.flows("tcp", DPORT)[0][1] if flows else []
    s.check("events after the server's ACK", AFTER_LAST, steps(evs, True)[len(BEFORE_LAST):])
    drops = {h: rst_drops(lab, h, rule) for h in ("ns1", "ns2")}
    # each kernel answers every segment it receives for no socket: ns1 gets the server's 4, ns2
    # the client's 5
    s.check("hosts' kernels' RSTs dropped (ns1 / ns2)", "4 / 5", f"{drops['ns1']} / {drops['ns2']}")
    summary = s.stop_tracker()
    s.check("INVALID packets", 0, summary["class.invalid"])
    s.check("flows created / closed by fin / by rst", "1 / 1 / 0",
            f"{summary['flows_created']} / {summary['closed_fin']} / {summary['closed_rst']}")

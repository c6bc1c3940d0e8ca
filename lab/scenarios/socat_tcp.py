"""socat TCP: handshake, half-close, plain 4-way close (FIN, ACK, FIN, ACK).

The client (ns1) sends a line and closes its side; the server (ns2) reads to end of file, waits
0.3 s (longer than any delayed ACK, so its kernel acknowledges the client's FIN on its own
instead of with its FIN), then answers `bye` toward the half-closed client and closes. Every
step of the close is its own segment, so the tracker must walk each endpoint through:
FIN_WAIT1/CLOSE_WAIT, FIN_WAIT2/CLOSE_WAIT, TIME_WAIT/LAST_ACK, TIME_WAIT/CLOSE, closed by fin.
"""
CODE = "st"
PORT = 7001

# overall state (opener's / responder's endpoint state), one event each
EXPECTED = [
    "SYN_SENT (SYN_SENT/SYN_RECV)",          # SYN
    "SYN_RECV (ESTABLISHED/SYN_RECV)",       # SYN/ACK
    "ESTABLISHED (ESTABLISHED/ESTABLISHED)", # ACK
    "FIN_WAIT (FIN_WAIT1/CLOSE_WAIT)",       # client's FIN
    "CLOSE_WAIT (FIN_WAIT2/CLOSE_WAIT)",     # its ACK, alone
    "LAST_ACK (TIME_WAIT/LAST_ACK)",         # server's FIN (after `bye`)
    "TIME_WAIT (TIME_WAIT/CLOSE)",           # the last ACK
    "closed:fin",
]


def run(s):
    from ctrack.lab.scenario import steps
    lab = s.lab
    srv = lab.spawn("ns2", ["socat", "-T5", f"TCP-LISTEN:{PORT},reuseaddr",
                            "SYSTEM:cat >/dev/null; sleep 0.3; echo bye"])
    s.cleanup(srv.stop)
    s.wait_listening("ns2", PORT)
    # -t 3: after its own end of file, the client keeps reading the server's half for up to 3 s
    res = lab.exec("ns1", ["socat", "-t3", "-T5", "-", f"TCP:{lab.addr('ns2')}:{PORT}"],
                   input="hello\n", check=False, timeout=15)
    s.check("data after the client's FIN reaches it (half-close)", "bye", res.stdout.strip())
    s.tracker.wait_for(lambda e: e["type"] == "closed", 3)
    flows = s.flows("tcp", PORT)
    s.check("flows to the port", 1, len(flows))
    evs = flows[0][1] if flows else []
    s.check("state (opener/responder) per event", EXPECTED, steps(evs, endpoints=True))
    if evs:
        last = evs[-1]
        # opener: SYN, ACK, hello, FIN, then its ACKs of bye and of the FIN (one if delayed);
        # responder: SYN/ACK, ACK of hello, ACK of FIN, bye, FIN
        s.check("packets opener / responder at close", ">=5 / >=5",
                f"{last['packets'][0]} / {last['packets'][1]}",
                ok=last["packets"][0] >= 5 and last["packets"][1] >= 5)
    summary = s.stop_tracker()
    s.check("INVALID packets", 0, summary["class.invalid"])
    s.check("flows created / closed by fin", "1 / 1", f"{summary['flows_created']} / {summary['closed_fin']}")

"""iperf3 TCP (-t 2): handshakes, data ESTABLISHED throughout, control closed by FIN+ACK.

Both connections' handshakes, the data stream ESTABLISHED throughout, the control connection's
close with the FIN piggybacked on an ACK.

What iperf3 3.12 does on the wire (seen in a capture on ns1, and checked here each run):
  - two connections from the client (ns1) to 5201: control first, then one data stream;
  - the data stream never closes with FINs: at the end of the test the server closes its data
    socket with data still unread, so its kernel sends RST+ACK: the tracker must go straight
    from ESTABLISHED to CLOSE (closed: rst), with no state change in between;
  - the server closes the control connection first (FIN+ACK); the client answers with one
    segment carrying its own FIN and the ACK of the server's FIN, so the responder goes
    FIN_WAIT1 -> TIME_WAIT without FIN_WAIT2 and the opener CLOSE_WAIT -> LAST_ACK; the
    server's last ACK closes the flow (TIME_WAIT, closed: fin).
No packet of either connection may be INVALID.
"""
import json

CODE = "ip"
PORT = 5201

HANDSHAKE = ["SYN_SENT (SYN_SENT/SYN_RECV)", "SYN_RECV (ESTABLISHED/SYN_RECV)",
             "ESTABLISHED (ESTABLISHED/ESTABLISHED)"]
DATA = HANDSHAKE + ["CLOSE (CLOSE/CLOSE)", "closed:rst"]
CONTROL = HANDSHAKE + [
    "FIN_WAIT (CLOSE_WAIT/FIN_WAIT1)",   # server's FIN+ACK
    "LAST_ACK (LAST_ACK/TIME_WAIT)",     # client's FIN piggybacked on the ACK of it
    "TIME_WAIT (CLOSE/TIME_WAIT)",       # server's last ACK
    "closed:fin",
]


def run(s):
    from ctrack.labscenario import steps
    lab = s.lab
    cap = s.sniff("ns1", PORT, seconds=30, ctl_only=True)
    srv = lab.spawn("ns2", ["iperf3", "-s", "-1"])
    s.cleanup(srv.stop)
    s.wait_listening("ns2", PORT)
    res = lab.exec("ns1", ["iperf3", "-c", lab.addr("ns2"), "-t", "2", "--json", "--connect-timeout", "3000"],
                   check=False, timeout=30)
    try:
        report = json.loads(res.stdout)
    except ValueError:
        report = {}
    sent = report.get("end", {}).get("sum_sent", {})
    s.check("iperf3 ran (exit status)", 0, res.returncode)
    s.note(f"iperf3: {sent.get('bits_per_second', 0) / 1e9:.2f} Gbit/s, {sent.get('bytes', 0)} bytes, "
           f"{sent.get('retransmits', '?')} retransmits")
    s.tracker.wait_for(lambda e: e["type"] == "closed" and e["reason"] == "fin", 3)
    srv.wait(5)

    flows = s.flows("tcp", PORT)
    s.check("connections to 5201 (control, data)", 2, len(flows))
    if len(flows) != 2:
        return
    # control first (it opens first), data the bigger one: check both ways agree
    (cid, control), (did, data) = flows
    s.check("the later connection carries the data", "data bytes > control bytes",
            f"{data[-1]['bytes'][0]} > {control[-1]['bytes'][0]}", ok=data[-1]["bytes"][0] > control[-1]["bytes"][0])
    s.check("data stream: handshake, ESTABLISHED to its end, then the server's RST", DATA, steps(data, True))
    s.check("control: handshake, server's FIN, client's FIN+ACK, last ACK", CONTROL, steps(control, True))

    # the wire's own account (capture in ns1), to show the tracker read the right segments
    ctl = [p for p in cap.seen() if p["sport"] in (cid[2], PORT) and p["dport"] in (cid[2], PORT)
           and (p["sport"] == cid[2] or p["dport"] == cid[2])]
    fins = [p for p in ctl if "F" in p["flags"]]
    srv_fin = next((p for p in fins if p["sport"] == PORT), None)
    cli_fin = next((p for p in fins if p["dport"] == PORT), None)
    s.check("capture: server's FIN came first", "server", "server" if fins and fins[0]["sport"] == PORT else
            ("client" if fins else "no FIN captured"))
    if srv_fin and cli_fin:
        s.check("capture: client's FIN is on the ACK of the server's FIN",
                f"flags FA, ack {(srv_fin['seq'] + 1) % 2**32}", f"flags {cli_fin['flags']}, ack {cli_fin['ack']}",
                ok=cli_fin["flags"] == "FA" and cli_fin["ack"] == (srv_fin["seq"] + 1) % 2**32)
    rsts = [p for p in cap.seen() if "R" in p["flags"] and (p["sport"] == did[2] or p["dport"] == did[2])]
    s.check("capture: data stream ended by the server's RST", "RA from 5201",
            ", ".join(f"{p['flags']} from {p['sport']}" for p in rsts) or "no RST", ok=any(p["sport"] == PORT for p in rsts))

    # bytes: the tracker counts at the IP layer, so at least the payload iperf3 sent, plus headers
    if sent.get("bytes"):
        got = data[-1]["bytes"][0]
        s.check("tracker's data bytes / iperf3's payload bytes", "1.00-1.05", f"{got / sent['bytes']:.4f}",
                ok=1.0 <= got / sent["bytes"] <= 1.05)

    summary = s.stop_tracker()
    s.check("INVALID packets", 0, summary["class.invalid"])
    s.check("flows created / closed by fin / closed by rst", "2 / 1 / 1",
            f"{summary['flows_created']} / {summary['closed_fin']} / {summary['closed_rst']}")

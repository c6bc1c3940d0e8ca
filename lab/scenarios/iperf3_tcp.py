"""iperf3 TCP (-t 2): handshakes, data ESTABLISHED throughout, each close as the wire shows it.

iperf3 3.12 opens two connections from the client (ns1) to 5201: control first, then the data
stream (bound here to client port 45201 with --cport). Both handshakes must read
SYN_SENT -> SYN_RECV -> ESTABLISHED with the endpoint states of each step, and no packet of
either connection may be INVALID while it is open. How they end is up to iperf3 and timing;
12 runs here saw:
  - control: usually the server's FIN first and the client's FIN piggybacked on the ACK of it
    (the responder then goes FIN_WAIT1 -> TIME_WAIT with no FIN_WAIT2, the opener CLOSE_WAIT ->
    LAST_ACK); sometimes the client's FIN first, answered the same way; once the two FINs
    crossed (neither acknowledging the other: CLOSING/CLOSING, a real simultaneous close);
  - data: usually the server's RST+ACK (it closes its socket with data unread), so the flow goes
    straight from ESTABLISHED to CLOSE, closed: rst; sometimes FINs like the control; once a FIN
    and then a RST from the server.
Segments still in flight when a RST passes belong to the closed flow and pass (the flow stays
CLOSE); no INVALID packet is allowed.

So the expected close of each connection is derived from a capture in ns1 (the referee): which
FIN came first is told by the ACK numbers (a FIN that acknowledges the other's came second; if
neither does, they crossed), a separate ACK of the first FIN adds the CLOSE_WAIT step, and a
RST ends the flow in CLOSE. The control connection is captured whole, so its expected path is
exact; of the data stream only SYN/FIN/RST segments are captured (a Python capture cannot keep
up with the bulk), so whether the client's data acknowledged the server's FIN before the
client's own FIN (the CLOSE_WAIT step) is left open there. Whatever the ending, nothing may
happen between ESTABLISHED and the first FIN or RST.
"""
import json

CODE = "ip"
PORT, DATA_CPORT = 5201, 45201

HANDSHAKE = ["SYN_SENT (SYN_SENT/SYN_RECV)", "SYN_RECV (ESTABLISHED/SYN_RECV)",
             "ESTABLISHED (ESTABLISHED/ESTABLISHED)"]


def _after(a, b):
    return (a - b) % 2**32 < 2**31 and a != b


def _fin_end(p):
    return (p["seq"] + p["len"] + 1) % 2**32


def expected_closes(segs, complete):
    """The close paths (events after ESTABLISHED) a connection's captured segments allow.
    segs: its packets in capture order, each marked "c" (client, the opener) or "s" in p["by"].
    complete: every segment was captured (else pure ACKs may be missing)."""
    fin = {}
    rst = None
    for p in segs:
        if "R" in p["flags"]:
            rst = p
            break
        if "F" in p["flags"] and p["by"] not in fin:
            fin[p["by"]] = p
    if not fin:
        return [["CLOSE (CLOSE/CLOSE)", "closed:rst"]] if rst else [["(no close captured)"]]

    def states(first, o, r):
        """(opener/responder) text from the first closer's and the other's state."""
        return f"({o}/{r})" if first == "c" else f"({r}/{o})"

    def acks(x, y):
        """x's FIN acknowledges y's FIN."""
        return x in fin and y in fin and "A" in fin[x]["flags"] and not _after(_fin_end(fin[y]), fin[x]["ack"])

    if len(fin) == 2 and not acks("c", "s") and not acks("s", "c"):
        # crossed: the tracker may have seen either FIN first
        tail = ["LAST_ACK (CLOSING/CLOSING)"]
        tail += ["CLOSE (CLOSE/CLOSE)", "closed:rst"] if rst else ["TIME_WAIT (TIME_WAIT/TIME_WAIT)", "closed:fin"]
        return [["FIN_WAIT (FIN_WAIT1/CLOSE_WAIT)"] + tail, ["FIN_WAIT (CLOSE_WAIT/FIN_WAIT1)"] + tail]
    first = "s" if (len(fin) == 1 and "s" in fin) or acks("c", "s") else "c"
    other = "c" if first == "s" else "s"
    head = [f"FIN_WAIT {states(first, 'FIN_WAIT1', 'CLOSE_WAIT')}"]
    # did the other side acknowledge the first FIN before sending its own (or the RST came)?
    stop = fin.get(other) or rst
    acked = [p for p in segs[:segs.index(stop)] if p["by"] == other and "F" not in p["flags"]
             and "A" in p["flags"] and not _after(_fin_end(fin[first]), p["ack"])] if stop else []
    wait2 = f"CLOSE_WAIT {states(first, 'FIN_WAIT2', 'CLOSE_WAIT')}"
    options = [[wait2]] if acked else ([[]] if complete else [[], [wait2]])
    if other in fin:
        tail = [f"LAST_ACK {states(first, 'TIME_WAIT', 'LAST_ACK')}"]
        if rst:
            tail += ["CLOSE (CLOSE/CLOSE)", "closed:rst"]
        else:
            tail += [f"TIME_WAIT {states(first, 'TIME_WAIT', 'CLOSE')}", "closed:fin"]
    else:
        tail = ["CLOSE (CLOSE/CLOSE)", "closed:rst"] if rst else ["(no second FIN captured)"]
    return [head + o + tail for o in options]


def how(segs):
    return ", ".join(f"{p['flags']} from {'client' if p['by'] == 'c' else 'server'}"
                     for p in segs if set(p["flags"]) & set("FR")) or "nothing captured"


def run(s):
    from ctrack.lab.scenario import steps
    lab = s.lab
    cap = s.sniff("ns1", PORT, seconds=30, quiet_port=DATA_CPORT)
    srv = lab.spawn("ns2", ["iperf3", "-s", "-1"])
    s.cleanup(srv.stop)
    s.wait_listening("ns2", PORT)
    res = lab.exec("ns1", ["iperf3", "-c", lab.addr("ns2"), "-t", "2", "--cport", str(DATA_CPORT), "--json",
                           "--connect-timeout", "3000"], check=False, timeout=30)
    try:
        report = json.loads(res.stdout)
    except ValueError:
        report = {}
    sent = report.get("end", {}).get("sum_sent", {})
    s.check("iperf3 ran (exit status)", 0, res.returncode)
    s.note(f"iperf3: {sent.get('bits_per_second', 0) / 1e9:.2f} Gbit/s, {sent.get('bytes', 0)} bytes, "
           f"{sent.get('retransmits', '?')} retransmits")
    srv.wait(5)
    s.tracker.wait_for(lambda e: False, 0.5)   # the last ACKs' events

    flows = s.flows("tcp", PORT)
    s.check("connections to 5201 (control, data)", 2, len(flows))
    if len(flows) != 2:
        return
    (cid, control), (did, data) = flows
    s.check("the second connection is the data stream (client port)", DATA_CPORT, did[2])
    s.check("it carries the data", "data bytes > control bytes",
            f"{data[-1]['bytes'][0]} > {control[-1]['bytes'][0]}",
            ok=data[-1]["bytes"][0] > control[-1]["bytes"][0])

    endings = {}
    for label, (fid, evs), complete in (("control", flows[0], True), ("data", flows[1], False)):
        segs = [dict(p, by="c" if p["sport"] == fid[2] else "s")
                for p in cap.seen(lambda p: p["proto"] == "tcp" and fid[2] in (p["sport"], p["dport"]))]
        seen = steps(evs, True)
        s.check(f"{label}: handshake", HANDSHAKE, seen[:3])
        options = expected_closes(segs, complete)
        want = next((o for o in options if o == seen[3:]), options[0])
        s.check(f"{label}: close (capture: {how(segs)})"
                + (f", 1 of {len(options)} allowed" if len(options) > 1 else ""),
                want, seen[3:], ok=seen[3:] in options)
        endings[label] = "rst" if any("R" in p["flags"] for p in segs) else "fin"

    # the scenario's point for the control connection: a FIN riding on an ACK
    segs = [dict(p, by="c" if p["sport"] == cid[2] else "s")
            for p in cap.seen(lambda p: cid[2] in (p["sport"], p["dport"]))]
    fins = [p for p in segs if "F" in p["flags"]]
    second = fins[1] if len(fins) == 2 else None
    if second:
        first = fins[0]
        piggy = "A" in second["flags"] and not _after(_fin_end(first), second["ack"])
        s.note(f"control: the {'client' if second['by'] == 'c' else 'server'}'s FIN "
               + ("acknowledged the other's FIN (piggybacked)" if piggy
                  else "did not acknowledge the other's: they crossed"))

    # bytes: the tracker counts at the IP layer, so at least the payload the server read, plus
    # headers (iperf3's "sent" counts writes, and a reset socket drops what it had not sent yet)
    received = report.get("end", {}).get("sum_received", {}).get("bytes")
    if received:
        got = data[-1]["bytes"][0]
        s.check("tracker's data bytes / payload the server read", "1.00-1.05", f"{got / received:.4f}",
                ok=1.0 <= got / received <= 1.05)

    summary = s.stop_tracker()
    # Segments still in flight when the server's RST passed are packets of the closed flow:
    # valid, passed, the flow stays CLOSE (they were INVALID tcp_closed until that hurt).
    invalid = {k[7:]: v for k, v in summary.items() if k.startswith("reason.") and v}
    s.check("INVALID packets", "none", ", ".join(f"{k}={v}" for k, v in invalid.items()) or "none")
    fin_n = sum(1 for e in endings.values() if e == "fin")
    s.check("flows created / closed by fin / closed by rst", f"2 / {fin_n} / {2 - fin_n}",
            f"{summary['flows_created']} / {summary['closed_fin']} / {summary['closed_rst']}")

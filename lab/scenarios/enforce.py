"""--policy enforce: a no-flow ACK and an out-of-window segment dropped, the connection unharmed.

The tracker runs with --policy enforce. Captures in both hosts are the referee: what ns1 sends
and what reaches ns2 (the tracker sits between them, so a packet missing in ns2 was dropped by it).
  1. hping3 -A (two ACKs to port 9, no connection): dropped, INVALID tcp_no_flow; nothing
     reaches ns2, so hping3 gets no RST back.
  2. A live socat echo connection (7300) exchanges a line; then hping3, spoofing the client's port,
     sends 100 bytes with ACK at seq = the client's next + 2^30 (far outside the server's
     window): dropped, INVALID tcp_seq_window; it never reaches ns2.
  3. The connection still works (the next line is echoed) and the tracker reports no state
     change for it: ESTABLISHED from the handshake to the end.
"""
import time

CODE = "en"
PORT, NOPORT = 7300, 9
TRACKER = {"policy": "enforce"}


def run(s):
    from ctrack.lab.scenario import steps
    lab = s.lab
    sent = s.sniff("ns1", 0, seconds=60)
    arrived = s.sniff("ns2", 0, seconds=60)

    # 1: no flow
    out, replies = s.hping("ns1", ["-A", "-c", "2", "-i", "u200000", "-p", str(NOPORT), lab.addr("ns2")])
    time.sleep(0.2)
    n_sent = len(sent.seen(lambda p: p["dport"] == NOPORT and p["out"]))
    n_arrived = len(arrived.seen(lambda p: p["dport"] == NOPORT))
    s.check(f"mid-stream ACKs to port {NOPORT}: sent / reached ns2", "2 / 0", f"{n_sent} / {n_arrived}")
    s.check("hping3 replies (a RST would mean it got through)", 0, len(replies))

    # 2: out-of-window segment in a live connection
    conn = s.echo_connection(PORT)
    s.check("connection up: line echoed", "one", conn.exchange(b"one\n").decode().strip())
    time.sleep(0.3)
    flows = s.flows("tcp", PORT)
    if not s.check("flow tracked", 1, len(flows)):
        return
    cport = flows[0][0][2]
    nxt, ack = sent.next_seq(cport, PORT), arrived.next_seq(PORT, cport)
    bad = (nxt + 2**30) % 2**32
    s.hping("ns1", ["-A", "-s", str(cport), "-k", "-p", str(PORT), "-M", str(bad), "-L", str(ack),
                    "-d", "100", "-c", "1", lab.addr("ns2")])
    time.sleep(0.2)
    n_sent = len(sent.seen(lambda p: p["sport"] == cport and p.get("seq") == bad))
    n_arrived = len(arrived.seen(lambda p: p["sport"] == cport and p.get("seq") == bad))
    s.check(f"segment at seq {bad} (next + 2^30): sent / reached ns2", "1 / 0", f"{n_sent} / {n_arrived}")

    # 3: the real connection carries on
    s.check("the connection carries on: line echoed", "two", conn.exchange(b"two\n").decode().strip())
    evs = s.flows("tcp", PORT)[0][1]
    s.check("its events: the handshake, nothing after",
            ["SYN_SENT", "SYN_RECV", "ESTABLISHED"], steps(evs))
    summary = s.stop_tracker()
    s.check("INVALID tcp_no_flow / tcp_seq_window", "2 / 1",
            f"{summary['reason.tcp_no_flow']} / {summary['reason.tcp_seq_window']}")
    s.check("packets dropped (action drop) = INVALID", "3 = 3",
            f"{summary['action.drop']} = {summary['class.invalid']}")

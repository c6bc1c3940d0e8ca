"""hping3 RSTs: an in-window one closes the flow at once; an out-of-window one changes nothing.

A live socat echo connection (ns1 -> ns2:7200) exchanges a line. Its sequence numbers come from a
capture in ns1 (the wire's truth, independent of the tracker): the client's next sequence number
is the highest seq + length it sent, which the server has acknowledged.
  1. hping3 -R from ns1, spoofing the client's port, with seq = next + 2^30: outside any window
     (RFC 5961). The tracker must count it INVALID tcp_rst_window, report no state change, and
     the connection must carry on (the next line is echoed).
  2. hping3 -R with seq = next exactly: the server's kernel accepts it (RFC 5961: an exact
     match resets), and the tracker must close the flow at once: CLOSE (CLOSE/CLOSE), closed: rst.
  3. The client, unaware, sends again: the server's kernel answers RST; both are packets of the
     closed flow, passed (they fit its windows) without reviving it, and nothing is echoed.
"""
import time

CODE = "rs"
PORT = 7200


def run(s):
    from ctrack.lab.scenario import steps
    lab = s.lab
    cap = s.sniff("ns1", PORT, seconds=60)
    conn = s.echo_connection(PORT)
    s.check("connection up: line echoed", "one", conn.exchange(b"one\n").decode().strip())
    time.sleep(0.3)   # let delayed ACKs go out: the capture then holds the last word of each side
    flows = s.flows("tcp", PORT)
    if not s.check("flow tracked", 1, len(flows)):
        return
    fid, _ = flows[0]
    cport = fid[2]
    nxt = cap.next_seq(cport, PORT)
    s.note(f"client port {cport}, its next sequence number {nxt} (from the capture)")

    # 1: out of window
    bad = (nxt + 2**30) % 2**32
    s.hping("ns1", ["-R", "-s", str(cport), "-k", "-p", str(PORT), "-M", str(bad), "-c", "1",
                    lab.addr("ns2")])
    time.sleep(0.3)
    evs = s.flows("tcp", PORT)[0][1]
    s.check(f"RST seq {bad} (next + 2^30): no state change", "ESTABLISHED (ESTABLISHED/ESTABLISHED)",
            steps(evs, True)[-1])
    s.check("... and the connection carries on: line echoed", "two", conn.exchange(b"two\n").decode().strip())
    time.sleep(0.3)

    # 2: exactly at the server's expected sequence number
    nxt = cap.next_seq(cport, PORT)
    s.hping("ns1", ["-R", "-s", str(cport), "-k", "-p", str(PORT), "-M", str(nxt), "-c", "1", lab.addr("ns2")])
    closed = s.tracker.wait_for(lambda e: e["type"] == "closed" and e["orig"]["dport"] == PORT, 3)
    evs = s.flows("tcp", PORT)[0][1]
    s.check(f"RST seq {nxt} (next): the flow closes", ["CLOSE (CLOSE/CLOSE)", "closed:rst"],
            steps(evs, True)[-2:])
    # "at once": the closed event's time (tracker clock, CLOCK_MONOTONIC_COARSE, a jiffy coarse)
    # against the capture's time of that RST leaving ns1 (CLOCK_MONOTONIC)
    rst = cap.last(lambda p: "R" in p["flags"] and p["sport"] == cport and p["seq"] == nxt)
    if closed and rst:
        lag_ms = (closed["ts_ns"] / 1e9 - rst["t"]) * 1e3
        s.check("closed event time - RST's capture time", "within +/-20 ms", f"{lag_ms:+.1f} ms",
                ok=abs(lag_ms) <= 20)
    else:
        s.check("closed event time - RST's capture time", "within +/-20 ms",
                "no closed event" if not closed else "RST not captured")
    # 3: the server's socket is gone: the client's next line meets the server kernel's RST
    got = conn.exchange(b"three\n", timeout=1.0).decode().strip()
    s.check("server's socket reset: the next line is not echoed", "(nothing)", got or "(nothing)")
    time.sleep(0.3)
    answer = cap.last(lambda p: "R" in p["flags"] and p["sport"] == PORT and p["dport"] == cport)
    s.check("capture: the server's kernel answers it with RST", "R from 7200",
            f"{answer['flags']} from {answer['sport']}" if answer else "no RST", ok=answer is not None)
    summary = s.stop_tracker()
    s.check("INVALID tcp_rst_window (the out-of-window RST)", 1, summary["reason.tcp_rst_window"])
    s.check("closed by rst", 1, summary["closed_rst"])
    evs = s.flows("tcp", PORT)[0][1]
    s.check("after the client's line and the server's RST: still", "closed:rst", steps(evs, True)[-1])
    others = {k[7:]: v for k, v in summary.items() if k.startswith("reason.") and v
              and k != "reason.tcp_rst_window"}
    s.check("other INVALID reasons", "none", ", ".join(f"{k}={v}" for k, v in others.items()) or "none")

"""Idle flows expire by timeout, each after its own state's: SYN_SENT 1 s, UDP NEW 2 s, ESTABLISHED 3 s.

The tracker runs with short timeouts (--timeout SYN_SENT=1 UDP_NEW=2 ESTABLISHED=3) and its
collector (--gc-interval 0.5). Three flows start together and then go quiet:
  - a SYN from ns1 that ns2 drops (an iptables rule in ns2, so no RST answers): SYN_SENT;
  - a UDP datagram that nobody answers (ns2's ICMP port unreachable is not part of the flow): NEW;
  - a socat echo connection that exchanges a line and then idles: ESTABLISHED.
Each must be reported removed by timeout (DESTROY) after its own timeout, measured from its last packet in a
capture on ns1 to the DESTROY event (the tracker's coarse clock: a jiffy of slack below, the
collector's schedule above). Then the idle connection speaks again: its entry is gone, so
without --pickup the line and its echo are INVALID tcp_no_flow (passed: the policy is observe)
and no flow is created for them.
"""
import time

CODE = "it"
SYN_PORT, UDP_PORT, TCP_PORT = 7501, 7502, 7503
SYN_SPORT, UDP_SPORT = 40501, 40502
T = {"SYN_SENT": 1, "UDP_NEW": 2, "ESTABLISHED": 3}
GC_INTERVAL = 0.5
# pickup off (observe picks up by default): the expired connection must find no flow
TRACKER = {"timeouts": T, "pickup": False, "extra": ["--gc-interval", str(GC_INTERVAL)]}
NEEDS = ("collector",)


def run(s):
    from ctrack.lab.scenario import steps
    lab = s.lab
    cap = s.sniff("ns1", 0, seconds=60)
    s.iptables("ns2", ["INPUT", "-p", "tcp", "--dport", str(SYN_PORT), "-j", "DROP"])
    conn = s.echo_connection(TCP_PORT)
    s.check("connection up: line echoed", "one", conn.exchange(b"one\n").decode().strip())
    s.hping("ns1", ["-S", "-s", str(SYN_SPORT), "-k", "-p", str(SYN_PORT), "-c", "1", lab.addr("ns2")], timeout=5)
    s.hping("ns1", ["-2", "-s", str(UDP_SPORT), "-k", "-p", str(UDP_PORT), "-c", "1", lab.addr("ns2")], timeout=5)

    cases = [("SYN_SENT", "tcp", SYN_PORT, ["SYN_SENT", "destroy:timeout"]),
             ("UDP_NEW", "udp", UDP_PORT, ["NEW", "destroy:timeout"]),
             ("ESTABLISHED", "tcp", TCP_PORT, ["SYN_SENT", "SYN_RECV", "ESTABLISHED", "destroy:timeout"])]
    for state, proto, port, _ in cases:
        s.tracker.wait_for(lambda e: e["type"] == "destroy" and e["orig"]["dport"] == port, T[state] + 3)
    for state, proto, port, want in cases:
        flows = s.flows(proto, port)
        evs = flows[0][1] if flows else []
        s.check(f"{state} flow ({proto} to {port}): events", want, steps(evs))
        closed = next((e for e in evs if e["type"] == "destroy"), None)
        last = cap.last(lambda p: p["proto"] == proto and port in (p["sport"], p["dport"]))
        if closed and last:
            idle = closed["ts_ns"] / 1e9 - last["t"]
            s.check(f"{state} flow: idle time when closed ({state}={T[state]})",
                    f"{T[state] - 0.02:.2f}-{T[state] + 2 * GC_INTERVAL:.2f} s", f"{idle:.3f} s",
                    ok=T[state] - 0.02 <= idle <= T[state] + 2 * GC_INTERVAL)

    # the expired connection speaks again: no flow any more
    s.check("the idle connection, after expiry: line echoed (observe passes it)", "two",
            conn.exchange(b"two\n").decode().strip())
    time.sleep(0.3)
    flows = s.flows("tcp", TCP_PORT)
    s.check("no new flow for it (no SYN, no --pickup)", 1, len(flows))
    summary = s.stop_tracker()
    s.check("INVALID tcp_no_flow (the line, its echo, ACKs)", ">= 2", summary["reason.tcp_no_flow"],
            ok=summary["reason.tcp_no_flow"] >= 2)
    s.check("flows created / closed by timeout", "3 / 3",
            f"{summary['flows_created']} / {summary['closed_timeout']}")

"""socat UDP: NEW, ESTABLISHED on the reply, closed by timeout, then NEW again.

NEW on the first datagram, ESTABLISHED on the reply, closed by timeout (2 s) with no packet,
then a later datagram of the same 5-tuple opens a new flow.

The tracker runs with --timeout UDP_ESTABLISHED=2 (UDP_NEW=1). Expiry is seen two ways: the
collector (`ctrack run`'s GC) must report it removed by timeout (DESTROY) on its own, at least 2 s after the
flow's last packet (the reply) and not much later; and a datagram sent after that, from the same
source port, must be NEW again (a flow that had not expired would count it ESTABLISHED).
Without a collector in `ctrack run` only the second way is checked.
"""
import subprocess
import time

CODE = "su"
PORT, SPORT = 7400, 40400
TIMEOUT = 2
GC_INTERVAL = 0.5


def _has_gc():
    res = subprocess.run(["ctrack", "run", "-h"], capture_output=True, text=True)
    return "--gc-interval" in res.stdout


GC = _has_gc()
TRACKER = {"timeouts": {"UDP_ESTABLISHED": TIMEOUT, "UDP_NEW": 1},
           "extra": ["--gc-interval", str(GC_INTERVAL)] if GC else []}
NEEDS = ("collector",) if GC else ()


def send(lab, text):
    """One datagram from ns1:SPORT, and the echo back (socat waits 1 s for it, then ends)."""
    res = lab.exec("ns1", ["socat", "-T1", "-", f"UDP:{lab.addr('ns2')}:{PORT},sourceport={SPORT},reuseaddr"],
                   input=text, check=False, timeout=10)
    return res.stdout


def run(s):
    from ctrack.lab.scenario import flow_text, steps
    lab = s.lab
    # UDP-RECVFROM,fork: each datagram gets its own echo child, so any later peer is answered too
    srv = lab.spawn("ns2", ["socat", "-T2", f"UDP-RECVFROM:{PORT},fork,reuseaddr", "EXEC:cat"])
    s.cleanup(srv.stop)
    s.wait_listening("ns2", PORT, udp=True)
    s.check("first datagram echoed", "one", send(lab, "one\n").strip())
    flows = s.flows("udp", PORT)
    first = flows[0][1] if flows else []
    s.check("first flow: NEW, then ESTABLISHED on the reply", ["NEW", "ESTABLISHED"], steps(first)[:2])
    if GC:
        closed = s.tracker.wait_for(lambda e: e["type"] == "destroy" and e["proto"] == "udp", TIMEOUT + 3)
        est = next((e for e in first if e["state"] == "ESTABLISHED"), None)
        if closed and est:
            idle = (closed["ts_ns"] - est["ts_ns"]) / 1e9
            s.check("collector: removed by timeout, no packet needed", "destroy:timeout",
                    f"destroy:{closed['reason']}")
            s.check(f"idle time before it closed (UDP_ESTABLISHED={TIMEOUT})",
                    f"{TIMEOUT:.2f}-{TIMEOUT + 2 * GC_INTERVAL:.2f} s", f"{idle:.3f} s",
                    ok=TIMEOUT <= idle <= TIMEOUT + 2 * GC_INTERVAL)
        else:
            s.check("collector: removed by timeout, no packet needed", "destroy:timeout",
                    "no DESTROY event" if est else "no ESTABLISHED event")
    else:
        s.note("ctrack run has no collector (--gc-interval): expiry checked by a later datagram only")
        time.sleep(TIMEOUT + 0.5)
    s.check("a later datagram, same 5-tuple, is echoed", "two", send(lab, "two\n").strip())
    flows = s.flows("udp", PORT)
    s.check("flows seen for the 5-tuple", 2, len(flows))
    if len(flows) == 2:
        want = ["NEW", "ESTABLISHED", "destroy:timeout"] if GC else ["NEW", "ESTABLISHED"]
        s.check("first flow, all its events", want, steps(flows[0][1]))
        s.check("later datagram: a NEW flow, ESTABLISHED on its reply", ["NEW", "ESTABLISHED"],
                steps(flows[1][1])[:2])
        s.check("same 5-tuple both times", flow_text(flows[0][0]), flow_text(flows[1][0]))
    summary = s.stop_tracker()
    s.check("INVALID packets", 0, summary["class.invalid"])
    s.check("flows created / closed by timeout", "2 / 1",
            f"{summary['flows_created']} / {summary['closed_timeout']}")

"""An RFC 6994 experimental TCP option in every segment crosses an enforcing tracker intact.

A sock_ops program (lab/bpf/tcp_exp_option.c, TCP-BPF's header-option callbacks) attached to a
cgroup v2 child made for the run writes kind 253, length 6, ExID 0xC7C7 and two data bytes into
every segment of the processes in it: a socat echo server (ns2) and its client (ns1), both put
in the cgroup before they start (the cgroup is removed at the end). The tracker runs with
--policy enforce. Captures in both hosts are the referee:
  1. the client's line comes back echoed;
  2. every segment each host sent arrived at the other (none dropped), and every one that
     arrived carries the option byte for byte (SYN, SYN/ACK, data, ACKs, FINs);
  3. the tracker names the option on the flow: ExID 0xc7c7 in both SYNs (`ctrack list --json`,
     tcp_options), counts the flow under "exp" for each side, and judged nothing INVALID.
"""
import time

CODE = "to"
PORT = 7400
EXID = 0xC7C7
TRACKER = {"policy": "enforce"}


def run(s):
    from ctrack.lab.sockops import ExpOptionWriter
    lab = s.lab
    writer = ExpOptionWriter(s.lab_name, EXID)
    s.cleanup(writer.close)   # last: after the programs below have stopped
    option = writer.option_bytes().hex()
    at1 = s.sniff("ns1", PORT, seconds=60)
    at2 = s.sniff("ns2", PORT, seconds=60)
    srv = lab.spawn("ns2", writer.wrap(["socat", "-T10", f"TCP-LISTEN:{PORT},reuseaddr", "EXEC:cat"]))
    s.cleanup(srv.stop)
    s.wait_listening("ns2", PORT)
    res = lab.exec("ns1", writer.wrap(["socat", "-t2", "-T10", "-", f"TCP:{lab.addr('ns2')}:{PORT}"]),
                   input="one\ntwo\n", check=False, timeout=20)
    s.check("lines echoed through the tracker", "one two", " ".join(res.stdout.split()))
    s.tracker.wait_for(lambda e: e["type"] == "closed", 3)
    time.sleep(0.2)   # the captures' last lines

    for src, dst, name in ((at1, at2, "client -> server"), (at2, at1, "server -> client")):
        out = src.seen(lambda p: p["out"])
        got = dst.seen(lambda p: not p["out"] and p["sport"] == out[0]["sport"]) if out else []
        s.check(f"{name}: segments sent / arrived", f"{len(out)} / {len(out)}",
                f"{len(out)} / {len(got)}", ok=len(out) > 0 and len(got) == len(out))
        kinds = sorted({p["flags"] for p in got})
        s.check(f"{name}: segments arrived with the option ({', '.join(kinds)})", len(got),
                sum(1 for p in got if option in p["opts"]))
        s.check(f"{name}: a SYN and data among them", "yes",
                "yes" if any("S" in p["flags"] for p in got) and any(p["len"] for p in got) else "no")

    flows = [f for f in (s.list_flows() or []) if f["proto"] == "tcp" and f["orig"]["dport"] == PORT]
    if s.check("flows to the port in `ctrack list`", 1, len(flows)):
        opts = flows[0]["tcp_options"]
        want = f"0x{EXID:04x}"
        s.check("ExID in the opener's SYN / the responder's SYN/ACK", f"{want} / {want}",
                " / ".join(",".join((opts.get(side) or {}).get("exids", [])) or "-"
                           for side in ("orig", "reply")))
    summary = s.stop_tracker()
    s.check("flows counted with an experimental option (opener / responder)", "1 / 1",
            f"{summary.get('opt_orig.exp')} / {summary.get('opt_reply.exp')}")
    s.check("INVALID packets / dropped", "0 / 0",
            f"{summary['class.invalid']} / {summary['action.drop']}")

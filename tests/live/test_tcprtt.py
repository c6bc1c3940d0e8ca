"""ctrack-tcprtt and RttObserver against real connections in the real kernel: loopback and two
network namespaces made here. Other traffic may run on this machine meanwhile (other labs), so
each test filters to its own ports or addresses, or picks its own flows out."""
import json
import os
import threading

import pytest

from ctrack.observers import Filters, RttObserver
from helpers.observers import NetnsPair, Tool, free_port, ns_exchange, run_tool, tcp_exchange

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loads BPF programs: needs root")

ROUNDS = 200


def test_loopback_histogram_is_below_a_millisecond():
    port = free_port()
    with RttObserver(Filters(lports=[port]), extended=True) as obs:
        tcp_exchange("127.0.0.1", rounds=ROUNDS, port=port)
        hists = obs.histograms()
    assert len(hists) == 1
    h = hists[0]
    # The server socket receives each request (and the final ACKs): at least ROUNDS samples.
    assert ROUNDS <= h.count <= ROUNDS + 10
    assert h.samples == h.count and h.sum > 0
    assert h.fraction_at_most(1023) >= 0.95, h.buckets()
    assert 0 < h.average < 1000


def test_milliseconds_and_clear():
    port = free_port()
    with RttObserver(Filters(rports=[port]), milliseconds=True) as obs:
        tcp_exchange("127.0.0.1", rounds=50, port=port)
        h = obs.histograms()[0]
        assert h.unit == "msecs"
        # Every loopback sample is 0 ms, the "0 -> 1" bucket.
        assert h.buckets() == [(0, 1, h.count)] and h.count >= 50
        obs.clear()
        assert obs.histograms() == []


def test_per_remote_address_sections_for_both_families():
    p4, p6 = free_port(), free_port("::1")
    with RttObserver(Filters(lports=[p4, p6]), per="raddr") as obs:
        tcp_exchange("127.0.0.1", rounds=20, port=p4)
        tcp_exchange("::1", rounds=30, port=p6)
        hists = {h.section: h for h in obs.histograms()}
    assert set(hists) == {"127.0.0.1", "::1"}
    assert hists["127.0.0.1"].count >= 20 and hists["::1"].count >= 30


def test_family_filter():
    p4, p6 = free_port(), free_port("::1")
    with RttObserver(Filters(family=6, lports=[p4, p6]), per="laddr") as obs:
        tcp_exchange("127.0.0.1", rounds=20, port=p4)
        tcp_exchange("::1", rounds=20, port=p6)
        sections = [h.section for h in obs.histograms()]
    assert sections == ["::1"]


def test_flows_keyed_by_four_tuple():
    port = free_port()
    with RttObserver(Filters(rports=[port]), hist=False, flows=True) as obs:
        cport, _ = tcp_exchange("127.0.0.1", rounds=ROUNDS, port=port)
        flows = obs.flows()
    assert len(flows) == 1
    f = flows[0]
    assert (f.family, f.laddr, f.lport, f.raddr, f.rport) == (4, "127.0.0.1", cport, "127.0.0.1", port)
    # The client receives one response per round, plus the handshake's and FIN's segments.
    assert ROUNDS <= f.count <= ROUNDS + 5
    assert 0 < f.min_us <= f.avg_us <= f.max_us and f.min_us <= f.last_us <= f.max_us
    assert f.first_ts <= f.last_ts and f.cookie > 0


def test_address_filters_between_namespaces():
    with NetnsPair() as pair:
        obs_r = RttObserver(Filters(raddrs=[pair.addr_a]), hist=False, flows=True).start()
        obs_l = RttObserver(Filters(laddrs=[pair.addr_a + "/32"]), hist=False, flows=True).start()
        try:
            cports = ns_exchange(pair, pair.a, pair.b, pair.addr_a, 7002, n=2, rounds=20)
            tcp_exchange("127.0.0.1", rounds=20)
            remote, local = obs_r.flows(), obs_l.flows()
        finally:
            obs_r.close()
            obs_l.close()
    # -A 10.77.0.1: B's client sockets only; -a 10.77.0.1: A's server sockets only.
    assert sorted(f.lport for f in remote) == sorted(cports)
    assert all(f.laddr == pair.addr_b and f.rport == 7002 for f in remote)
    assert sorted(f.rport for f in local) == sorted(cports)
    assert all(f.laddr == pair.addr_a and f.lport == 7002 for f in local)
    assert all(f.count >= 20 for f in remote + local)


def _in_background(fn):
    result = {}

    def run():
        try:
            result["value"] = fn()
        except BaseException as exc:   # surfaced by the caller
            result["error"] = exc
    t = threading.Thread(target=run)
    t.start()
    return t, result


@pytest.mark.parametrize("side", ["a", "b"])
def test_netns_filter(side):
    """-N: only the sockets of one namespace, judged by socket cookie through sock_diag there,
    while loopback traffic in the root namespace runs at the same time."""
    with NetnsPair() as pair:
        ns = pair.a if side == "a" else pair.b
        with RttObserver(flows=True, netns=ns) as obs:
            t, res = _in_background(lambda: ns_exchange(pair, pair.a, pair.b, pair.addr_a, 7003, n=2,
                                                        rounds=25, gap=0.004))
            lo, _ = _in_background(lambda: [tcp_exchange("127.0.0.1", rounds=5) for _ in range(10)])
            # This thread answers the program's questions while the traffic runs.
            while t.is_alive() or lo.is_alive():
                obs.wait(0.05)
            t.join()
            lo.join()
            obs.wait(0.2)
            flows, hists = obs.flows(), obs.histograms()
            answered = obs.netns_answered
        assert "error" not in res, res.get("error")
    cports = res["value"]
    mine = pair.addr_a if side == "a" else pair.addr_b
    assert flows and all(f.laddr == mine for f in flows), flows
    key = (lambda f: f.rport) if side == "a" else (lambda f: f.lport)
    assert sorted(key(f) for f in flows) == sorted(cports)
    # Samples before the verdict are dropped: one or two per socket at most.
    assert all(f.count >= 20 for f in flows), [f.count for f in flows]
    assert hists and hists[0].count == sum(f.count for f in flows)
    # Root-namespace loopback sockets were asked about too, and refused.
    assert answered > len(cports)


def test_tool_histogram_extended_and_ctrl_c():
    port = free_port()
    tool = Tool("ctrack-tcprtt", "-p", str(port), "-e")
    try:
        tcp_exchange("127.0.0.1", rounds=100, port=port)
    finally:
        rc = tool.stop()
    assert rc == 0, tool.stderr
    out = tool.stdout
    assert "usecs" in out and "count     distribution" in out and "-> " in out
    assert "avg = " in out and "count: " in out
    assert "Traceback" not in tool.stderr


def test_tool_interval_and_duration():
    port = free_port()
    tool = Tool("ctrack-tcprtt", "-i", "1", "-d", "2.5", "-T", "-m", "-P", str(port))
    tcp_exchange("127.0.0.1", rounds=50, port=port)
    rc = tool.finish(timeout=30)
    assert rc == 0
    # Two interval summaries (1 s, 2 s) and the final one at 2.5 s, each with a time line.
    assert "3 summaries" in tool.stderr
    assert "msecs" in tool.stdout


def test_tool_json_flows_and_hist():
    port = free_port()
    tool = Tool("ctrack-tcprtt", "--flows", "--json", "-P", str(port))
    try:
        cport, _ = tcp_exchange("127.0.0.1", rounds=30, port=port)
    finally:
        tool.stop()
    recs = [json.loads(x) for x in tool.stdout.splitlines() if x.strip()]
    assert len(recs) == 1
    r = recs[0]
    assert r["type"] == "flow" and r["lport"] == cport and r["rport"] == port and r["count"] >= 30
    assert {"ts", "family", "laddr", "raddr", "min_us", "avg_us", "max_us", "last_us", "cookie"} <= set(r)

    port = free_port()
    tool = Tool("ctrack-tcprtt", "--json", "-B", "-e", "-p", str(port))
    try:
        tcp_exchange("127.0.0.1", rounds=30, port=port)
    finally:
        tool.stop()
    recs = [json.loads(x) for x in tool.stdout.splitlines() if x.strip()]
    assert [r["section"] for r in recs] == ["127.0.0.1"]
    r = recs[0]
    assert r["type"] == "hist" and r["unit"] == "usecs" and r["count"] == r["samples"] >= 30
    assert sum(b["count"] for b in r["buckets"]) == r["count"]


def test_ebpf_help_and_errors():
    out = run_tool("ctrack-tcprtt", "--ebpf", "-m", "-B", "-e", "--flows")
    assert out.returncode == 1 and "--flows" in out.stderr
    out = run_tool("ctrack-tcprtt", "--ebpf", "-m", "-B", "-e", "-N", "x")
    assert out.returncode == 0
    for d in ("OBS_MS", "OBS_HIST_RADDR", "OBS_EXTENDED", "OBS_NETNS"):
        assert f"#define {d} 1" in out.stdout
    assert "TRACEPOINT_PROBE(tcp, tcp_probe)" in out.stdout
    h = run_tool("ctrack-tcprtt", "-h").stdout
    assert "examples:" in h and "network namespaces (-N):" in h
    bad = run_tool("ctrack-tcprtt", "-N", "ctobs-no-such-ns", "-d", "1")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "no network namespace" in bad.stderr
    bad = run_tool("ctrack-tcprtt", "-4", "-A", "::1")
    assert bad.returncode == 1 and "cannot match with -4" in bad.stderr


def test_one_summary_is_singular():
    """The closing count agrees with its number: "1 summary", not "1 summaries"."""
    res = run_tool("ctrack-tcprtt", "-d", "0.5")
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip().splitlines()[-1] == "1 summary", res.stderr

"""`ctrack run --metrics`: the Prometheus endpoint scraped while real traffic flows."""
import subprocess
import urllib.request

import pytest

from helpers.live import TcpConnection, free_port, make_lab, trackers, udp_send, wait_for  # noqa: F401


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        return r.read().decode()


def samples(text):
    """{'name{labels}': value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


@pytest.fixture(scope="module")
def live(make_lab, trackers):  # noqa: F811
    lab = make_lab("tm")
    port = free_port()
    t = trackers(lab, "tm", ["--metrics", str(port), "--table-size", "4096",
                             "--timeout", "UDP_NEW=1", "--gc-interval", "0.2"])
    return lab, t, port


def test_metrics_while_traffic_flows(live):
    lab, t, port = live
    conn = TcpConnection(lab, 7901, rounds=2, hold=8)
    try:
        m = wait_for(lambda: (lambda s: s if s.get('ctrack_flows{proto="tcp",state="ESTABLISHED"}')
                              else None)(samples(scrape(port))), 5)
        assert m, scrape(port)
        assert m['ctrack_flows{proto="tcp",state="ESTABLISHED"}'] == 1
        assert m["ctrack_table_size"] == 4096
        assert m["ctrack_table_entries"] >= 1
        assert m['ctrack_packets_total{class="new"}'] >= 1
        assert m['ctrack_packets_total{class="established"}'] >= 4
        assert m['ctrack_packet_actions_total{action="redirect"}'] >= 5   # bump in the wire
        assert m["ctrack_flows_created_total"] >= 1
        assert m["ctrack_events_lost_total"] == 0
        assert m["ctrack_gc_running"] == 1 and m["ctrack_gc_interval_seconds"] == 0.2
        assert m["ctrack_gc_scans_total"] >= 1
        assert m["ctrack_event_readers"] >= 0
        # every INVALID reason of ctrack.h has its series, zero or not
        assert 'ctrack_invalid_packets_total{reason="tcp_seq_window"}' in m
        assert 'ctrack_invalid_packets_total{reason="none"}' not in m
        assert 'ctrack_flows_closed_total{reason="flushed"}' in m
    finally:
        conn.client.stop()
        conn.server.stop()

    # an idle UDP flow leaves by timeout through the collector: the counters say so
    udp_send(lab, 7902, echo=False)
    m = wait_for(lambda: (lambda s: s if s['ctrack_flows_closed_total{reason="timeout"}'] >= 1
                          else None)(samples(scrape(port))), 5)
    assert m and m["ctrack_gc_removed_total"] >= 1
    assert m['ctrack_flows_closed_total{reason="fin"}'] >= 1   # the TCP connection above
    # its passive RTT samples and its SYNs' options, as aggregates
    assert m["ctrack_tcp_rtt_seconds_count"] >= 1
    assert m['ctrack_tcp_rtt_seconds_bucket{le="+Inf"}'] == m["ctrack_tcp_rtt_seconds_count"]
    assert m["ctrack_tcp_rtt_seconds_sum"] > 0
    assert m['ctrack_tcp_option_flows_total{option="mss",side="orig"}'] >= 1
    assert m['ctrack_tcp_option_flows_total{option="timestamps",side="reply"}'] >= 1
    text = scrape(port)
    assert "# TYPE ctrack_packets_total counter" in text
    assert "# TYPE ctrack_flows gauge" in text
    assert "# TYPE ctrack_tcp_rtt_seconds histogram" in text
    assert "10.0.0.1" not in text   # no per-flow labels


def test_metrics_listen_on_loopback_only(live):
    lab, t, port = live
    ss = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout
    local = [line.split()[3] for line in ss.splitlines()]
    assert local == [f"127.0.0.1:{port}"], ss   # one listener, on loopback


def test_bad_metrics_address_is_a_usage_error():
    res = subprocess.run(["ctrack", "run", "-1", "a", "-2", "b", "--metrics", "70000"],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert "bad --metrics '70000'" in res.stderr.strip().splitlines()[-1]

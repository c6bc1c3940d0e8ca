"""Prometheus metrics of a running tracker: `ctrack run --metrics [ADDR:]PORT` (127.0.0.1 unless
an address is given), served with Debian's python3-prometheus-client.

A custom collector reads the pinned maps at scrape time (nothing is sampled in between):

    ctrack_packets_total{class}            packets by verdict class (new, established, invalid, untracked)
    ctrack_packet_actions_total{action}    pass, drop, redirect
    ctrack_invalid_packets_total{reason}   INVALID packets by reason
    ctrack_flows_created_total
    ctrack_flows_closed_total{reason}      fin, rst, timeout, evicted, reopened, flushed
    ctrack_table_full_total                new flows refused, table full
    ctrack_events_lost_total               ring buffer full
    ctrack_fragments_total, ctrack_ignored_syn_total,
    ctrack_rst_challenged_total
    ctrack_fastpath_total                  packets the established fast path took whole
    ctrack_flows{proto,state}              live flows now (gauge; expired entries not counted)
    ctrack_table_entries                   entries in the table, expired ones awaiting removal included
    ctrack_table_expired_entries           of which expired
    ctrack_table_size                      capacity
    ctrack_gc_scans_total, ctrack_gc_scanned_entries_total, ctrack_gc_removed_total,
    ctrack_gc_revived_total                the collector (see ctrack/live/collector.py)
    ctrack_gc_running, ctrack_gc_interval_seconds, ctrack_gc_last_scan_seconds
    ctrack_event_readers                   subscribers of the event stream (ctrack run only)
    ctrack_tcp_rtt_seconds                 histogram of end-to-end RTT samples (passive, see
                                           ctrack/engine/rtt.py); buckets from the log2 counters
    ctrack_tcp_option_flows_total{side,option}  flows whose opener's (orig) or responder's
                                           (reply) SYN carried the option (ctrack/engine/tcpopts.py)

Counter names follow the enums of kernel/ctrack.h, so a new reason appears without a change here.
No label ever names a flow: the series count stays bounded whatever the traffic.
"""
import collections
import http.server
import threading

from ctrack.engine.defs import defs
from ctrack.errors import CtrackError
from ctrack.engine.tracker import kernel_now_ns


def parse_listen(text):
    """'9100' -> ('127.0.0.1', 9100); '0.0.0.0:9100'; '[::1]:9100'."""
    host, sep, port = str(text).rpartition(":")
    if not sep:
        host = ""
    host = host.strip("[]") or "127.0.0.1"
    try:
        p = int(port)
    except ValueError:
        p = -1
    if not 0 < p < 65536:
        raise CtrackError(f"bad --metrics {text!r}: expected [ADDR:]PORT, e.g. 9100 or 0.0.0.0:9100")
    return host, p


class TrackerCollector:
    """prometheus_client collector over a ctrack.live.maps.Shared (and, in ctrack run, the event
    bus for the reader count)."""

    def __init__(self, shared, bus=None):
        self.sh = shared
        self.bus = bus
        self.lock = threading.Lock()   # one scrape at a time reads the table

    def describe(self):
        return []   # unchecked registration: the series depend on the enums

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        from .collector import read_status
        with self.lock:
            # the table first, the counters after: every flow a scrape lists then has its
            # packets in the counters of the same scrape (read the other way round, a handshake
            # completing between the two reads showed an ESTABLISHED flow beside zero packets)
            rows = self.sh.rows()
            st = self.sh.stats()
            gct = self.sh.gc_totals()
        d = defs()
        L = self.sh.layout

        def by(prefix, name, label, doc):
            m = CounterMetricFamily(name, doc, labels=[label])
            for k, v in sorted(st.items()):
                # "reason.none" would count nothing: valid packets are not counted by reason
                if k.startswith(prefix) and k != prefix + "none":
                    m.add_metric([k[len(prefix):]], v)
            return m

        yield by("class.", "ctrack_packets", "class", "Packets seen, by verdict class.")
        yield by("bytes_class.", "ctrack_bytes", "class",
                 "Bytes seen (IP length; frame length for non-IP), by verdict class.")
        yield by("action.", "ctrack_packet_actions", "action", "Packets by action taken.")
        yield by("reason.", "ctrack_invalid_packets", "reason", "INVALID packets by reason.")
        yield CounterMetricFamily("ctrack_flows_created", "Flows created.", value=st.get("flows_created", 0))
        closed = CounterMetricFamily("ctrack_flows_closed", "Flows ended, by reason.", labels=["reason"])
        for name in d.ct_close_reason.names():
            r = name.lower()
            if r == "none":
                continue
            if r == "flushed":
                v = gct.get("flushed", 0)
            else:
                v = st.get("closed_" + r, st.get(r, 0))
            closed.add_metric([r], v)
        yield closed
        for key, doc in (("table_full", "New flows refused: table full, nothing evictable."),
                         ("events_lost", "Events lost: ring buffer full."),
                         ("fragments", "Non-first IP fragments (untracked)."),
                         ("ignored_syn", "SYNs inside live connections, remembered not applied."),
                         ("fastpath", "Packets the established fast path took whole (the rest "
                                      "took the general path)."),
                         ("rst_challenged", "In-window RSTs off the receiver's RCV.NXT: passed, "
                                            "connection kept (RFC 5961).")):
            yield CounterMetricFamily("ctrack_" + key, doc, value=st.get(key, 0))

        now = kernel_now_ns()
        counts = collections.Counter()
        expired = 0
        iE, iP, iS = L.EXPIRES, L.PROTO, L.STATE
        for r in rows:
            if r[iE] <= now:
                expired += 1
            else:
                counts[(r[iP], r[iS])] += 1
        from ctrack.engine.flows import PROTO_NAMES
        flows = GaugeMetricFamily("ctrack_flows", "Live flows by protocol and state.",
                                  labels=["proto", "state"])
        for (p, s), v in sorted(counts.items()):
            flows.add_metric([PROTO_NAMES.get(p, str(p)), d.ct_state.name(s)], v)
        yield flows
        yield GaugeMetricFamily("ctrack_table_entries", "Entries in the flow table (expired included).",
                                value=len(rows))
        yield GaugeMetricFamily("ctrack_table_expired_entries", "Expired entries awaiting removal.",
                                value=expired)
        yield GaugeMetricFamily("ctrack_table_size", "Flow table capacity.", value=self.sh.table_size)

        yield CounterMetricFamily("ctrack_gc_scans", "Collector passes.", value=gct.get("scans", 0))
        yield CounterMetricFamily("ctrack_gc_scanned_entries", "Entries visited by the collector.",
                                  value=gct.get("scanned", 0))
        yield CounterMetricFamily("ctrack_gc_removed", "Expired entries removed by the collector.",
                                  value=gct.get("removed", 0))
        yield CounterMetricFamily("ctrack_gc_revived", "Removed entries a packet had just "
                                  "reinitialised (see docs/top.md).", value=gct.get("revived", 0))
        gs = read_status(self.sh.name)
        if gs and gs.get("error"):
            gs = None   # could not run (the reason is in ctrack-top and ctrack run's banner)
        yield GaugeMetricFamily("ctrack_gc_running", "1 when a collector runs.", value=1 if gs else 0)
        if gs:
            yield GaugeMetricFamily("ctrack_gc_interval_seconds", "Collector interval.",
                                    value=gs.get("interval_s", 0))
            yield GaugeMetricFamily("ctrack_gc_last_scan_seconds", "Duration of the last pass.",
                                    value=gs.get("last", {}).get("duration_ms", 0) / 1000)
        yield from rtt_metrics(st)
        if self.bus is not None:
            yield GaugeMetricFamily("ctrack_event_readers", "Readers of the event stream.",
                                    value=self.bus.reader_count)


def rtt_metrics(st):
    """The RTT histogram and the option counters from decoded stats."""
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
    from ctrack.engine.rtt import bucket_range_us, hist_buckets
    from ctrack.engine.tcpopts import option_counts
    buckets, acc = [], 0
    for b, c in hist_buckets(st):
        acc += c
        hi = bucket_range_us(b)[1]
        # a log2 bucket holds whole µs up to 2^b - 1: that is its inclusive upper bound
        buckets.append(("+Inf" if hi is None else f"{hi / 1e6:.6f}", acc))   # whole µs: exact
    yield HistogramMetricFamily("ctrack_tcp_rtt_seconds",
                                "End-to-end TCP RTT samples measured passively by the tracker.",
                                buckets=buckets, sum_value=st.get("rtt_sum_us", 0) / 1e6)
    m = CounterMetricFamily("ctrack_tcp_option_flows", "Flows by TCP option in a side's SYN.",
                            labels=["side", "option"])
    for side, counts in option_counts(st).items():
        for name, v in sorted(counts.items()):
            m.add_metric([side, name], v)
    yield m


class MetricsServer:
    """HTTP server of one registry in a daemon thread; close() stops it."""

    def __init__(self, listen, shared, bus=None):
        from prometheus_client import CollectorRegistry
        from prometheus_client.exposition import MetricsHandler
        host, port = parse_listen(listen)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(TrackerCollector(shared, bus))
        handler = MetricsHandler.factory(self.registry)
        cls = http.server.ThreadingHTTPServer
        if ":" in host:
            cls = type("V6Server", (http.server.ThreadingHTTPServer,), {"address_family": 10})
        try:
            self.httpd = cls((host, port), handler)
        except OSError as exc:
            raise CtrackError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
        self.httpd.daemon_threads = True
        self.address = f"{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="ctrack-metrics",
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

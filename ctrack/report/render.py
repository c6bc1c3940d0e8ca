"""The report's three outputs: a rich summary in the terminal, report.json (everything), and a
self-contained report.html (matplotlib figures embedded as base64 PNG, no script or style from
the network) that marks on its <body> when every figure has loaded, so a headless browser can
check it."""
import base64
import html
import io
import json

from .align import MAPPING


def _na(v, fmt="{:.1f}", unit=""):
    return "n/a" if v is None else (fmt.format(v) + unit)


# ---- terminal ------------------------------------------------------------------------------------

def terminal(report, console=None):
    from rich.console import Console
    from rich.table import Table
    con = console or Console(width=max(130, Console().width))
    ov = report["overall"]
    t = Table(title="ctrack-report: the middlebox's belief against the endpoints' kernels",
              title_justify="left")
    for col in ("scenario", "conns", "ctrack states", "ctrack overall", "netfilter",
                "RTT err", "kernel vs ping", "apart max", "disagree"):
        t.add_column(col, justify="left" if col == "scenario" else "right")
    for name, s in report["scenarios"].items():
        t.add_row(name, str(s["connections"]), _na(s["state_agreement_pct"], unit="%"),
                  _na(s["ctrack_overall_consistent_pct"], unit="%"),
                  _na(s["netfilter_consistent_pct"], unit="%"), _na(s["rtt_median_error_pct"], unit="%"),
                  _na(s["kernel_vs_ping_median_error_pct"], unit="%"),
                  f"{s['divergence']['max_ms']:.1f} ms", str(len(s["disagreements"])),
                  style=None if not s["disagreements"] else "red")
    t.add_row("overall", str(ov["connections"]), _na(ov["state_agreement_pct"], unit="%"),
              _na(ov["ctrack_overall_consistent_pct"], unit="%"), _na(ov["netfilter_consistent_pct"], unit="%"),
              _na(ov["rtt_median_error_pct"], unit="%"), _na(ov["kernel_vs_ping_median_error_pct"], unit="%"),
              "", str(len(ov["disagreements"])), style="bold")
    con.print(t)
    con.print("ctrack states: connections whose endpoint states match both kernels (after the mapping); "
              "overall / netfilter: the one connection state consistent with both kernels; RTT err: the "
              "tracker's srtt against the kernels' (median); apart max: longest divergence window",
              style="dim")
    for d in ov["disagreements"][:10]:
        con.print(f"[red]disagreement[/red] {d['scenario']}: {d['flow']} {d['endpoint']}: "
                  f"tracker {' > '.join(d['tracker']) or '(none)'} / kernel {' > '.join(d['kernel']) or '(none)'}"
                  + (f" ({d['note']})" if d.get("note") else ""))
        for p in d["packets"][:6]:
            con.print(f"    {p}", markup=False)
    if len(ov["disagreements"]) > 10:
        con.print(f"... and {len(ov['disagreements']) - 10} more in report.json")
    ra = sum(len(s.get("ran_ahead", [])) for s in report["scenarios"].values())
    if ra:
        con.print(f"{ra} endpoint(s) where the tracker ran ahead of the kernel under loss (not disagreements; "
                  "listed in report.html and report.json, with the time apart)")
    for name, s in report["scenarios"].items():
        v = s.get("lab_scenario")
        if v and not v["passed"]:
            why = (f"could not run as designed here: {v['unavailable']}" if v.get("unavailable")
                   else f"its own checks failed: {'; '.join(v['failed'])}")
            con.print(f"note: {name}: {why}", markup=False)
    for note in report.get("notes", []):
        con.print(f"note: {note}", markup=False)


# ---- JSON ----------------------------------------------------------------------------------------

def write_json(report, path):
    with open(path, "w") as f:
        json.dump(report, f, indent=1, default=str)
        f.write("\n")


# ---- figures -------------------------------------------------------------------------------------

def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def figures(report):
    """[(title, caption, base64 png)]."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    out = []
    sc = report["scenarios"]
    names = list(sc)

    # 1. agreement per scenario
    fig, ax = plt.subplots(figsize=(9, 3.2))
    x = np.arange(len(names))
    series = [("ctrack endpoint states", "state_agreement_pct", "#1f77b4"),
              ("ctrack overall state", "ctrack_overall_consistent_pct", "#9ecae1"),
              ("netfilter", "netfilter_consistent_pct", "#ff7f0e")]
    for i, (label, key, color) in enumerate(series):
        vals = [sc[n][key] if sc[n][key] is not None else 0 for n in names]
        bars = ax.bar(x + (i - 1) * 0.27, vals, 0.27, label=label, color=color)
        for b, n in zip(bars, names):
            if sc[n][key] is None:
                ax.text(b.get_x() + b.get_width() / 2, 2, "n/a", ha="center", va="bottom", fontsize=7,
                        rotation=90)
    ax.set_xticks(x, names, rotation=20, fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("% of connections")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    out.append(("Agreement with both kernels, per scenario",
                "Share of connections whose middlebox states match what both endpoints' kernels did "
                "(after the mapping rules). netfilter only in the routed topology.", _png(fig)))

    # 2. timing: tracker transition vs kernel transition, per scenario (the delay sets it)
    fig, ax = plt.subplots(figsize=(9, 3.2))
    tnames = [n for n in names if sc[n]["timing_ms"]]
    total = sum(len(sc[n]["timing_ms"]) for n in tnames)
    if tnames:
        data = [sc[n]["timing_ms"] for n in tnames]
        ax.boxplot(data, labels=tnames, showfliers=True, flierprops={"markersize": 2})
        ax.set_yscale("symlog", linthresh=1)
        ax.axhline(0, color="k", lw=0.6)
        ax.tick_params(axis="x", labelrotation=25, labelsize=7)
    ax.set_ylabel("kernel - tracker (ms)")
    out.append(("When the tracker saw each transition, against when the kernel made it",
                f"{total} matched transitions, per scenario; the tracker's time: {report.get('tracker_clock', '?')}. "
                "About 0: the kernel that sent the packet; about the one-way delay: the kernel that "
                "received it (the delay line holds packets after the tracker).", _png(fig)))

    # 3. divergence windows
    fig, ax = plt.subplots(figsize=(9, 3))
    for n in names:
        w = [x["ms"] for c in sc[n]["connections_detail"] for e in c["endpoints"].values()
             for x in e.get("windows", [])]
        if w:
            ax.scatter([n] * len(w), w, s=8, alpha=0.5)
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylabel("window (ms)")
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    out.append(("Divergence windows: how long the tracker's view of an endpoint differed from its kernel's",
                "Each point is one interval during which the tracker's state for an endpoint was not the "
                "kernel's. Propagation makes windows of about the one-way delay; under loss the tracker's "
                "assume-delivered inference runs ahead until the retransmission.", _png(fig)))

    # 5. RTT per delay setting
    # 4. RTT histograms side by side: every connection's srtt, the kernels' and the tracker's
    ks = [r["kernel_srtt_us"] / 1000 for n in names for r in sc[n]["rtt"] if r.get("kernel_srtt_us")]
    ts = [r["tracker_srtt_us"] / 1000 for n in names for r in sc[n]["rtt"] if r.get("tracker_srtt_us")]
    if ks:
        fig, ax = plt.subplots(figsize=(9, 3))
        lo, hi = max(min(ks + ts) * 0.8, 0.005), max(ks + ts) * 1.25
        bins = np.logspace(np.log10(lo), np.log10(hi), 40)
        ax.hist(ks, bins=bins, alpha=0.6, label=f"kernels' srtt ({len(ks)} connections)", color="#1f77b4")
        if ts:
            ax.hist(ts, bins=bins, alpha=0.6, label=f"tracker's srtt ({len(ts)})", color="#d62728")
        else:
            ax.text(0.98, 0.9, "tracker's srtt: n/a in this build", transform=ax.transAxes, ha="right", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("smoothed RTT per connection (ms)")
        ax.legend(fontsize=7, loc="upper left")
        out.append(("Smoothed RTT per connection: the endpoints' kernels beside the tracker",
                    "The opener's socket's srtt (tcprtt --flows, last value) and the tracker's passive "
                    "srtt for the same connections, every scenario.", _png(fig)))

    rtt_sc = [n for n in names if sc[n].get("ping_ms")]
    if rtt_sc:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.2))
        xs = np.arange(len(rtt_sc))

        def med(n, key):
            v = sorted(r[key] for r in sc[n]["rtt"] if r.get(key) is not None)
            return v[len(v) // 2] / 1000.0 if v else None
        cols = [("ping -U median", lambda n: sc[n]["ping_ms"], "#7f7f7f"),
                ("kernels' srtt", lambda n: med(n, "kernel_srtt_us"), "#1f77b4"),
                ("tracker's srtt", lambda n: med(n, "tracker_srtt_us"), "#d62728")]
        for i, (label, fn, color) in enumerate(cols):
            vals = [fn(n) for n in rtt_sc]
            have = [(x, v) for x, v in zip(xs + (i - 1) * 0.27, vals) if v]
            # a log axis has no zero: a missing value is written, not drawn
            a1.bar([x for x, _ in have], [v for _, v in have], 0.27, label=label, color=color)
            for x, v in zip(xs + (i - 1) * 0.27, vals):
                if not v:
                    a1.text(x, 0.05, "n/a", ha="center", fontsize=7, rotation=90,
                            transform=a1.get_xaxis_transform())
        a1.set_xticks(xs, rtt_sc, fontsize=8)
        a1.set_yscale("log")
        a1.set_ylabel("RTT (ms)")
        a1.legend(fontsize=7)
        errs_k = [r["kernel_vs_ping_pct"] for n in rtt_sc for r in sc[n]["rtt"] if r["kernel_vs_ping_pct"] is not None]
        errs_t = [r["tracker_vs_kernel_pct"] for n in rtt_sc for r in sc[n]["rtt"]
                  if r["tracker_vs_kernel_pct"] is not None]
        if errs_k:
            a2.hist(errs_k, bins=20, alpha=0.6, label="kernel srtt vs ping", color="#1f77b4")
        if errs_t:
            a2.hist(errs_t, bins=20, alpha=0.6, label="tracker srtt vs kernel srtt", color="#d62728")
        a2.set_xlabel("error (%)")
        a2.legend(fontsize=7)
        out.append(("RTT per delay setting, and the error distribution",
                    "The kernels' smoothed RTT (tcprtt --flows, the opener's socket), ping's RTT and the "
                    "tracker's passive RTT (n/a until the tracker reports one).", _png(fig)))
    return out


# ---- HTML ----------------------------------------------------------------------------------------

_CSS = """body{font-family:sans-serif;margin:1.5em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;
vertical-align:top}th{background:#eee}.bad{background:#fdd}.ok{background:#efe}pre{font-size:11px;margin:0}
figure{margin:1em 0}figcaption{font-size:12px;color:#555}h2{border-bottom:1px solid #ccc}"""

# Marks the body once every image decoded: data-figures-loaded="N/M", data-tables="T",
# data-report-ready="yes" (or "no" when a figure failed). A headless browser reads it.
_JS = """<script>
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img.figure'), ok = 0;
  imgs.forEach(function (i) { if (i.complete && i.naturalWidth > 0) ok++; });
  var tables = document.querySelectorAll('table.data'), rows = 0;
  tables.forEach(function (t) { if (t.rows.length > 1) rows++; });
  document.body.setAttribute('data-figures-loaded', ok + '/' + imgs.length);
  document.body.setAttribute('data-tables', rows + '/' + tables.length);
  document.body.setAttribute('data-report-ready', (ok === imgs.length && rows === tables.length) ? 'yes' : 'no');
});
</script>"""


def _e(x):
    return html.escape(str(x))


def _table(headers, rows, cls="data"):
    out = [f'<table class="{cls}"><tr>' + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr>"]
    for r in rows:
        klass = ""
        if isinstance(r, tuple) and len(r) == 2 and isinstance(r[1], str) and r[1] in ("ok", "bad", ""):
            r, klass = r
        out.append(f'<tr class="{klass}">' + "".join(f"<td>{c}</td>" for c in r) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def write_html(report, path):
    figs = figures(report)
    ov = report["overall"]
    sc = report["scenarios"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>ctrack-report</title>"
             f"<style>{_CSS}</style></head><body>",
             "<h1>ctrack-report: what the middlebox believed against what the endpoints' kernels did</h1>",
             f"<p>{_e(report.get('generated', ''))} &middot; {_e(report.get('command', ''))} &middot; "
             f"tracker clock: {_e(report.get('tracker_clock', ''))}</p>"]
    for n in report.get("notes", []):
        parts.append(f"<p><b>Note.</b> {_e(n)}</p>")
    parts.append("<h2>Summary</h2>")
    rows = []
    for name, s in list(sc.items()) + [("overall", ov)]:
        rows.append(([f"<b>{_e(name)}</b>", _e(s.get("about", "") if name != "overall" else ""),
                      s["connections"], _na(s["state_agreement_pct"], unit="%"),
                      _na(s["ctrack_overall_consistent_pct"], unit="%"), _na(s["netfilter_consistent_pct"], unit="%"),
                      _na(s["rtt_median_error_pct"], unit="%"), _na(s["kernel_vs_ping_median_error_pct"], unit="%"),
                      len(s["disagreements"])], "bad" if s["disagreements"] else "ok"))
    parts.append(_table(["scenario", "what", "connections", "ctrack endpoint states agree",
                         "ctrack overall consistent", "netfilter consistent", "RTT median error (tracker vs kernel)",
                         "kernel srtt vs ping", "disagreements"], rows))
    parts.append("<h2>Figures</h2>")
    for title, cap, b64 in figs:
        parts.append(f"<figure><img class='figure' alt='{_e(title)}' src='data:image/png;base64,{b64}'>"
                     f"<figcaption><b>{_e(title)}.</b> {_e(cap)}</figcaption></figure>")
    parts.append("<h2>Linux's differences from the textbook, mapped</h2>")
    used = sorted({r for s in sc.values() for r in s.get("mapping_rules", [])})
    parts.append(_table(["rule", "what it maps", "applied in this run"],
                        [[f"<code>{_e(k)}</code>", _e(v), "yes" if k in used else "no"] for k, v in MAPPING.items()]))
    parts.append("<h2>Disagreements</h2>")
    if not ov["disagreements"]:
        parts.append("<p>None: every compared endpoint went through the states the tracker inferred.</p>")
    else:
        parts.append(_table(["scenario", "connection", "endpoint", "tracker", "kernel", "apart (ms)", "packets"],
                            [[_e(d["scenario"]), _e(d["flow"]), _e(d["endpoint"]),
                              _e(" > ".join(d["tracker"])), _e(" > ".join(d["kernel"])),
                              _e(d.get("apart_ms")) + (f"<br>{_e(d['note'])}" if d.get("note") else ""),
                              "<pre>" + _e("\n".join(d["packets"])) + "</pre>"] for d in ov["disagreements"][:200]]))
    parts.append("<h2>Ran ahead under loss</h2>")
    ra = [(n, r) for n, s in sc.items() for r in s.get("ran_ahead", [])]
    if not ra:
        parts.append("<p>None: no endpoint's kernel went through states the tracker skipped.</p>")
    else:
        parts.append("<p>The tracker passed a segment the network then lost, took it as delivered, and the "
                     "kernel got there another way (a retransmission, or the peer's next segment): not a "
                     "disagreement, but the views stayed apart for the time shown.</p>")
        parts.append(_table(["scenario", "connection", "endpoint", "tracker", "kernel", "apart (ms)", "packets"],
                            [[_e(n), _e(r["flow"]), _e(r["endpoint"]), _e(" > ".join(r["tracker"])),
                              _e(" > ".join(r["kernel"])), _e(r.get("apart_ms")),
                              "<pre>" + _e("\n".join(r["packets"])) + "</pre>"] for n, r in ra]))
    def verdict(v):
        if v["passed"]:
            return "passed"
        if v.get("unavailable"):
            return "could not run as designed here: " + _e(v["unavailable"])
        return "FAILED: " + _e("; ".join(v["failed"]))
    lab_rows = [[_e(n), verdict(s["lab_scenario"])] for n, s in sc.items() if s.get("lab_scenario")]
    if lab_rows:
        parts.append("<h2>ctrack-lab's own verdicts</h2>")
        parts.append("<p>The lab: scenarios also check the tracker against their own referees "
                     "(`ctrack-lab run`); their verdicts in this run:</p>")
        parts.append(_table(["scenario", "verdict"], lab_rows))
    parts.append("<h2>RTT</h2>")
    per_setting = []
    for n, s_ in sc.items():
        if not s_.get("ping_ms"):
            continue
        ks = sorted(r["kernel_srtt_us"] for r in s_["rtt"] if r["kernel_srtt_us"])
        ts = sorted(r["tracker_srtt_us"] for r in s_["rtt"] if r["tracker_srtt_us"])
        kmed = ks[len(ks) // 2] / 1000 if ks else None
        tmed = ts[len(ts) // 2] / 1000 if ts else None
        per_setting.append([_e(n), _na(s_["delay_ms"], "{:g}", " ms"), _na(s_["ping_ms"], "{:.2f}", " ms"),
                            _na(kmed, "{:.2f}", " ms"), _na(s_["kernel_vs_ping_median_error_pct"], unit="%"),
                            _na(tmed, "{:.2f}", " ms"), _na(s_["rtt_median_error_pct"], unit="%")])
    if per_setting:
        parts.append("<p>Per delay setting: does each track the path's RTT?</p>")
        parts.append(_table(["scenario", "delay each way", "ping -U median", "kernels' srtt (median)",
                             "kernel vs ping", "tracker's srtt (median)", "tracker vs kernel"], per_setting))
    rrows = [[_e(n), _e(r["flow"]), _na(r["ping_ms"], "{:.2f}"), _na(r["kernel_srtt_us"], "{:.0f}"),
              _na(r["tracker_srtt_us"], "{:.0f}"), _na(r["tracker_handshake_us"], "{:.0f}"),
              _na(r["tracker_vs_kernel_pct"], unit="%"), _na(r["kernel_vs_ping_pct"], unit="%")]
             for n, s in sc.items() for r in s["rtt"] if r["kernel_srtt_us"] is not None]
    parts.append(_table(["scenario", "connection", "ping (ms)", "kernel srtt (us)", "tracker srtt (us)",
                         "tracker handshake (us)", "tracker vs kernel", "kernel vs ping"], rrows or [["-"] * 8]))
    parts.append("<h2>Connections</h2>")
    for name, s in sc.items():
        parts.append(f"<h3>{_e(name)}</h3>")
        crow = []
        for c in s["connections_detail"]:
            eps = c["endpoints"]

            def seqs(side):
                e = eps.get(side, {})
                k = " > ".join(e.get("kernel") or []) if e.get("kernel") is not None else "no kernel view"
                return (f"tracker: {_e(' > '.join(e.get('tracker', [])))}<br>kernel: {_e(k)}"
                        + (f"<br>apart {e['apart_ms']} ms" if e.get("apart_ms") else ""))
            crow.append(([_e(c["flow"]), seqs("opener"), seqs("responder"),
                          _e(" > ".join(c.get("netfilter") or [])) if "netfilter" in c else "n/a",
                          _e(c.get("conn_state") or "n/a"), _e(c.get("history") or "n/a"),
                          _e(c.get("closed") or ""),
                          {True: "agree", False: "DISAGREE", None: "n/a"}[c["agree"]]],
                         "ok" if c["agree"] else ("bad" if c["agree"] is False else "")))
        parts.append(_table(["connection", "opener", "responder", "netfilter", "conn_state", "history",
                             "closed", "verdict"], crow or [["-"] * 8]))
        if s.get("udp_flows"):
            parts.append(_table(["UDP flow", "tracker states", "closed"],
                                [[_e(u["flow"]), _e(" > ".join(u["states"])), _e(u["closed"] or "")]
                                 for u in s["udp_flows"]]))
    parts.append(_JS + "</body></html>")
    with open(path, "w") as f:
        f.write("\n".join(parts))
    return len(figs)

"""ctrack-top's screen, as rich renderables: header, flow table, recent events, key line.

Only the rows that fit are formatted (the model hands over a window of the sorted list), so a
frame costs the same with 100 flows or 100,000. Colours follow the flow's overall state.
"""
import time

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ctrack.engine.defs import defs
from ctrack.engine.flowview import duration, endpoint_text, orig, rate, row_srtt_us, size, zeek_text
from ctrack.engine.rtt import hist_buckets, hist_quantile_us, us_text
from ctrack.engine.tcpopts import option_counts

STATE_STYLE = {
    "ESTABLISHED": "green", "NEW": "cyan",
    "SYN_SENT": "yellow", "SYN_RECV": "yellow", "SYN_SENT2": "yellow",
    "FIN_WAIT": "magenta", "CLOSE_WAIT": "magenta", "LAST_ACK": "magenta",
    "TIME_WAIT": "blue", "CLOSE": "bright_black", "NONE": "bright_black",
}
EVENT_STYLE = {"new": "green", "state": "yellow", "closed": "yellow", "destroy": "red"}
EVENT_TAG = {"new": "NEW", "state": "UPDATE", "closed": "UPDATE", "destroy": "DESTROY"}
HEADER_LINES = 7
KEYS = ("q quit  space pause  s sort  r reverse  / filter  p proto  t state  c clear  "
        "\u2191\u2193 PgUp PgDn Home End scroll  e events")

# verdict classes as kernel/ctrack.h names them (enum ct_class), untracked (value 0) shown last
_CLASSES = tuple(n.lower() for n in sorted(
    defs().ct_class.names(), key=lambda n: defs().ct_class.value(n) == defs().ct_class.CT_CLASS_UNTRACKED))


def _class_rates_line(label, rates):
    """One header line: LABEL then each verdict class's rate ('-' before the second sample),
    invalid in red when not zero."""
    t = Text()
    t.append(label, style="bold")
    for i, cls in enumerate(_CLASSES):
        v = rates.get(cls, 0.0) if rates else None
        if i:
            t.append("  ")
        t.append(f"{cls} ")
        t.append("-" if v is None else rate(v), style="red" if cls == "invalid" and v else "")
    return t


def _n(v):
    return f"{v:,}"


def header(ctx):
    """The header lines (Text) from the model ctx (see ctrack/top/app.py's Top)."""
    meta, s, sampler, names = ctx.meta, ctx.sample, ctx.sampler, ctx.names
    lines = []
    ifs = meta.get("interfaces", [])
    where = " <-> ".join(ifs) if meta.get("wire") else ", ".join(ifs) or "-"
    up = duration(int((time.time() - meta.get("started", time.time())) * 1e9))
    t = Text()
    t.append("ctrack-top ", style="bold")
    t.append(f"tracker {meta['name']!r} on {where} ({meta.get('mode', '?')}, "
             f"{meta.get('policy', '?')}{', pickup' if meta.get('pickup') else ''})  up {up}  "
             f"every {ctx.interval:g}s")
    if ctx.paused:
        t.append("  PAUSED", style="bold reverse")
    if ctx.stopped:
        t.append("  TRACKER STOPPED", style="bold red reverse")
    lines.append(t)

    t = Text()
    live = len(s.live)
    t.append(f"flows {_n(live)}: ", style="bold")
    parts = sorted(s.by_state.items(), key=lambda kv: (-kv[1], kv[0]))
    for i, ((p, st), n) in enumerate(parts):
        name = names.state(st)
        if i:
            t.append("  ")
        t.append(f"{names.proto(p)} {name} {_n(n)}", style=STATE_STYLE.get(name, ""))
    if not parts:
        t.append("none")
    size_ = ctx.table_size
    fill = len(s.rows) / size_ * 100 if size_ else 0
    t.append(f"   table {_n(len(s.rows))}/{_n(size_)} ({fill:.1f}%)")
    if s.expired:
        t.append(f", {_n(s.expired)} expired awaiting the collector", style="bright_black")
    lines.append(t)

    cr = sampler.class_rates()
    t = _class_rates_line("packets/s ", cr)
    t.append("   tracked ")
    t.append(rate(sampler.tracked_bits_per_s()) + "b/s" if cr is not None else "-")
    lines.append(t)
    t = _class_rates_line("bits/s    ", sampler.class_bit_rates())
    st = s.stats
    dropped = st.get("action.drop", 0)
    if dropped:
        t.append(f"   dropped {_n(dropped)}", style="red")
    lines.append(t)

    t = Text()
    t.append("invalid ", style="bold")
    inv = sorted(((k[7:], v) for k, v in st.items() if k.startswith("reason.") and v),
                 key=lambda kv: -kv[1])
    prev = sampler.prev.stats if sampler.prev else None
    dt = (s.mono - sampler.prev.mono) if sampler.prev else 0
    if not inv:
        t.append("none")
    for i, (k, v) in enumerate(inv[:6]):
        if i:
            t.append("  ")
        t.append(f"{k} {_n(v)}", style="red")
        if prev is not None and dt > 0:
            d = v - prev.get("reason." + k, 0)
            if d:
                t.append(f" (+{rate(d / dt)}/s)", style="red")
    if len(inv) > 6:
        t.append(f"  +{len(inv) - 6} more")
    extra = [(k, st.get(k, 0)) for k in ("table_full", "events_lost") if st.get(k, 0)]
    for k, v in extra:
        t.append(f"  {k} {_n(v)}", style="bold red")
    lines.append(t)

    t = Text()
    t.append("collector ", style="bold")
    g, gs = s.gc, s.gc_status
    if gs and gs.get("error"):
        t.append("not running", style="bold red")
        t.append(f" ({gs['error']})", style="bright_black")
    elif gs:
        last = gs.get("last", {})
        t.append(f"{gs.get('owner', '')} every {gs.get('interval_s', 0):g}s (next "
                 f"{gs.get('next_delay_s', 0):g}s), last pass {last.get('duration_ms', 0):.1f} ms")
    else:
        t.append("not running", style="yellow")
        t.append(" (ctrack run --no-gc? then `ctrack gc`)", style="bright_black")
    t.append(f"   passes {_n(g.get('scans', 0))}  removed {_n(g.get('removed', 0))} "
             f"(timeouts {_n(g.get('timeouts', 0))})  flushed {_n(g.get('flushed', 0))}")
    if g.get("revived"):
        t.append(f"  revived {_n(g['revived'])}", style="yellow")
    t.append(f"   closed: fin {_n(st.get('closed_fin', 0))} rst {_n(st.get('closed_rst', 0))} "
             f"timeout {_n(st.get('closed_timeout', 0))} evicted {_n(st.get('evicted', 0))}")
    lines.append(t)

    lines.append(rtt_options_line(st))

    t = Text()
    arrow = "\u2191" if ctx.view.reverse else "\u2193"
    t.append("sort ", style="bold")
    t.append(f"{ctx.view.sort} {arrow}")
    t.append("   filter ", style="bold")
    t.append(ctx.view.flt.describe() or "none", style="cyan" if ctx.view.flt else "")
    first = ctx.view.offset + 1 if ctx.shown else 0
    t.append(f"   showing {first}-{ctx.view.offset + ctx.shown} of {_n(ctx.matching)}")
    lines.append(t)
    for t in lines:   # one screen line each, whatever the width: cut, never wrapped
        t.no_wrap = True
        t.overflow = "ellipsis"
    return lines


def rtt_options_line(st):
    """Passive RTT's histogram in three quantiles (bucket upper bounds) and the flows by SYN
    option, opener/responder (ctrack.engine.rtt, ctrack.engine.tcpopts)."""
    t = Text()
    t.append("rtt       ", style="bold")
    b = hist_buckets(st)
    n = sum(c for _, c in b)
    if n:
        t.append(f"samples {_n(n)}  p50 <{us_text(hist_quantile_us(b, 0.5))}  "
                 f"p90 <{us_text(hist_quantile_us(b, 0.9))}  p99 <{us_text(hist_quantile_us(b, 0.99))}")
    else:
        t.append("no samples", style="bright_black")
    t.append("   syn options ", style="bold")
    oc = option_counts(st)
    shown = [(k, oc["orig"].get(k, 0), oc["reply"].get(k, 0)) for k in oc["orig"]]
    shown = [x for x in shown if x[1] or x[2]]
    if not shown:
        t.append("none", style="bright_black")
    for i, (k, a, r) in enumerate(shown):
        t.append(("  " if i else "") + f"{k} {_n(a)}/{_n(r)}")
    return t


def flow_table(ctx, rows):
    L, s, names = ctx.layout, ctx.sample, ctx.names
    now = s.now
    tb = Table(box=None, pad_edge=False, show_edge=False, header_style="bold reverse",
               padding=(0, 1))
    for col, kw in (("PROTO", {}), ("STATE", {}), ("SOURCE", {}),
                    ("DESTINATION", {}), ("ORIG", {}), ("REPLY", {}),
                    ("AGE", {"justify": "right"}), ("IDLE", {"justify": "right"}),
                    ("TTL", {"justify": "right"}), ("PKTS \u2192/\u2190", {"justify": "right"}),
                    ("BYTES \u2192/\u2190", {"justify": "right"}), ("RATE", {"justify": "right"}),
                    ("SRTT", {"justify": "right"}), ("ZEEK", {})):
        tb.add_column(col, no_wrap=True, overflow="ellipsis", **kw)
    ik = L.KEY
    tcp = names.tcp
    for r in rows:
        src, sport, dst, dport = orig(r, L)
        fam = r[L.FAMILY]
        st = names.state(r[L.STATE])
        style = STATE_STYLE.get(st, "")
        is_tcp = r[L.PROTO] == tcp
        bps = s.rate.get(r[ik])
        # Text cells, not str: rich reads a str as markup, and "[fd00::1]:80" as a style tag
        cells = (names.proto(r[L.PROTO]), st,
                 endpoint_text(src, sport, fam), endpoint_text(dst, dport, fam),
                 names.ep(r[L.STATE0]) if is_tcp else "-",
                 names.ep(r[L.STATE1]) if is_tcp else "-",
                 duration(now - r[L.FIRST]), duration(now - r[L.LAST]),
                 duration(r[L.EXPIRES] - now),
                 f"{r[L.PKTS0]}/{r[L.PKTS1]}", f"{size(r[L.BYTES0])}/{size(r[L.BYTES1])}",
                 "-" if bps is None else rate(bps) + "b/s",
                 us_text(row_srtt_us(r, L)) if is_tcp else "-", zeek_text(L.zeek_of(r)))
        tb.add_row(*(Text(c) for c in cells), style=style)
    return tb


def event_line(ev, meta):
    wall = meta["started"] + (ev["ts_ns"] - meta["started_monotonic_ns"]) / 1e9
    t = Text(time.strftime("%H:%M:%S", time.localtime(wall)) + " ")
    typ = ev["type"]
    t.append(f"{EVENT_TAG.get(typ, typ):<7}", style=EVENT_STYLE.get(typ, ""))
    o = ev["orig"]
    fam = ev["family"]
    t.append(f" {ev['proto']} {endpoint_text(o['src'], o['sport'], fam)} -> "
             f"{endpoint_text(o['dst'], o['dport'], fam)} ")
    if typ == "state":
        t.append(f"{ev['old_state']} -> ")
    t.append(ev["state"], style=STATE_STYLE.get(ev["state"], ""))
    if typ in ("closed", "destroy"):
        t.append(f"  {ev['reason']}", style="bold red" if ev["reason"] in ("rst", "timeout", "evicted") else "bold")
        t.append(f"  pkts {ev['packets'][0]}/{ev['packets'][1]} bytes {size(ev['bytes'][0])}/"
                 f"{size(ev['bytes'][1])}", style="bright_black")
        if ev.get("rtt") and ev["rtt"]["srtt_us"] is not None:
            t.append(f"  rtt {us_text(ev['rtt']['srtt_us'])}", style="bright_black")
    return t


def events_panel(ctx, height):
    flt = ctx.view.flt
    evs = [e for e in ctx.events if flt.match_event(e)] if flt else list(ctx.events)
    evs = evs[-height:][::-1]   # newest first; the flow filter applies here too
    lines = [event_line(ev, ctx.meta) for ev in evs] or [Text("no events yet", style="bright_black")]
    title = "recent events"
    if ctx.events_note:
        title += f" ({ctx.events_note})"
    return Panel(Group(*lines), title=title, title_align="left", height=height + 2,
                 border_style="bright_black")


def footer(ctx):
    if ctx.prompt is not None:
        t = Text("filter: ", style="bold")
        t.append(ctx.prompt + "\u2588")
        t.append("   Enter apply, Esc cancel; words: tcp udp state=EST src= dst= sport= dport= "
                 "addr= port= (a bare address or port: either end)", style="bright_black")
        return t
    if ctx.message:
        return Text(ctx.message, style="bold yellow")
    return Text(KEYS, style="reverse")


def layout_heights(total, events_on):
    """(table rows, event lines) that fit in `total` lines."""
    ev = max(3, min(10, total // 5)) if events_on else 0
    used = HEADER_LINES + 1 + (ev + 2 if events_on else 0) + 1   # + table heading, + key line
    return max(1, total - used), ev


def frame(ctx, height, rows, fit=False):
    """The whole screen. fit=True (one-off and plain frames): the events pane as tall as its
    events (at most 10 lines), no key line."""
    parts = header(ctx)
    parts.append(flow_table(ctx, rows))
    if ctx.events_on:
        n = sum(1 for e in ctx.events if ctx.view.flt.match_event(e)) if ctx.view.flt else len(ctx.events)
        ev_h = max(1, min(10, n)) if fit else layout_heights(height, True)[1]
        parts.append(events_panel(ctx, ev_h))
    if not fit:
        parts.append(footer(ctx))
    return Group(*parts)

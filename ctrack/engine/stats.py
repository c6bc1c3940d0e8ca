"""The tracker's global statistics (per-CPU `stats`: one struct ct_stats, counters indexed by
enum ct_stat) by name."""


def decode_stats(stats_map, d):
    """Sum over CPUs and name each counter: packets, class.<name>, action.<name>,
    reason.<name>, opt_orig.<option>, opt_reply.<option>, rtt_hist.<bucket>, rtt_sum_us, and
    the flow counters (flows_created, closed_fin, ...)."""
    st = d.ct_stat
    bases = {"CLASS": (d.ct_class, st.CT_STAT_CLASS), "ACTION": (d.ct_action, st.CT_STAT_ACTION),
             "REASON": (d.ct_reason, st.CT_STAT_REASON),
             "BYTES_CLASS": (d.ct_class, st.CT_STAT_BYTES_CLASS),
             "OPT_ORIG": (d.ct_tcpopt, st.CT_STAT_OPT_ORIG),
             "OPT_REPLY": (d.ct_tcpopt, st.CT_STAT_OPT_REPLY)}
    # one slot, a struct ct_stats per CPU: sum each counter over CPUs
    per_cpu = stats_map[stats_map.Key(0)]
    values = {i: sum(c.v[i] for c in per_cpu) for i in range(st.CT_STAT_MAX)}
    out = {}
    for name, value in st.items.items():
        short = name[len(st.prefix):]
        if short in bases or short in ("MAX", "RTT_HIST"):
            continue
        out[short.lower()] = values.get(value, 0)
    for short, (enum, base) in bases.items():
        for ename, evalue in enum.items.items():
            if ename.endswith("_MAX"):
                continue
            key = f"{short.lower()}.{ename[len(enum.prefix):].lower()}"
            out[key] = values.get(base + evalue, 0)
    # the end-to-end RTT histogram: rtt_hist.<log2 bucket> (ctrack.engine.rtt)
    for b in range(d.macros["CT_RTT_HIST_SLOTS"]):
        out[f"rtt_hist.{b}"] = values.get(st.CT_STAT_RTT_HIST + b, 0)
    return out

"""Passive RTT as the tracker measures it (struct ct_rtt in kernel/ctrack.h), for people and JSON.

Each side of a flow holds the half of the round trip from the tracker to that endpoint and back;
the flow's end-to-end RTT is the sum of the halves. The flow object's "rtt":

    {"handshake_us": N|null, "srtt_us": N|null, "min_us": N|null, "samples": N,
     "orig": {"srtt_us", "min_us", "last_us", "samples", "handshake_us"}, "reply": {...}}

Flow-level values are null until both halves have one (handshake_us: both handshake halves,
which a retransmitted SYN or SYN/ACK leaves out, Karn). The per-tracker histogram of end-to-end
samples is a range of the stats counters (CT_STAT_RTT_HIST, log2 buckets of µs as BCC's
print_log2_hist numbers them). Constants come from kernel/ctrack.h via ctrack.engine.defs.
"""
from .defs import defs


def side_object(h):
    """One half (a ctypes struct ct_rtt) as a dict; values None before its first sample."""
    d = defs()
    n = h.samples
    return {
        "srtt_us": h.srtt8_us >> 3 if n else None,
        "min_us": h.min_us if n else None,
        "last_us": h.last_us if n else None,
        "samples": n,
        "handshake_us": h.hs_us if h.flags & d.macros["CT_RTT_F_HANDSHAKE"] else None,
    }


def rtt_object(entry):
    """The flow's "rtt" object (module docstring) from a ctypes struct ct_entry."""
    o, r = side_object(entry.rtt[0]), side_object(entry.rtt[1])

    def both(k):
        return None if o[k] is None or r[k] is None else o[k] + r[k]

    return {"handshake_us": both("handshake_us"), "srtt_us": both("srtt_us"),
            "min_us": both("min_us"), "samples": o["samples"] + r["samples"],
            "orig": o, "reply": r}


def summary_object(s):
    """A ctypes struct ct_rtt_summary (end events) as the flow-level part of rtt_object."""
    d = defs()
    hs = s.flags & d.macros["CT_RTT_SUM_HANDSHAKE"]
    both = s.flags & d.macros["CT_RTT_SUM_BOTH"]
    return {"handshake_us": s.handshake_us if hs else None,
            "srtt_us": s.srtt_us if both else None,
            "min_us": s.min_us if both else None, "samples": s.samples}


def us_text(us):
    """850us, 12.3ms, 1.25s; '-' for None."""
    if us is None:
        return "-"
    if us < 1000:
        return f"{us}us"
    if us < 1_000_000:
        return f"{us / 1000:.3g}ms" if us < 100_000 else f"{us / 1000:.0f}ms"
    return f"{us / 1e6:.3g}s"


def rtt_text(rtt):
    """'rtt=10.2ms min=10.1ms hs=10.4ms n=37' (the flow's sums); '' without any sample."""
    if not rtt or (rtt["samples"] == 0 and rtt["handshake_us"] is None):
        return ""
    parts = [f"rtt={us_text(rtt['srtt_us'])}"]
    if rtt["min_us"] is not None:
        parts.append(f"min={us_text(rtt['min_us'])}")
    if rtt["handshake_us"] is not None:
        parts.append(f"hs={us_text(rtt['handshake_us'])}")
    parts.append(f"n={rtt['samples']}")
    return " ".join(parts)


# ---- the per-tracker histogram (stats counters "rtt_hist.<bucket>", see ctrack.engine.stats) ----

def hist_buckets(stats):
    """[(bucket, count)] of the end-to-end RTT histogram, from decoded stats."""
    n = defs().macros["CT_RTT_HIST_SLOTS"]
    return [(b, stats.get(f"rtt_hist.{b}", 0)) for b in range(n)]


def bucket_range_us(b):
    """[low, high] µs of bucket b (BCC's log2 buckets: 0 is 0, b holds [2^(b-1), 2^b - 1];
    the last bucket has no upper bound: high is None)."""
    if b == 0:
        return 0, 0
    last = defs().macros["CT_RTT_HIST_SLOTS"] - 1
    return 1 << (b - 1), (None if b == last else (1 << b) - 1)


def hist_quantile_us(buckets, q):
    """The upper bound (µs) of the bucket holding quantile q (0..1); None without samples."""
    total = sum(c for _, c in buckets)
    if not total:
        return None
    acc = 0
    for b, c in buckets:
        acc += c
        if acc >= q * total:
            lo, hi = bucket_range_us(b)
            return hi if hi is not None else lo
    return None


def hist_lines(buckets, width=40):
    """print_log2_hist's form: '     usecs : count  distribution' then one line a bucket, from
    the first to the last non-empty one."""
    used = [b for b, c in buckets if c]
    if not used:
        return ["no RTT samples"]
    top = max(c for _, c in buckets)
    out = [f"{'usecs':>20} : {'count':<8} distribution"]
    for b, c in buckets[used[0]:used[-1] + 1]:
        lo, hi = bucket_range_us(b)
        rng = f"{lo} -> {hi if hi is not None else 'inf'}"
        bar = "*" * (c * width // top if top else 0)
        out.append(f"{rng:>20} : {c:<8} |{bar:<{width}}|")
    return out

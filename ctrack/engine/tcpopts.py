"""The TCP options each side of a flow put in its SYN (struct ct_synopts in kernel/ctrack.h).

The flow object's "tcp_options": {"orig": SIDE, "reply": SIDE}, a SIDE being null before that
side's SYN was seen, else

    {"options": ["mss", "wscale", "sack_perm", "timestamps", "exp", ...],   enum ct_tcpopt names
     "kinds": [2, 3, 4, 8, 253],      every kind by number (kinds >= 63 only the first, and
                                      253/254 through their ExIDs)
     "mss": 1460|null, "wscale": 7|null,
     "exids": ["0x4e58", ...],       RFC 6994 ExIDs (kinds 253/254), first CT_SYNOPT_EXIDS
     "mptcp_subtype": 0|null}

Per-tracker counts of flows by option are the stats counters opt_orig.<name> / opt_reply.<name>
(ctrack.engine.stats). Names and kinds come from kernel/ctrack.h via ctrack.engine.defs.
"""
import socket

from .defs import defs


def _option_names(named):
    e = defs().ct_tcpopt
    return [n.lower() for n in e.names() if named & (1 << e.value(n))]


def side_object(so, ct_dir):
    """One side's summary from ctypes struct ct_synopts and struct ct_dir; None if empty."""
    d = defs()
    if not so.kinds:
        return None
    kinds = [k for k in range(63) if so.kinds >> k & 1]
    if so.high_kind:
        kinds.append(so.high_kind)
    exids, ekinds = [], []
    for i in range(d.macros["CT_SYNOPT_EXIDS"]):
        if so.exid_kind[i]:
            exids.append(f"0x{so.exid[i]:04x}")
            ekinds.append(so.exid_kind[i])
    kinds += sorted(set(ekinds) - set(kinds))
    has = lambda kind: so.kinds >> kind & 1
    return {
        "options": _option_names(so.named),
        "kinds": kinds,
        "mss": ct_dir.mss if has(d.macros["CT_TCPOPT_KIND_MSS"]) else None,
        "wscale": _wscale_offered(so, ct_dir),
        "exids": exids,
        "mptcp_subtype": so.mptcp_subtype - 1 if so.mptcp_subtype else None,
    }


def _wscale_offered(so, ct_dir):
    # ct_dir.wscale is the shift in use (0 unless both offered); what a side offered is only
    # known when scaling is on; otherwise say whether it offered at all.
    d = defs()
    if not so.kinds >> d.macros["CT_TCPOPT_KIND_WSCALE"] & 1:
        return None
    return ct_dir.wscale


def options_object(key, entry):
    """The flow's "tcp_options" (module docstring); None for UDP."""
    if key.proto != socket.IPPROTO_TCP:
        return None
    return {"orig": side_object(entry.synopts[0], entry.dir[0]),
            "reply": side_object(entry.synopts[1], entry.dir[1])}


def side_text(side):
    """'mss,wscale,sack_perm,timestamps,exp(0x4e58)' or '-'."""
    if not side:
        return "-"
    out = []
    for n in side["options"]:
        if n == "exp" and side["exids"]:
            out.append("exp(" + ",".join(side["exids"]) + ")")
        elif n == "mptcp" and side["mptcp_subtype"] is not None:
            out.append(f"mptcp({side['mptcp_subtype']})")
        elif n == "other":
            named_kinds = {defs().macros[m] for m in defs().macros if m.startswith("CT_TCPOPT_KIND_")}
            others = [str(k) for k in side["kinds"] if k not in named_kinds]
            out.append("kind(" + ",".join(others) + ")" if others else "other")
        else:
            out.append(n)
    return ",".join(out)


def options_text(opts):
    """'opts=mss,sack_perm/mss,sack_perm' (orig/reply), '' for UDP."""
    if not opts:
        return ""
    return f"opts={side_text(opts['orig'])}/{side_text(opts['reply'])}"


def option_counts(stats):
    """{side: {option name: flows}} from decoded stats (opt_orig.* / opt_reply.*)."""
    out = {}
    for side in ("orig", "reply"):
        pre = f"opt_{side}."
        out[side] = {k[len(pre):]: v for k, v in stats.items() if k.startswith(pre)}
    return out

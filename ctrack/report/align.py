"""The comparison itself, as pure functions over recorded data (no root, no BPF): what the
middlebox (ctrack's tracker, netfilter's conntrack) believed about each TCP connection against
what the two endpoints' kernels did (tcpstates on sock:inet_sock_set_state).

Inputs are plain dicts, as collect.py records them:
  tracker events   `ctrack run --json` event objects (ts_ns on the tracker's clock)
  kernel events    StateEvent.as_dict() (mono_ns: CLOCK_MONOTONIC)
  netfilter events {"mono_ns", "type", "state", "src", "dst", "sport", "dport", "proto", "id"}
  packets          {"mono_ns", "src", "dst", "sport", "dport", "flags", "seq", "ack", "len"}
All times are CLOCK_MONOTONIC nanoseconds by the time they get here.

Linux's view differs from the textbook in documented ways; each is mapped here by a named rule
(MAPPING), and the report names the rule wherever it applied. Verified against what tcpstates
printed in the lab (Linux 6.18, docs/report.md shows the runs).
"""

# ---- the documented differences between Linux's tracepoint and the textbook ---------------------

MAPPING = {
    "self-transition": "X -> X lines (CLOSING -> CLOSING, LAST_ACK -> LAST_ACK) are close() on an "
                       "already closing socket (tcp_close_state keeps the state): dropped",
    "timewait-takeover": "FIN_WAIT2 -> CLOSE and CLOSING -> CLOSE: the minimal timewait socket takes "
                         "over and TIME_WAIT never appears on the tracepoint: read as TIME_WAIT",
    "listener-clone": "an accepted socket is born at the handshake's last ACK as a clone of the "
                      "listener: LISTEN -> SYN_RECV -> ESTABLISHED at the same instant (the request "
                      "socket of NEW_SYN_RECV is never on the tracepoint): its SYN_RECV has no usable time",
    "ack-and-fin": "FIN_WAIT1 -> FIN_WAIT2 -> TIME_WAIT within 1 ms: one segment acknowledged the FIN "
                   "and carried the peer's FIN; the tracker takes both at once (FIN_WAIT1 -> TIME_WAIT)",
    "crossed-fin": "tracker CLOSE_WAIT -> CLOSING: the tracker took the first FIN as delivered and its "
                   "receiver to CLOSE_WAIT; that receiver's own FIN, not acknowledging it, shows the FINs "
                   "crossed and that it was in FIN_WAIT1 (ct_tcp_endpoints): compared as FIN_WAIT1, "
                   "the time it showed CLOSE_WAIT is measured as divergence",
    "fin-behind-data": "FIN_WAIT1 / LAST_ACK begin at shutdown() or close(), but the FIN leaves only "
                       "behind the data still queued (a bulk sender): no middlebox can see the state "
                       "before its FIN is on the wire, so it is dated by the FIN in the capture; the "
                       "wait is reported as fin_queued_ms",
    "forgotten": "a flow the tracker closed by timeout (or evicted) while the connection lived on: "
                 "the kernels' later states are listed, not compared",
    "connect-port-0": "a client's CLOSE -> SYN_SENT line has local port 0 (connect() picks the port "
                      "after the tracepoint): the socket is tied to its connection by its address",
}
TRANSIENT_NS = 1_000_000   # "within 1 ms": both transitions come from one segment's processing

# endpoint states after which a side has sent its FIN / had it acknowledged
_FIN_SENT = {"FIN_WAIT1", "FIN_WAIT2", "CLOSING", "TIME_WAIT", "LAST_ACK"}
_FIN_ACKED = {"FIN_WAIT2", "TIME_WAIT"}


def norm_addr(a):
    return a[7:] if isinstance(a, str) and a.startswith("::ffff:") else a


# ---- kernel side ------------------------------------------------------------------------------

def socket_lives(kernel_events):
    """Split tcpstates events into socket lives: [{"key": (laddr, lport, raddr, rport),
    "events": [...]}]. A kernel address is reused once a socket is freed, so a life ends at its
    transition to CLOSE; listeners (CLOSE -> LISTEN, LISTEN -> CLOSE, no peer) are left out."""
    open_by_sk = {}
    lives = []
    for ev in sorted(kernel_events, key=lambda e: e["mono_ns"]):
        sk = ev["skaddr"]
        if ev["newstate"] == "LISTEN" or (ev["oldstate"] == "LISTEN" and ev["newstate"] == "CLOSE"):
            continue
        life = open_by_sk.get(sk)
        if life is None:
            life = {"events": [], "key": None}
            open_by_sk[sk] = life
            lives.append(life)
        life["events"].append(ev)
        if ev["lport"] and ev["rport"] and life["key"] is None:
            life["key"] = (norm_addr(ev["laddr"]), ev["lport"], norm_addr(ev["raddr"]), ev["rport"])
        if ev["newstate"] == "CLOSE":
            del open_by_sk[sk]
    return [l for l in lives if l["key"] is not None]


def kernel_sequence(events):
    """A socket life's states in the tracker's vocabulary: [{"state", "t", "timed", "optional",
    "rule"}], after the MAPPING rules. "timed": the time is when the state really began;
    "optional": the tracker may skip it (ack-and-fin). Also returns the rules applied."""
    seq, rules = [], set()
    for ev in events:
        old, new, t = ev["oldstate"], ev["newstate"], ev["mono_ns"]
        if old == new:
            rules.add("self-transition")
            continue
        if old == "CLOSE" and ev["lport"] == 0:
            rules.add("connect-port-0")
        item = {"state": new, "t": t, "timed": True, "optional": False, "rule": None}
        if new == "CLOSE" and old in ("FIN_WAIT2", "CLOSING"):
            item.update(state="TIME_WAIT", rule="timewait-takeover")
            rules.add("timewait-takeover")
        elif new == "CLOSE":
            item["reset"] = old not in ("LAST_ACK",)
        if old == "LISTEN" and new == "SYN_RECV":
            item.update(timed=False, rule="listener-clone")
            rules.add("listener-clone")
        if (item["state"] == "TIME_WAIT" and seq and seq[-1]["state"] == "FIN_WAIT2"
                and t - seq[-1]["t"] < TRANSIENT_NS):
            seq[-1].update(optional=True, rule="ack-and-fin")
            rules.add("ack-and-fin")
        if seq and seq[-1]["state"] == item["state"]:
            continue
        seq.append(item)
    return seq, rules


# ---- tracker side -----------------------------------------------------------------------------

def flow_id(ev):
    o = ev["orig"]
    return (ev["proto"], o["src"], o["sport"], o["dst"], o["dport"])


def group_flows(events):
    """Tracker events by flow, split at `new` (a reused 5-tuple is another connection):
    [{"id": (proto, src, sport, dst, dport), "events": [...]}]."""
    flows, current = [], {}
    for ev in sorted(events, key=event_time):
        fid = flow_id(ev)
        if ev["type"] == "new" or fid not in current:
            current[fid] = {"id": fid, "events": []}
            flows.append(current[fid])
        current[fid]["events"].append(ev)
    for f in flows:
        f["events"].sort(key=_causal_key)
    return flows


_TYPE_RANK = {"new": 0, "state": 1, "closed": 2, "destroy": 3, "table": 4}
# events that end something rather than change a state: "closed" (the connection ended: fin,
# rst), "destroy" (the entry left the table: timeout, evicted, reopened, flushed)
_ENDS = ("closed", "destroy")
_NOT_STATES = ("closed", "destroy", "table")


def end_reason(events):
    """How the tracker saw the flow end: the "closed" event's reason (fin, rst), else the
    "destroy" event's (timeout, evicted, reopened, flushed), else None."""
    for typ in _ENDS:
        for e in events:
            if e["type"] == typ and e.get("reason"):
                return e["reason"]
    return None


def _causal_key(ev):
    """The order a flow's events happened in. The ring buffer's order is not it: the tracker
    emits an event after releasing the flow's lock, so when two CPUs handle two packets of one
    flow at once (the crossed FINs of a simultaneous close), their events can arrive swapped,
    with one coarse timestamp. The packet counts each event carries were taken under the lock:
    they give the order."""
    if ev["type"] == "table":
        return (1, 0, 0, 0)
    return (0, sum(ev.get("packets") or [0]), _TYPE_RANK.get(ev["type"], 1), ev["ts_ns"])


def event_time(ev):
    """An event's time: a precise kernel clock when the tracker's events carry one, else the
    capture's time of the packet that caused it (date_by_capture), else ts_ns
    (CLOCK_MONOTONIC_COARSE, behind by a jiffy or more)."""
    for k in ("ktime_ns", "mono_ns", "precise_ns", "capture_ns"):
        if ev.get(k):
            return ev[k]
    return ev["ts_ns"]


# the segment that moves a flow into each overall state (what date_by_capture looks for)
_CAUSE = {"new": lambda f: "S" in f and "A" not in f, "SYN_RECV": lambda f: "S" in f and "A" in f,
          "SYN_SENT2": lambda f: "S" in f, "ESTABLISHED": lambda f: "A" in f,
          "FIN_WAIT": lambda f: "F" in f, "LAST_ACK": lambda f: "F" in f,
          "CLOSE_WAIT": lambda f: "A" in f, "TIME_WAIT": lambda f: "A" in f,
          "CLOSE": lambda f: "R" in f}


def date_by_capture(events, packets, lag_ms):
    """Give each tracker event of one flow (in order) the capture time of the packet that caused
    it: the first packet of the flow, after the previous event's, within [ts_ns - 0.5 ms, ts_ns +
    lag + 1 ms] (a coarse clock reads at or before the true time), whose flags can cause that
    transition. Sets ev["capture_ns"]; events with no such packet keep their own time. Returns
    how many were dated."""
    if not events or not packets or any(e.get(k) for e in events for k in ("ktime_ns", "mono_ns", "precise_ns")):
        return 0
    proto, src, sport, dst, dport = flow_id(events[0])
    ends = {(src, sport, dst, dport), (dst, dport, src, sport)}
    mine = [p for p in packets if (p["src"], p["sport"], p["dst"], p["dport"]) in ends]
    floor, n, last = 0, 0, None
    for ev in events:
        if ev["type"] in ("table", "destroy"):
            continue   # a snapshot, or the entry leaving the table: no packet changed a state
        if ev["type"] == "closed" and last is not None and ev["ts_ns"] == last["ts_ns"]:
            ev["capture_ns"] = last.get("capture_ns")   # the same packet closed it
            continue
        want = _CAUSE.get("new" if ev["type"] == "new" else ev["state"])
        lo, hi = ev["ts_ns"] - 500_000, ev["ts_ns"] + int((lag_ms + 1) * 1e6)
        for p in mine:
            t = p["mono_ns"]
            if t < max(lo, floor) or (proto == "tcp" and want and not want(p.get("flags", ""))):
                continue
            if t > hi:
                break
            ev["capture_ns"] = t
            floor = t
            n += 1
            break
        last = ev
    return n


def tracker_sequence(flow_events, side):
    """The tracker's states for one endpoint ("orig" = the opener, "reply"), deduplicated:
    [{"state", "t"}]. Events come when the overall state changes, so an endpoint step that leaves
    the overall state alone is dated by the next event (the report says so)."""
    key = "orig_state" if side == "orig" else "reply_state"
    seq = []
    for ev in flow_events:
        st = ev.get(key)
        if not st or st == "NONE":
            continue
        if seq and seq[-1]["state"] == st:
            continue
        # a "table" pseudo-event (collect.TableReader) gives a state, not its time
        seq.append({"state": st, "t": event_time(ev), "timed": not ev.get("untimed")})
    return seq


def redate_queued_fins(kseq, packets, key, late_ns, back_ns):
    """Rule fin-behind-data: a kernel FIN_WAIT1/LAST_ACK whose FIN appears in the capture more
    than late_ns after the transition is re-dated to the FIN's capture time less back_ns (the
    one-way delay: the capture may sit after the delay line). Returns the longest wait in ms."""
    laddr, lport, raddr, rport = key
    fins = [p for p in packets if p["src"] == laddr and p["sport"] == lport and p["dst"] == raddr
            and p["dport"] == rport and "F" in p.get("flags", "")]
    waited = 0.0
    for x in kseq:
        if x["state"] not in ("FIN_WAIT1", "LAST_ACK") or not x["timed"]:
            continue
        fin = next((p for p in fins if p["mono_ns"] >= x["t"] - back_ns), None)
        if fin and fin["mono_ns"] - x["t"] > late_ns:
            waited = max(waited, (fin["mono_ns"] - x["t"]) / 1e6)
            x.update(t=fin["mono_ns"] - back_ns, rule="fin-behind-data")
    return waited


def tracker_corrected(seq):
    """The tracker's sequence with what it learnt later applied (rule crossed-fin)."""
    out, rules = [], set()
    for i, x in enumerate(seq):
        if x["state"] == "CLOSE_WAIT" and i + 1 < len(seq) and seq[i + 1]["state"] == "CLOSING":
            x = dict(x, state="FIN_WAIT1", rule="crossed-fin")
            rules.add("crossed-fin")
        if out and out[-1]["state"] == x["state"]:
            continue
        out.append(x)
    return out, rules


# ---- comparing one endpoint --------------------------------------------------------------------

def compare_sequences(tracker_seq, kernel_seq):
    """Walk both sequences; kernel items marked optional may be skipped. Returns {"agree",
    "pairs": [(tracker item, kernel item)], "mismatch": None or {"index", "tracker", "kernel"}}."""
    pairs, i, j = [], 0, 0
    while i < len(tracker_seq) and j < len(kernel_seq):
        if tracker_seq[i]["state"] == kernel_seq[j]["state"]:
            pairs.append((tracker_seq[i], kernel_seq[j]))
            i += 1
            j += 1
        elif kernel_seq[j].get("optional"):
            j += 1
        else:
            break
    while j < len(kernel_seq) and kernel_seq[j].get("optional") and i == len(tracker_seq):
        j += 1
    agree = i == len(tracker_seq) and j == len(kernel_seq)
    mismatch = None
    if not agree:
        # where to look in the capture: the kernel's step the tracker missed, else the tracker's
        # step the kernel never made (a table snapshot's time says nothing), else the last match
        cands = ([kernel_seq[j]] if j < len(kernel_seq) else []) + \
                ([tracker_seq[i]] if i < len(tracker_seq) else []) + ([pairs[-1][1]] if pairs else [])
        timed = [x for x in cands if x.get("timed", True)]
        mismatch = {"index": i,
                    "tracker": [x["state"] for x in tracker_seq[i:]],
                    "kernel": [x["state"] for x in kernel_seq[j:]],
                    "t": (timed or cands)[0]["t"]}
    return {"agree": agree, "pairs": pairs, "mismatch": mismatch}


def state_at(seq, t):
    cur = None
    for x in seq:
        if x["t"] <= t:
            cur = x["state"]
        else:
            break
    return cur


def divergence_windows(tracker_seq, kernel_seq, end_t):
    """Intervals where the tracker's state for an endpoint differs from its kernel's:
    [{"start", "end", "ms", "tracker", "kernel"}]. Before the kernel's first timed state (an
    accepted socket is invisible until the handshake ends) there is nothing to compare."""
    timed = [x for x in kernel_seq if x["timed"] and not x.get("optional")]
    tracker_seq = [x for x in tracker_seq if x.get("timed", True)]
    if not timed or not tracker_seq:
        return []
    start = min(timed[0]["t"], tracker_seq[0]["t"])
    first_k = timed[0]["t"]
    cuts = sorted({x["t"] for x in tracker_seq} | {x["t"] for x in timed} | {end_t})
    out, cur = [], None
    for a, b in zip(cuts, cuts[1:]):
        if a < start or a < first_k:
            continue
        ts, ks = state_at(tracker_seq, a), state_at(timed, a)
        if ts is not None and ks is not None and ts != ks:
            if cur and cur["end"] == a and cur["tracker"] == ts and cur["kernel"] == ks:
                cur["end"] = b
            else:
                cur = {"start": a, "end": b, "tracker": ts, "kernel": ks}
                out.append(cur)
    for w in out:
        w["ms"] = (w["end"] - w["start"]) / 1e6
    return out


# ---- netfilter's single state, and what the kernels imply ----------------------------------------

def allowed_overall(a, b, a_reset=False, b_reset=False):
    """The states netfilter's vocabulary allows for a pair of endpoint states (opener a,
    responder b; None: no socket visible yet), by the rules ctrack's ct_tcp_overall applies to
    its own endpoints (docs/tcp.md's state table). A set: a FIN its receiver has taken
    (CLOSE_WAIT) may or may not have been acknowledged on the wire yet, which tcpstates cannot
    tell."""
    if a_reset or b_reset:
        return {"CLOSE"}
    if b is None and a not in (None, "SYN_SENT"):
        # the responder's request socket is never on the tracepoint: it is in SYN_RECV until
        # the handshake's ACK reaches it, established after (its socket appears then)
        return allowed_overall(a, "SYN_RECV", a_reset) | allowed_overall(a, "ESTABLISHED", a_reset)
    if a in (None, "SYN_SENT"):
        return {"SYN_SENT"}
    if a == "SYN_RECV" and b == "SYN_RECV":
        return {"SYN_SENT2"}
    if a == "SYN_RECV" or b in (None, "SYN_RECV", "SYN_SENT"):
        return {"SYN_RECV"}
    done = ("TIME_WAIT", "CLOSE")
    if a in done and b in done:
        return {"TIME_WAIT"}
    fa = a in _FIN_SENT or a == "CLOSE"
    fb = b in _FIN_SENT or b == "CLOSE"
    if fa and fb:
        return {"LAST_ACK"}
    if fa or fb:
        snd, rcv = (a, b) if fa else (b, a)
        if snd in _FIN_ACKED:
            return {"CLOSE_WAIT"}
        if rcv == "CLOSE_WAIT":
            return {"FIN_WAIT", "CLOSE_WAIT"}
        return {"FIN_WAIT"}
    return {"ESTABLISHED"}


def joint_sequence(opener_seq, responder_seq):
    """The kernels' joint states over time: [(t, opener state, responder state, allowed set)]."""
    timeline = sorted([(x["t"], 0, x) for x in opener_seq if x["timed"]] +
                      [(x["t"], 1, x) for x in responder_seq if x["timed"]],
                      key=lambda r: (r[0], r[1]))
    a = b = None
    ar = br = False
    out = []
    for t, who, x in timeline:
        if who == 0:
            a, ar = x["state"], bool(x.get("reset"))
        else:
            b, br = x["state"], bool(x.get("reset"))
        out.append((t, a, b, allowed_overall(a, b, ar, br)))
    return out


def dedup(states):
    out = []
    for s in states:
        if not out or out[-1] != s:
            out.append(s)
    return out


def subsequence(small, big):
    """small's items appear in big in order."""
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


def overall_consistent(states, joint, end_t, tol_ns):
    """A middlebox's one state per connection against both kernels: each state it held must be
    one the kernels' joint state allowed within tol of the moment it took it and within tol of
    the moment it left it (the end of the run for the last one); tol: the one-way delay and a
    little (the middlebox sits between the kernels: a packet reaches it before one of them, and
    the tracker's own clock may trail). states: [(t, state)] in order.
    Returns (consistent or None, [inconsistent states])."""
    states = [(t, s) for t, s in states if s]
    if not states or not joint:
        return None, []
    def allowed_near(st, t):
        for k, (jt, _, _, allowed) in enumerate(joint):
            jt_end = joint[k + 1][0] if k + 1 < len(joint) else max(end_t, t) + tol_ns
            if jt <= t + tol_ns and jt_end >= t - tol_ns and st in allowed:
                return True
        return False

    bad = []
    for i, (t, st) in enumerate(states):
        t_end = states[i + 1][0] if i + 1 < len(states) else end_t
        # right when it was taken, and still right when it was left (or at the end): a state
        # held on after both kernels moved on is not consistent with them
        if not (allowed_near(st, t) and allowed_near(st, t_end)):
            bad.append(st)
    return not bad, bad


# ---- whole scenarios ----------------------------------------------------------------------------

def _overlaps(life, t0, t1, slack=2_000_000_000):
    ts = [e["mono_ns"] for e in life["events"]]
    return ts[0] <= t1 + slack and ts[-1] >= t0 - slack


def match_lives(flow, lives, used):
    """The kernel socket lives of a tracker flow's opener and responder: (opener, responder),
    either None. Tied by the 4-tuple and by time (ports are reused; the nearest life wins)."""
    _, src, sport, dst, dport = flow["id"]
    t0, t1 = event_time(flow["events"][0]), event_time(flow["events"][-1])
    out = []
    for key in ((src, sport, dst, dport), (dst, dport, src, sport)):
        best = None
        for idx, life in enumerate(lives):
            if idx in used or life["key"] != key or not _overlaps(life, t0, t1):
                continue
            d = abs(life["events"][0]["mono_ns"] - t0)
            if best is None or d < best[0]:
                best = (d, idx)
        if best:
            used.add(best[1])
            out.append(lives[best[1]])
        else:
            out.append(None)
    return tuple(out)


def nf_for(flow, nf_events):
    """netfilter's states for a flow (same original tuple, from its NEW to its DESTROY around the
    flow's time)."""
    _, src, sport, dst, dport = flow["id"]
    t0 = event_time(flow["events"][0])
    mine = [e for e in nf_events if e.get("proto") == "tcp" and e["src"] == src and e["sport"] == sport
            and e["dst"] == dst and e["dport"] == dport and e["mono_ns"] >= t0 - 2_000_000_000]
    mine.sort(key=lambda e: e["mono_ns"])
    out = []
    for e in mine:
        if e["type"] == "NEW" and out:
            break
        out.append(e)
        if e["type"] == "DESTROY":
            break
    return out


def packets_near(packets, flow_id_, t, before_ns=60_000_000, after_ns=60_000_000, limit=12):
    """The captured packets of a connection around time t: what the disagreement is about."""
    _, src, sport, dst, dport = flow_id_
    ends = {(src, sport, dst, dport), (dst, dport, src, sport)}
    near = [p for p in packets if (p["src"], p["sport"], p["dst"], p["dport"]) in ends
            and t - before_ns <= p["mono_ns"] <= t + after_ns]
    return near[:limit]


def packet_text(p, t0=None):
    rel = f"{(p['mono_ns'] - t0) / 1e6:+9.3f} ms " if t0 is not None else ""
    return (f"{rel}{p['src']}:{p['sport']} > {p['dst']}:{p['dport']} [{p.get('flags', '')}] "
            f"seq={p.get('seq')} ack={p.get('ack')} len={p.get('len')}")


def analyse(data, lag_allow_ms=5.0):
    """One scenario's records -> its part of report.json (connections, agreement, netfilter,
    timing, RTT, disagreements). data: collect.py's record (see there)."""
    flows = group_flows(data.get("tracker_events", []))
    dated = 0
    for f in flows:
        dated += date_by_capture(f["events"], data.get("packets", []), float(data.get("tracker_clock_lag_ms") or 0))

    lives = socket_lives(data.get("kernel_events", []))
    if data.get("local_networks") is not None:
        # --host: only sockets that can use the observed interface (its addresses) are its kernel
        # view; the others (other namespaces, other interfaces) never crossed it
        import ipaddress
        nets = [ipaddress.ip_network(n, strict=False) for n in data["local_networks"]]

        def local(a):
            try:
                ip = ipaddress.ip_address(a)
            except ValueError:
                return False
            return any(ip.version == n.version and ip in n for n in nets)
        lives = [l for l in lives if local(l["key"][0])]
    nf_events = data.get("nf_events")
    packets = data.get("packets", [])
    ports = set(data.get("ports", []))
    one_way_ms = float(data.get("delay_ms") or 0)
    # how far the tracker's event clock may lag the truth: CLOCK_MONOTONIC_COARSE ticks once a
    # jiffy, and on this kind of machine skips ticks (steps of up to 20 ms measured): collect.py
    # measures it; 0 when the events carry a precise time
    clock_ms = float(data.get("tracker_clock_lag_ms") or 0)
    end_t = data.get("end_ns") or max([event_time(e) for e in data.get("tracker_events", [])] + [0])
    used = set()
    conns, disagreements, timing, udp, ran_ahead_list = [], [], [], [], []
    rules_used = set()
    for flow in flows:
        proto, src, sport, dst, dport = flow["id"]
        if ports and dport not in ports and sport not in ports:
            continue
        if proto == "udp":
            udp.append({"flow": f"udp {src}:{sport} > {dst}:{dport}",
                        "states": dedup([e["state"] for e in flow["events"]]),
                        "closed": end_reason(flow["events"])})
            continue
        if proto != "tcp":
            continue
        opener, responder = match_lives(flow, lives, used)
        last = flow["events"][-1]
        conn = {"flow": f"tcp {src}:{sport} > {dst}:{dport}", "id": list(flow["id"]),
                "start_ns": event_time(flow["events"][0]),
                "tracker_overall": dedup([e["state"] for e in flow["events"] if e["type"] not in _NOT_STATES]),
                "closed": end_reason(flow["events"]),
                "conn_state": _flow_field(flow["events"], "conn_state"),
                "history": _flow_field(flow["events"], "history"),
                "rtt": _flow_field(flow["events"], "rtt"),
                "packets": last.get("packets"), "endpoints": {}}
        kseqs = {}
        for side, life in (("opener", opener), ("responder", responder)):
            tseq = tracker_sequence(flow["events"], "orig" if side == "opener" else "reply")
            if life is None:
                # in a lab both kernels are watched: a socket missing there is a disagreement;
                # on a real host (--host) the remote end has no kernel view at all
                missing = data.get("kernel_view", "both") == "both"
                conn["endpoints"][side] = {"tracker": [x["state"] for x in tseq], "kernel": None,
                                           "agree": False if missing else None, "windows": [],
                                           "apart_ms": None}
                if missing:
                    disagreements.append({"flow": conn["flow"], "endpoint": side,
                                          "tracker": [x["state"] for x in tseq], "kernel": [],
                                          "from_step": 0, "tracker_rest": [x["state"] for x in tseq],
                                          "kernel_rest": [], "apart_ms": None, "packets": [],
                                          "note": "no kernel socket of this endpoint was seen"})
                continue
            kseq, rules = kernel_sequence(life["events"])
            if conn["closed"] in ("timeout", "evicted"):
                # the tracker forgot the flow there (its timeout, or a full table): what the
                # kernels did afterwards is not the tracker's to know
                cut = event_time(next(e for e in flow["events"] if e["type"] in _ENDS
                                      and e.get("reason") == conn["closed"]))
                cut += int((one_way_ms + lag_allow_ms + clock_ms) * 1e6)
                after = [x["state"] for x in kseq if x["t"] > cut]
                kseq = [x for x in kseq if x["t"] <= cut]
                if after:
                    rules.add("forgotten")
                    conn.setdefault("after_forgotten", {})[side] = after
            queued = redate_queued_fins(kseq, packets, life["key"],
                                        int((one_way_ms + lag_allow_ms + clock_ms) * 1e6), int(one_way_ms * 1e6))
            if queued:
                rules.add("fin-behind-data")
            rules_used |= rules
            kseqs[side] = kseq
            tfix, trules = tracker_corrected(tseq)
            rules_used |= trules
            cmp = compare_sequences(tfix, kseq)
            wins = divergence_windows(tseq, kseq, end_t)
            for w in wins:
                w["beyond_propagation"] = w["ms"] > one_way_ms + lag_allow_ms + clock_ms
            for tr, kr in cmp["pairs"]:
                if kr["timed"] and not kr.get("optional") and tr.get("timed", True):
                    timing.append({"state": tr["state"], "side": side,
                                   "ms": (kr["t"] - tr["t"]) / 1e6})
            conn["endpoints"][side] = {
                "tracker": [x["state"] for x in tseq],
                "kernel": [x["state"] + ("?" if x.get("optional") else "") for x in kseq],
                "rules": sorted(rules | trules), "agree": cmp["agree"],
                "windows": [{"ms": round(w["ms"], 3), "tracker": w["tracker"], "kernel": w["kernel"],
                             "start_ms": round((w["start"] - conn["start_ns"]) / 1e6, 3),
                             "beyond_propagation": w["beyond_propagation"]} for w in wins],
                "apart_ms": round(sum(w["ms"] for w in wins), 3),
                "fin_queued_ms": round(queued, 3) if queued else None,
            }
            ran_ahead = None
            if not cmp["agree"]:
                ran_ahead = ran_ahead_under_loss(tfix, kseq, packets, flow["id"], data.get("delay_line_lost", 0))
            if ran_ahead:
                # not a disagreement: the tracker passed a segment the network then lost, took
                # it as delivered, and the kernel got there another way (the retransmission)
                conn["endpoints"][side]["agree"] = True
                conn["endpoints"][side]["ran_ahead"] = True
                ran_ahead_list.append({"flow": conn["flow"], "endpoint": side,
                                       "tracker": [x["state"] for x in tseq],
                                       "kernel": conn["endpoints"][side]["kernel"],
                                       "apart_ms": conn["endpoints"][side]["apart_ms"],
                                       "packets": [packet_text(p, conn["start_ns"]) for p in ran_ahead[:8]]})
            elif not cmp["agree"]:
                m = cmp["mismatch"]
                pk = packets_near(packets, flow["id"], m["t"])
                t0 = conn["start_ns"]
                disagreements.append({
                    "flow": conn["flow"], "endpoint": side,
                    "tracker": [x["state"] for x in tseq], "kernel": conn["endpoints"][side]["kernel"],
                    "from_step": m["index"], "tracker_rest": m["tracker"], "kernel_rest": m["kernel"],
                    "apart_ms": conn["endpoints"][side]["apart_ms"],
                    "packets": [packet_text(p, t0) for p in pk],
                })
        verdicts = [e["agree"] for e in conn["endpoints"].values() if e["agree"] is not None]
        # an endpoint with no kernel view (the remote end on a real host) is left out, not failed
        conn["agree"] = all(verdicts) if verdicts else None
        if "opener" in kseqs and "responder" in kseqs:
            joint = joint_sequence(kseqs["opener"], kseqs["responder"])
            conn["kernels_joint"] = dedup([f"{j[1]}/{j[2]}" for j in joint])
            tol = int((one_way_ms + lag_allow_ms + clock_ms) * 1e6)
            if nf_events is not None:
                nf = nf_for(flow, nf_events)
                conn["netfilter"] = dedup([e["state"] for e in nf if e.get("state")])
                ok, bad = overall_consistent([(e["mono_ns"], e["state"]) for e in nf], joint, end_t, tol)
                conn["netfilter_consistent"], conn["netfilter_inconsistent"] = ok, bad
            ok, bad = overall_consistent([(event_time(e), e["state"]) for e in flow["events"]
                                          if e["type"] not in _NOT_STATES], joint, end_t, tol)
            conn["ctrack_overall_consistent"], conn["ctrack_overall_inconsistent"] = ok, bad
        conns.append(conn)
    # kernel connections the tracker never reported
    for idx, life in enumerate(lives):
        if idx in used:
            continue
        laddr, lport, raddr, rport = life["key"]
        if ports and lport not in ports and rport not in ports:
            continue
        seq, _ = kernel_sequence(life["events"])
        if packets and not any((p["src"], p["sport"], p["dst"], p["dport"]) == life["key"] for p in packets):
            # tcpstates sees every namespace: a connection none of whose packets crossed the
            # tracker's interface is another lab's with the same addresses, not a miss
            continue
        if seq and seq[0]["state"] == "SYN_SENT":
            disagreements.append({"flow": f"tcp {laddr}:{lport} > {raddr}:{rport}", "endpoint": "opener",
                                  "tracker": [], "kernel": [x["state"] for x in seq], "from_step": 0,
                                  "tracker_rest": [], "kernel_rest": [x["state"] for x in seq],
                                  "apart_ms": None, "packets": [],
                                  "note": "the kernel made this connection; the tracker reported no flow"})
    out = summarise(conns, disagreements, timing, udp, nf_events is not None, data, rules_used)
    out["ran_ahead"] = ran_ahead_list
    out["tracker_events_dated_by_capture"] = dated
    return out


def retransmissions(packets, fid):
    """Segments of the connection the capture saw twice (same direction, sequence number and
    length, with payload, SYN or FIN): the network lost the first copy after the tracker."""
    _, src, sport, dst, dport = fid
    ends = {(src, sport, dst, dport), (dst, dport, src, sport)}
    seen, out = set(), []
    for p in packets:
        if (p["src"], p["sport"], p["dst"], p["dport"]) not in ends or p.get("seq") is None:
            continue
        if not (p.get("len") or "S" in p.get("flags", "") or "F" in p.get("flags", "")):
            continue
        k = (p["src"], p["sport"], p["seq"], p.get("len"), p.get("flags"))
        if k in seen:
            out.append(p)
        seen.add(k)
    return out


def ran_ahead_under_loss(tracker_seq, kernel_seq, packets, fid, network_lost=0):
    """The tracker skipped states the kernel went through (its sequence is a subsequence of the
    kernel's, same last state) and there is evidence of loss: retransmissions in the capture, or
    the lab's delay line dropped packets meanwhile (a lost RST is never retransmitted). Returns
    the packets to show (the retransmissions, else the connection's last ones), else None."""
    t = [x["state"] for x in tracker_seq]
    k = [x["state"] for x in kernel_seq]
    if not t or not k or t[-1] != k[-1] or not subsequence(t, k):
        return None
    rtx = retransmissions(packets, fid)
    if rtx:
        return rtx
    if network_lost:
        _, src, sport, dst, dport = fid
        ends = {(src, sport, dst, dport), (dst, dport, src, sport)}
        return [p for p in packets if (p["src"], p["sport"], p["dst"], p["dport"]) in ends][-8:] or None
    return None


def _flow_field(events, key):
    for ev in reversed(events):
        if ev.get(key) is not None:
            return ev[key]
    return None


def pct(n, d):
    return round(100.0 * n / d, 2) if d else None


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


def rtt_rows(conns, kernel_rtt, ping_ms):
    """Per connection: tracker srtt (when the tracker has passive RTT), the kernels' srtt (the
    opener's socket sees the whole path), ping's median; errors in percent."""
    by_key = {}
    for f in kernel_rtt or []:
        by_key[(norm_addr(f["laddr"]), f["lport"], norm_addr(f["raddr"]), f["rport"])] = f
    rows = []
    for c in conns:
        _, src, sport, dst, dport = c["id"]
        k = by_key.get((src, sport, dst, dport))
        tr = (c.get("rtt") or {}) if isinstance(c.get("rtt"), dict) else {}
        row = {"flow": c["flow"], "tracker_srtt_us": tr.get("srtt_us"),
               "tracker_handshake_us": tr.get("handshake_us"), "tracker_min_us": tr.get("min_us"),
               "kernel_srtt_us": k["last_us"] if k else None, "kernel_min_us": k["min_us"] if k else None,
               "kernel_samples": k["count"] if k else 0, "ping_ms": ping_ms}
        ks = row["kernel_srtt_us"]
        row["tracker_vs_kernel_pct"] = (round(100.0 * abs(row["tracker_srtt_us"] - ks) / ks, 2)
                                        if ks and row["tracker_srtt_us"] is not None else None)
        row["kernel_vs_ping_pct"] = (round(100.0 * abs(ks / 1000.0 - ping_ms) / ping_ms, 2)
                                     if ks and ping_ms else None)
        rows.append(row)
    return rows


def summarise(conns, disagreements, timing, udp, has_nf, data, rules_used):
    compared = [c for c in conns if c["agree"] is not None]
    agreeing = [c for c in compared if c["agree"]]
    nf_rated = [c for c in conns if c.get("netfilter_consistent") is not None]
    ct_rated = [c for c in conns if c.get("ctrack_overall_consistent") is not None]
    rows = rtt_rows(conns, data.get("kernel_rtt"), data.get("ping_ms"))
    windows = [w for c in conns for e in c["endpoints"].values() for w in e.get("windows", [])]
    beyond = [w for w in windows if w["beyond_propagation"]]
    return {
        "connections": len(conns),
        "compared": len(compared),
        "state_agreement_pct": pct(len(agreeing), len(compared)),
        "netfilter_consistent_pct": pct(sum(bool(c["netfilter_consistent"]) for c in nf_rated), len(nf_rated))
        if has_nf else None,
        "ctrack_overall_consistent_pct": pct(sum(bool(c["ctrack_overall_consistent"]) for c in ct_rated),
                                             len(ct_rated)),
        "rtt_median_error_pct": median([r["tracker_vs_kernel_pct"] for r in rows]),
        "kernel_vs_ping_median_error_pct": median([r["kernel_vs_ping_pct"] for r in rows]),
        "disagreements": disagreements,
        "divergence": {"windows": len(windows), "beyond_propagation": len(beyond),
                       "max_ms": round(max([w["ms"] for w in windows], default=0.0), 3),
                       "total_ms": round(sum(w["ms"] for w in windows), 3)},
        "timing_ms": [round(t["ms"], 3) for t in timing],
        "timing": timing,
        "rtt": rows,
        "udp_flows": udp,
        "mapping_rules": sorted(rules_used),
        "connections_detail": conns,
    }


def combine(per_scenario):
    """The overall figures from the scenarios' (counts weighted by connections)."""
    def wavg(key, weight="compared"):
        num = den = 0
        for s in per_scenario.values():
            if s.get(key) is not None and s.get(weight):
                num += s[key] * s[weight]
                den += s[weight]
        return round(num / den, 2) if den else None

    nf = [s for s in per_scenario.values() if s.get("netfilter_consistent_pct") is not None]
    return {
        "connections": sum(s["connections"] for s in per_scenario.values()),
        "compared": sum(s["compared"] for s in per_scenario.values()),
        "state_agreement_pct": wavg("state_agreement_pct"),
        "netfilter_consistent_pct": (round(sum(s["netfilter_consistent_pct"] * s["compared"] for s in nf)
                                           / max(1, sum(s["compared"] for s in nf)), 2) if nf else None),
        "ctrack_overall_consistent_pct": wavg("ctrack_overall_consistent_pct"),
        "rtt_median_error_pct": median([r["tracker_vs_kernel_pct"] for s in per_scenario.values()
                                        for r in s["rtt"]]),
        "kernel_vs_ping_median_error_pct": median([r["kernel_vs_ping_pct"] for s in per_scenario.values()
                                                   for r in s["rtt"]]),
        "disagreements": [dict(d, scenario=name) for name, s in per_scenario.items()
                          for d in s["disagreements"]],
    }

"""Seeded entries (tests/helpers/seed.py, the SETUP step of Cilium's datapath tests): a flow
written straight into the table in a given state, then the packet under test run through the
real program. First the seed is checked against what a replayed history leaves, field by
field; then states that take a long history to reach are tested from their seed."""
import pytest

from ctrack.engine.defs import defs
from helpers.seed import key_of, seed_tcp
from helpers.wire import TcpConv, states

FAMILIES = {"ipv4": (("10.1.0.1", 40000), ("10.2.0.2", 80)),
            "ipv4-opener-high": (("10.2.0.9", 40000), ("10.1.0.1", 80)),
            "ipv6": (("fd00::1", 40000), ("fd00::2", 80)),
            "ipv6-opener-high": (("fd00::9", 40000), ("fd00::2", 80))}
TWINS = {k: FAMILIES[k] for k in ("ipv4", "ipv6")}

# the entry fields a seed must agree on with the real history (times, counters, options, RTT and
# Zeek's record are the history's own)
ENTRY = ("state", "orig_side")
DIR = ("isn", "td_end", "td_maxend", "td_maxwin", "td_maxack", "fin_seq", "state", "wscale")


def _view(rp, key):
    d = defs()
    e = rp.tracker.flows[key]
    keep_f = d.CT_F_SEEN_REPLY | d.CT_F_ASSURED
    keep_df = d.CT_DF_SYN | d.CT_DF_FIN | d.CT_DF_FIN_ACKED | d.CT_DF_MAXACK_SET
    out = {f: getattr(e, f) for f in ENTRY}
    out["flags"] = e.flags & keep_f
    for i in (0, 1):
        out.update({f"dir{i}.{f}": getattr(e.dir[i], f) for f in DIR})
        out[f"dir{i}.flags"] = e.dir[i].flags & keep_df
    return out


@pytest.mark.parametrize("history", ["close_wait", "time_wait"])
@pytest.mark.parametrize("ends", list(FAMILIES.values()), ids=list(FAMILIES))
def test_seed_is_what_the_history_leaves(rp, ends, history):
    client, server = ends
    conv = TcpConv(rp, client=client, server=server, cisn=1000, sisn=5000)
    conv.c("S", options=[]); conv.s("SA", options=[]); conv.c("A")   # no scaling: windows as sent
    conv.c("PA", b"x" * 300); conv.s("A")
    conv.s("PA", b"y" * 700); conv.c("A")
    conv.c("FA"); conv.s("A")
    want = ("CLOSE_WAIT", "FIN_WAIT2", "CLOSE_WAIT")
    fin = ("orig",)
    if history == "time_wait":
        conv.s("FA"); conv.c("A")
        want = ("TIME_WAIT", "TIME_WAIT", "CLOSE")
        fin = ("orig", "reply")
    assert (conv.flow()["state"], conv.flow()["orig_state"], conv.flow()["reply_state"]) == want
    key, _ = key_of(rp.tracker.flows, 6, conv.family, client[0], client[1], server[0], server[1])
    replayed = _view(rp, key)

    rp.tracker.reset()
    seeded = TcpConv(rp, client=client, server=server, cisn=1000 + 300, sisn=5000 + 700)
    seeded.cli.isn, seeded.srv.isn = 1000, 5000   # ISNs as the history's; data already sent
    seeded.cli.nxt, seeded.srv.nxt = 1000 + 1 + 300, 5000 + 1 + 700
    seed_tcp(seeded, *want, fin=fin)
    assert _view(rp, key) == replayed


@pytest.mark.parametrize("ends", list(TWINS.values()), ids=list(TWINS))
def test_seeded_time_wait_reopens_on_a_new_syn(rp, ends):
    """A new SYN on a port pair in TIME_WAIT opens a new connection (RFC 9293 3.10.7.4 lets
    TIME-WAIT accept it; netfilter reopens): from the seed, no close history replayed."""
    client, server = ends
    old = TcpConv(rp, client=client, server=server)
    seed_tcp(old, "TIME_WAIT", "TIME_WAIT", "CLOSE", fin=("orig", "reply"))
    assert old.flow()["state"] == "TIME_WAIT"
    new = TcpConv(rp, client=client, server=server, cisn=90000, sisn=123456, clock=old.clock)
    r = new.c("S")
    assert r.klass == "NEW" and states(r) == ("SYN_SENT", "SYN_SENT", "SYN_RECV")
    new.s("SA")
    assert states(new.c("A")) == ("ESTABLISHED", "ESTABLISHED", "ESTABLISHED")
    assert rp.tracker.stats()["flows_created"] == 1    # the seed was written, not created


@pytest.mark.parametrize("sender", ["client", "server"])
@pytest.mark.parametrize("ends", list(TWINS.values()), ids=list(TWINS))
def test_seeded_close_wait_closes_on_an_in_window_rst(rp, ends, sender):
    client, server = ends
    conv = TcpConv(rp, client=client, server=server)
    seed_tcp(conv, "CLOSE_WAIT", "FIN_WAIT2", "CLOSE_WAIT", fin=("orig",))
    r = (conv.c if sender == "client" else conv.s)("R", advance=False)
    assert (r.klass, r.reason) == ("ESTABLISHED", None)
    assert states(r) == ("CLOSE", "CLOSE", "CLOSE")
    assert rp.tracker.stats()["closed_rst"] == 1


@pytest.mark.parametrize("ends", list(TWINS.values()), ids=list(TWINS))
def test_seeded_close_wait_ignores_an_rst_outside_the_window(rp, ends):
    client, server = ends
    conv = TcpConv(rp, client=client, server=server)
    seed_tcp(conv, "CLOSE_WAIT", "FIN_WAIT2", "CLOSE_WAIT", fin=("orig",), win=1000)
    r = conv.s("R", seq=conv.srv.nxt + 50000, advance=False)
    assert (r.klass, r.reason) == ("INVALID", "tcp_rst_window")
    assert conv.flow()["state"] == "CLOSE_WAIT"
    # the server's data still flows to the half-closed client
    assert states(conv.s("PA", b"late")) == ("CLOSE_WAIT", "FIN_WAIT2", "CLOSE_WAIT")

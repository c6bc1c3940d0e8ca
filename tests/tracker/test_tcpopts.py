"""The SYN options summary (struct ct_synopts, ctrack/engine/tcpopts.py) and the per-tracker counts of
flows by option, on the real program with crafted SYNs; and new options in data segments pass an
enforcing tracker untouched (it is a middlebox: RFC 6994 options must cross it)."""
from helpers.wire import TcpConv

MPTCP_CAPABLE = (30, b"\x01\x81" + b"\x00" * 8)       # subtype 0 (MP_CAPABLE), version 1
EXP_4E58 = (253, b"\x4e\x58\x01\x02")                  # RFC 6994: ExID 0x4e58, 2 bytes of data
TFO_EXP = (254, b"\xf9\x89")                           # RFC 7413's experimental TFO cookie request


def test_every_kind_of_option_in_the_syn(rp):
    conv = TcpConv(rp)
    conv.c("S", options=[("MSS", 1400), MPTCP_CAPABLE, EXP_4E58, TFO_EXP, (34, b""), (99, b"ab"),
                         ("SAckOK", b""), ("NOP", None), ("WScale", 7)])
    conv.s("SA", options=[("MSS", 1460), ("NOP", None), ("WScale", 9), (28, b"\x80\x10")])
    conv.c("A")
    opts = conv.flow()["tcp_options"]
    assert opts["orig"] == {
        "options": ["mss", "wscale", "sack_perm", "mptcp", "tfo", "exp", "other"],
        "kinds": [2, 3, 4, 30, 34, 99, 253, 254],
        "mss": 1400, "wscale": 7, "exids": ["0x4e58", "0xf989"], "mptcp_subtype": 0}
    assert opts["reply"] == {"options": ["mss", "wscale", "uto"], "kinds": [2, 3, 28],
                             "mss": 1460, "wscale": 9, "exids": [], "mptcp_subtype": None}
    st = rp.tracker.stats()
    assert {k: v for k, v in st.items() if k.startswith("opt_") and v} == {
        "opt_orig.mss": 1, "opt_orig.wscale": 1, "opt_orig.sack_perm": 1, "opt_orig.mptcp": 1,
        "opt_orig.tfo": 1, "opt_orig.exp": 1, "opt_orig.other": 1,
        "opt_reply.mss": 1, "opt_reply.wscale": 1, "opt_reply.uto": 1}
    from ctrack.engine.flows import format_flow_line
    assert "opts=mss,wscale,sack_perm,mptcp(0),tfo,exp(0x4e58,0xf989),kind(99)/mss,wscale,uto" \
        in format_flow_line(conv.flow())


def test_counts_are_per_flow(rp):
    for i in range(3):
        conv = TcpConv(rp, client=("10.1.0.1", 41000 + i))
        conv.c("S")                                   # Linux's SYN: mss, sack, ts, wscale
        conv.c("S", seq=conv.cli.isn)                 # its retransmission is the same flow
        conv.s("SA")
        conv.s("SA", seq=conv.srv.isn)
    st = rp.tracker.stats()
    assert st["opt_orig.timestamps"] == 3 and st["opt_reply.timestamps"] == 3
    assert st["opt_orig.exp"] == 0


def test_no_options_no_summary(rp):
    conv = TcpConv(rp)
    conv.c("S", options=[])
    assert conv.flow()["tcp_options"] == {"orig": None, "reply": None}


def test_new_options_in_data_pass_enforce_and_timestamps_still_read(replayer):
    rp = replayer(policy="enforce")
    conv = TcpConv(rp)
    exp = [EXP_4E58, ("NOP", None), ("NOP", None)]
    conv.c("S", options=[("MSS", 1460), ("Timestamp", (100, 0))] + exp, wait=0)
    conv.s("SA", options=[("MSS", 1460), ("Timestamp", (900, 100))], wait=0.001)
    for r in (conv.c("A", options=exp + [("Timestamp", (101, 900))], wait=0.001),
              conv.c("PA", b"data", options=exp + [("Timestamp", (102, 900))], wait=0.001),
              conv.s("A", options=[("NOP", None), ("NOP", None), ("Timestamp", (901, 102))],
                     wait=0.003)):
        assert (r.klass, r.verdict) == ("ESTABLISHED", "pass")
    f = conv.flow()
    assert f["tcp_options"]["orig"]["exids"] == ["0x4e58"]
    # 102 (the data) first seen 3 ms before its echo; the pure ACK's 101 is not timed: it
    # acknowledges all there is, and the kernels do not time such an ACK either (docs/rtt.md)
    assert f["rtt"]["reply"]["last_us"] == 3000


def test_no_synopts_build(replayer):
    rp = replayer(synopts=False)
    conv = TcpConv(rp)
    conv.c("S", options=[("MSS", 1400), EXP_4E58])
    r = conv.s("SA")
    assert r.klass == "ESTABLISHED"
    assert conv.flow()["tcp_options"] == {"orig": None, "reply": None}
    assert not any(v for k, v in rp.tracker.stats().items() if k.startswith("opt_"))


def test_a_new_isn_is_the_same_flow(rp):
    """An opener that starts over with a new ISN (SYN_SENT, a SYN with another sequence number)
    replaces its options but is counted once."""
    conv = TcpConv(rp)
    conv.c("S", options=[("MSS", 1400)])
    conv.c("S", seq=conv.cli.isn + 77777, options=[("MSS", 1300), EXP_4E58])
    assert conv.flow()["tcp_options"]["orig"]["mss"] == 1300
    assert conv.flow()["tcp_options"]["orig"]["exids"] == ["0x4e58"]
    st = rp.tracker.stats()
    assert st["opt_orig.mss"] == 1 and st["opt_orig.exp"] == 0

"""Flow filters shared by ctrack list, flush, delete, events and ctrack-top, in conntrack's terms.

    -p/--proto tcp|udp      --state ESTABLISHED[,TIME_WAIT...]   -f/--family 4|6
    -s/--src ADDR[/LEN]     -d/--dst ADDR[/LEN]    (the flow's original direction, like conntrack)
    --sport PORT            --dport PORT
    --addr ADDR[/LEN]       --port PORT            (either endpoint)

A FlowFilter tests table rows (ctrack.live.maps.RowLayout tuples, fast: addresses compared as
integers) and event dicts (ctrack.engine.events). In ctrack-top the same filter is typed as words:
`tcp state=established dport=80 10.0.0.0/24` (a bare address is --addr, a bare number --port,
a bare state name --state).
"""
import argparse
import ipaddress
import socket

from .defs import defs
from ctrack.errors import CtrackError

PROTOS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
WORDS = ("proto", "state", "src", "dst", "sport", "dport", "addr", "port", "family")


def _net(text, what):
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise CtrackError(f"bad {what} {text!r}: expected an address or ADDRESS/PREFIX") from None


def _port(text, what):
    try:
        v = int(text)
    except (TypeError, ValueError):
        v = -1
    if not 0 <= v <= 65535:
        raise CtrackError(f"bad {what} {text!r}: expected a port number 0-65535")
    return v


def _states(text):
    d = defs()
    names = set(d.ct_state.names())
    out = set()
    for part in text.replace("+", ",").split(","):
        s = part.strip().upper().replace("-", "_")
        if not s:
            continue
        if s not in names:
            # a unique prefix is enough: est -> ESTABLISHED, time -> TIME_WAIT
            hits = [n for n in names if n.startswith(s)]
            if len(hits) != 1:
                raise CtrackError(f"bad state {part!r}: one of {', '.join(d.ct_state.names())}")
            s = hits[0]
        out.add(s)
    return out


class FlowFilter:
    def __init__(self, proto=None, state=None, src=None, dst=None, sport=None, dport=None,
                 addr=None, port=None, family=None):
        self.spec = {}
        if proto is not None:
            p = str(proto).lower()
            if p not in PROTOS:
                raise CtrackError(f"bad protocol {proto!r}: tcp or udp")
            self.spec["proto"] = p
        if state:
            self.spec["state"] = _states(state) if isinstance(state, str) else set(state)
        for k, v in (("src", src), ("dst", dst), ("addr", addr)):
            if v is not None:
                self.spec[k] = _net(v, k) if isinstance(v, str) else v
        for k, v in (("sport", sport), ("dport", dport), ("port", port)):
            if v is not None:
                self.spec[k] = _port(v, k)
        if family is not None:
            f = str(family).lower().replace("ipv", "")
            if f not in ("4", "6"):
                raise CtrackError(f"bad family {family!r}: 4 or 6")
            self.spec["family"] = int(f)

    # ---- building ----

    @staticmethod
    def add_arguments(p):
        g = p.add_argument_group("filters (conntrack's; -s/-d/--sport/--dport: the flow's original direction)")
        g.add_argument("-p", "--proto", choices=tuple(PROTOS), help="protocol")
        g.add_argument("--state", metavar="STATE[,STATE]",
                       help="overall state(s), any unique prefix: ESTABLISHED, syn_sent, time ...")
        g.add_argument("-s", "--src", metavar="ADDR[/LEN]", help="original source address or network")
        g.add_argument("-d", "--dst", metavar="ADDR[/LEN]", help="original destination address or network")
        g.add_argument("--sport", metavar="PORT", help="original source port")
        g.add_argument("--dport", metavar="PORT", help="original destination port")
        g.add_argument("--addr", metavar="ADDR[/LEN]", help="either endpoint's address")
        g.add_argument("--port", metavar="PORT", help="either endpoint's port")
        g.add_argument("-f", "--family", choices=("4", "6", "ipv4", "ipv6"), help="address family")
        return g

    @classmethod
    def from_args(cls, args):
        return cls(**{k: getattr(args, k, None) for k in WORDS})

    @classmethod
    def parse(cls, text):
        """ctrack-top's typed filter: words like `tcp state=est dport=80 10.0.0.1`."""
        kw = {}
        for word in text.split():
            k, sep, v = word.partition("=")
            k = k.lower()
            if sep:
                if k not in WORDS:
                    raise CtrackError(f"unknown filter {k!r}: use {', '.join(WORDS)}")
                kw[k] = v
            elif k in PROTOS:
                kw["proto"] = k
            elif k.isdigit():
                kw["port"] = k
            elif any(c in k for c in ".:/"):
                kw["addr"] = word
            else:
                kw["state"] = word
        return cls(**kw)

    def __bool__(self):
        return bool(self.spec)

    def describe(self):
        parts = []
        for k in WORDS:
            if k not in self.spec:
                continue
            v = self.spec[k]
            if k == "proto":
                parts.append(v)
            elif k == "state":
                parts.append("state=" + ",".join(sorted(v)))
            else:
                parts.append(f"{k}={v}")
        return " ".join(parts)

    # ---- matching ----

    def row_predicate(self, layout):
        """A function row -> bool for ctrack.live.maps rows (see RowLayout)."""
        L = layout
        tests = []
        sp = self.spec
        if "proto" in sp:
            want = PROTOS[sp["proto"]]
            tests.append(lambda r: r[L.PROTO] == want)
        if "family" in sp:
            fam = sp["family"]
            tests.append(lambda r: r[L.FAMILY] == fam)
        if "state" in sp:
            enum = defs().ct_state
            vals = {enum.value(s) for s in sp["state"]}
            tests.append(lambda r: r[L.STATE] in vals)

        def addr_test(net):
            fam = net.version
            n = 4 if fam == 4 else 16
            if net.prefixlen % 8 == 0:
                # whole bytes (the usual /8, /16, /24, /32): a bytes compare is cheapest
                k = net.prefixlen // 8
                head = net.network_address.packed[:k]
                return lambda raw, f: f == fam and raw[:k] == head
            lo, mask = int(net.network_address), int(net.netmask)
            return lambda raw, f: f == fam and int.from_bytes(raw[:n], "big") & mask == lo

        sides = (L.ADDR0, L.ADDR1), (L.PORT0, L.PORT1)
        (a0, a1), (p0, p1) = sides
        if "src" in sp:
            ts = addr_test(sp["src"])
            tests.append(lambda r: ts(r[a1] if r[L.ORIG_SIDE] else r[a0], r[L.FAMILY]))
        if "dst" in sp:
            td = addr_test(sp["dst"])
            tests.append(lambda r: td(r[a0] if r[L.ORIG_SIDE] else r[a1], r[L.FAMILY]))
        if "addr" in sp:
            ta = addr_test(sp["addr"])
            tests.append(lambda r: ta(r[a0], r[L.FAMILY]) or ta(r[a1], r[L.FAMILY]))
        if "sport" in sp:
            v = sp["sport"]
            tests.append(lambda r: (r[p1] if r[L.ORIG_SIDE] else r[p0]) == v)
        if "dport" in sp:
            v = sp["dport"]
            tests.append(lambda r: (r[p0] if r[L.ORIG_SIDE] else r[p1]) == v)
        if "port" in sp:
            v = sp["port"]
            tests.append(lambda r: r[p0] == v or r[p1] == v)
        if not tests:
            return lambda r: True
        pred = tests[0]
        for nxt in tests[1:]:   # plain `and` chains: no generator per row
            pred = (lambda a, b: lambda r: a(r) and b(r))(pred, nxt)
        return pred

    def match_event(self, ev):
        """Does an event dict (ctrack.engine.events.decode_event) match?"""
        sp = self.spec
        o = ev["orig"]
        if "proto" in sp and ev["proto"] != sp["proto"]:
            return False
        if "family" in sp and ev["family"] != sp["family"]:
            return False
        if "state" in sp and ev["state"] not in sp["state"]:
            return False

        def inn(text, net):
            a = ipaddress.ip_address(text)
            return a.version == net.version and a in net
        if "src" in sp and not inn(o["src"], sp["src"]):
            return False
        if "dst" in sp and not inn(o["dst"], sp["dst"]):
            return False
        if "addr" in sp and not (inn(o["src"], sp["addr"]) or inn(o["dst"], sp["addr"])):
            return False
        if "sport" in sp and o["sport"] != sp["sport"]:
            return False
        if "dport" in sp and o["dport"] != sp["dport"]:
            return False
        if "port" in sp and sp["port"] not in (o["sport"], o["dport"]):
            return False
        return True


def add_arguments(p):
    return FlowFilter.add_arguments(p)


def positive_float(text):
    try:
        v = float(text)
    except ValueError:
        v = -1
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text!r}")
    return v

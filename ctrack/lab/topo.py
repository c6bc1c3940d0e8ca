"""The lab's topologies as plain data: which namespaces, veth pairs, addresses, routes, where a
tracker sits and where the delay line holds packets. Building them is ctrack/lab/core.py's job.

Every name derives from the lab's name, so several labs (say, one per test) live side by side.
The lab named "default" uses the short names users know (ns1, ns2, veth1, veth2, ctbr0);
any other lab NAME prefixes them (NAME-ns1, NAME-v1, NAME-br) to stay unique and within the
15-character limit on interface names. Interfaces inside a lab's own namespaces keep fixed
names (eth0, eth1, ...): a namespace is a world of its own, nothing there can collide."""
import re
from dataclasses import dataclass, field
from typing import Optional

DEFAULT_NAME = "default"
TOPOLOGIES = ("wire", "routed")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,9}$")

# Queue number of the delay line's NFQUEUE rule. Queues are per network namespace and the
# rules live only in the lab's own namespaces, so one fixed number never collides.
DELAY_QUEUE = 7


@dataclass
class End:
    """One end of a veth pair."""
    netns: Optional[str]       # None: the root namespace
    ifname: str
    mac: Optional[str] = None
    addrs: tuple = ()          # "10.0.0.1/24", "fd00:c7::1/64"


@dataclass
class Link:
    a: End                     # created first, in a.netns
    b: End                     # its peer, created straight into b.netns


@dataclass
class Host:
    key: str                   # what users type: ns1, ns2, nsr
    netns: str                 # the namespace's real name
    ifname: str
    ipv4: Optional[str] = None
    ipv6: Optional[str] = None
    mac: Optional[str] = None
    role: str = "host"         # "host" or "router"


@dataclass
class DelayPoint:
    """Where a delay line holds packets: one NFQUEUE rule (IPv4 and IPv6) and one process."""
    host: str                  # key of the namespace
    netns: str
    chain: str                 # mangle-table chain
    match: tuple               # iptables match arguments
    what: str                  # one line for humans


@dataclass
class Spec:
    name: str
    topology: str
    hosts: dict                # key -> Host (routers too)
    links: list
    routes: list = field(default_factory=list)       # (netns, dst, gateway)
    forwarding: list = field(default_factory=list)   # namespaces that route
    root_ifaces: list = field(default_factory=list)  # our interfaces in the root namespace
    tracker: dict = field(default_factory=dict)      # {"netns", "ifaces", "how"}
    bridge: Optional[str] = None                     # bridge name, if the topology can bridge
    delay_points: list = field(default_factory=list)
    delay_note: str = ""
    conntrack_netns: Optional[str] = None

    @property
    def namespaces(self):
        return [h.netns for h in self.hosts.values()]


def check_name(name):
    if not NAME_RE.match(name):
        raise ValueError(
            f"bad lab name {name!r}: use 1-10 of a-z, 0-9, _ (starting with a letter or digit)")


def _n(lab, short_default, short_named):
    """A root-visible name: the well-known one for the default lab, NAME-x for the others."""
    return short_default if lab == DEFAULT_NAME else f"{lab}-{short_named}"


def wire(lab):
    """Bump in the wire: ns1 and ns2 share a /24, each cabled to the root namespace
    (ns1:eth0 <-> veth1, ns2:eth0 <-> veth2) with nothing joining veth1 and veth2. A tracker
    on veth1 and veth2 that redirects between them is the only path (or the --bridge
    stand-in)."""
    ns1, ns2 = _n(lab, "ns1", "ns1"), _n(lab, "ns2", "ns2")
    v1, v2 = _n(lab, "veth1", "v1"), _n(lab, "veth2", "v2")
    hosts = {
        "ns1": Host("ns1", ns1, "eth0", "10.0.0.1/24", "fd00:c7::1/64", "02:c7:00:00:00:01"),
        "ns2": Host("ns2", ns2, "eth0", "10.0.0.2/24", "fd00:c7::2/64", "02:c7:00:00:00:02"),
    }
    links = [Link(End(None, v1), End(ns1, "eth0", hosts["ns1"].mac, (hosts["ns1"].ipv4, hosts["ns1"].ipv6))),
             Link(End(None, v2), End(ns2, "eth0", hosts["ns2"].mac, (hosts["ns2"].ipv4, hosts["ns2"].ipv6)))]
    # The delay line holds packets as they ARRIVE at each host (mangle PREROUTING on eth0), so
    # each direction is delayed once: D each way, 2*D round trip. Not on the sender's way out:
    # a packet held there still counts against its TCP socket's TSQ budget (TCP small queues,
    # about 1 ms of data), and a held packet never completes, so TCP throttles itself to a few
    # Mbit/s (measured: 5 Mbit/s at 10 ms). After the veth the packet belongs to no socket.
    # Price: the receiver's kernel timestamp (SO_TIMESTAMP) is taken before the hold, so plain
    # `ping` shows only the outbound half; `ping -U` (user-to-user time) shows the full RTT.
    points = [DelayPoint(k, hosts[k].netns, "PREROUTING", ("-i", "eth0"),
                         f"arriving at {k}:eth0") for k in ("ns1", "ns2")]
    return Spec(
        name=lab, topology="wire", hosts=hosts, links=links, root_ifaces=[v1, v2],
        tracker={"netns": None, "ifaces": [v1, v2],
                 "how": f"attach to {v1} and {v2} in the root namespace and redirect between them"},
        bridge=_n(lab, "ctbr0", "br"), delay_points=points,
        delay_note="held on arrival at each host (PREROUTING of eth0): D each way, 2*D RTT; "
                   "ping needs -U to show it (see docs/lab.md)")


def routed(lab):
    """Two hosts in different subnets behind a router namespace nsr that forwards:
    ns1:eth0 (10.1.0.1) <-> nsr:eth1 (10.1.0.254) | nsr:eth2 (10.2.0.254) <-> ns2:eth0 (10.2.0.2).
    A tracker sits in nsr on eth1 and eth2 (run it with `ctrack-lab exec nsr -- ...`); the
    hosts' side of the links is inside their namespaces too, so nothing is in the root."""
    ns1, ns2, nsr = _n(lab, "ns1", "ns1"), _n(lab, "ns2", "ns2"), _n(lab, "nsr", "nsr")
    hosts = {
        "ns1": Host("ns1", ns1, "eth0", "10.1.0.1/24", "fd00:c7:1::1/64", "02:c7:01:00:00:01"),
        "ns2": Host("ns2", ns2, "eth0", "10.2.0.2/24", "fd00:c7:2::2/64", "02:c7:02:00:00:02"),
        "nsr": Host("nsr", nsr, "eth1", "10.1.0.254/24", "fd00:c7:1::fe/64", "02:c7:01:00:00:fe",
                    role="router"),
    }
    links = [
        Link(End(nsr, "eth1", "02:c7:01:00:00:fe", ("10.1.0.254/24", "fd00:c7:1::fe/64")),
             End(ns1, "eth0", hosts["ns1"].mac, (hosts["ns1"].ipv4, hosts["ns1"].ipv6))),
        Link(End(nsr, "eth2", "02:c7:02:00:00:fe", ("10.2.0.254/24", "fd00:c7:2::fe/64")),
             End(ns2, "eth0", hosts["ns2"].mac, (hosts["ns2"].ipv4, hosts["ns2"].ipv6))),
    ]
    routes = [(ns1, "0.0.0.0/0", "10.1.0.254"), (ns1, "::/0", "fd00:c7:1::fe"),
              (ns2, "0.0.0.0/0", "10.2.0.254"), (ns2, "::/0", "fd00:c7:2::fe")]
    # One delay line in the router, on FORWARD: every packet crosses it once per direction.
    # Packets reach nsr from a veth (so they belong to no socket: no TSQ stall) and leave it
    # through another, which clears their timestamp, so even plain ping sees the full RTT.
    points = [DelayPoint("nsr", nsr, "FORWARD", (), "forwarded by nsr")]
    return Spec(
        name=lab, topology="routed", hosts=hosts, links=links, routes=routes, forwarding=[nsr],
        # nsr routes: a bump in the wire between eth1 and eth2 would bypass the routing (and
        # cut the hosts off); observing eth1, both ways, sees every packet between the hosts
        tracker={"netns": nsr, "ifaces": ["eth1", "eth2"],
                 "how": "nsr routes, so the tracker observes: `ctrack-lab exec nsr -- ctrack run "
                        "-i eth1` sees both directions of everything between ns1 and ns2 "
                        "(not -1/-2, which would bypass the routing); ICMP errors nsr itself sends "
                        "toward ns2 leave by eth2, seen by a second tracker there (`-i eth2 --name r2`)"},
        delay_points=points, conntrack_netns=nsr,
        delay_note="held by nsr while forwarding (mangle FORWARD): D each way, 2*D RTT")


def build_spec(lab, topology):
    check_name(lab)
    if topology == "wire":
        return wire(lab)
    if topology == "routed":
        return routed(lab)
    raise ValueError(f"unknown topology {topology!r} (choose from {', '.join(TOPOLOGIES)})")

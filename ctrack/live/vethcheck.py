"""Can XDP work on these veth devices? Checks the far ends of veth pairs before `ctrack run
--mode xdp` attaches, so that traffic never stalls silently.

Measured here (kernel 6.18, iperf3 through the tracker redirecting veth1 <-> veth2):
- a frame redirected into a veth is dropped unless that veth's peer runs NAPI: GRO on, or an
  XDP program of its own;
- TCP from a host whose TX checksum offload is on arrives with unfinished checksums after the
  redirect (the skb's CHECKSUM_PARTIAL does not survive it) and stalls; TSO/GSO super-packets
  stall too, with or without a multi-buffer program. With the hosts at `tx off gro on`: 6.3-6.6
  Gbit/s.
"""
import os
import subprocess
from dataclasses import dataclass
from typing import Optional

from pyroute2 import IPRoute

NETNS_DIR = "/run/netns"


@dataclass
class VethPeer:
    ifname: str               # our end
    peer_ifname: str
    netns: Optional[str]      # the peer's namespace name under /run/netns, None = ours
    features: dict            # ethtool -k of the peer: name -> "on"/"off"


def _nsid_to_name(ipr, nsid):
    if not os.path.isdir(NETNS_DIR):
        return None
    for name in os.listdir(NETNS_DIR):
        try:
            fd = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
        except OSError:
            continue
        try:
            msg = ipr.get_netnsid(fd=fd)
            if msg and msg.get("nsid") == nsid:
                return name
        except Exception:
            pass
        finally:
            os.close(fd)
    return None


def _features(netns, ifname):
    argv = ["ethtool", "-k", ifname]
    if netns:
        argv = ["ip", "netns", "exec", netns] + argv
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    feats = {}
    for line in out.splitlines():
        if ":" in line and not line.startswith("Features"):
            k, _, v = line.partition(":")
            feats[k.strip()] = v.split()[0] if v.split() else ""
    return feats


def veth_peer(ifname):
    """The peer of veth IFNAME with its features, or None if IFNAME is not a veth or its peer's
    namespace cannot be found (a namespace not under /run/netns)."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return None
        link = ipr.get_links(idx[0])[0]
        info = link.get_attr("IFLA_LINKINFO")
        if not info or info.get_attr("IFLA_INFO_KIND") != "veth":
            return None
        peer_index = link.get_attr("IFLA_LINK")
        nsid = link.get_attr("IFLA_LINK_NETNSID")
        netns = None
        if nsid is not None:
            netns = _nsid_to_name(ipr, nsid)
            if netns is None:
                return None
    if netns:
        from pyroute2 import NetNS
        ns = NetNS(netns)
        try:
            peer = ns.get_links(peer_index)[0].get_attr("IFLA_IFNAME")
        finally:
            ns.close()
    else:
        with IPRoute() as ipr:
            peer = ipr.get_links(peer_index)[0].get_attr("IFLA_IFNAME")
    return VethPeer(ifname, peer, netns, _features(netns, peer))


def xdp_problems(ifaces, redirect):
    """Reasons XDP would stall or drop traffic on these interfaces (empty list: none seen)."""
    problems = []
    for name in ifaces:
        p = veth_peer(name)
        if p is None:
            continue
        where = f"{p.netns}:{p.peer_ifname}" if p.netns else p.peer_ifname
        if p.features.get("tx-checksumming") == "on":
            problems.append(f"{where} has TX checksum offload on")
        if redirect and p.features.get("generic-receive-offload") == "off":
            problems.append(f"{where} has GRO off")
    return problems


def xdp_fix_hint(ifaces):
    hints = []
    for name in ifaces:
        p = veth_peer(name)
        if p is None:
            continue
        pre = f"ip netns exec {p.netns} " if p.netns else ""
        hints.append(f"{pre}ethtool -K {p.peer_ifname} tx off gro on")
    return "; ".join(hints)

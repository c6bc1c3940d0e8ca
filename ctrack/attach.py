"""Attaching the tracker to interfaces, and detaching exactly what was attached.

TC (cls_bpf, direct action) on a clsact qdisc, or XDP. An interface that already carries an XDP
program, or a TC filter on the hook ctrack wants, is refused with a one-line error: ctrack
never silently replaces someone else's program. What ctrack created (the clsact qdisc, its
filters, its XDP program) is recorded and removed by detach_all(), on every exit path.
"""
import errno

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .errors import CtrackError

TC_INGRESS, TC_EGRESS = 0xFFFFFFF2, 0xFFFFFFF3
XDP_FLAGS_UPDATE_IF_NOEXIST, XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE = 1, 2, 4
FILTER_NAME = "ctrack"


def ifindex(ipr, name):
    idx = ipr.link_lookup(ifname=name)
    if not idx:
        raise CtrackError(f"no interface named {name!r} in this network namespace "
                          f"(see `ip link`; for the lab: `ctrack-lab up`)")
    return idx[0]


def xdp_prog_id(ipr, idx):
    """Id of the XDP program on an interface, or 0."""
    link = ipr.get_links(idx)[0]
    xdp = link.get_attr("IFLA_XDP")
    if not xdp:
        return 0
    return xdp.get_attr("IFLA_XDP_PROG_ID") or 0


def tc_filters(ipr, idx, parent):
    try:
        return [f for f in ipr.get_filters(idx, parent=parent) if f.get_attr("TCA_KIND") == "bpf"]
    except NetlinkError:
        return []


class Attachments:
    """What one ctrack process attached; detach_all() undoes it, newest first."""

    def __init__(self):
        self.ipr = IPRoute()
        self.undo = []   # (description, callable)

    def attach_tc(self, ifname, fd, hooks=("ingress",)):
        idx = ifindex(self.ipr, ifname)
        parents = {"ingress": TC_INGRESS, "egress": TC_EGRESS}
        for hook in hooks:
            existing = tc_filters(self.ipr, idx, parents[hook])
            if existing:
                raise CtrackError(f"{ifname} already has a TC {hook} BPF program; ctrack will not "
                                  f"replace it (remove it with `tc filter del dev {ifname} {hook}`, "
                                  f"or stop the ctrack that put it there)")
        try:
            self.ipr.tc("add", "clsact", idx)
            self.undo.append((f"clsact on {ifname}", lambda: self.ipr.tc("del", "clsact", idx)))
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise CtrackError(f"cannot add a clsact qdisc on {ifname}: {exc.args[1]}") from None
            # someone else's clsact: keep it, remove only our filters
        for hook in hooks:
            parent = parents[hook]
            try:
                self.ipr.tc("add-filter", "bpf", idx, ":1", fd=fd, name=FILTER_NAME,
                            parent=parent, classid=1, direct_action=True)
            except NetlinkError as exc:
                raise CtrackError(f"cannot attach to {ifname} {hook}: {exc.args[1]}") from None
            self.undo.append((f"tc {hook} filter on {ifname}",
                              lambda p=parent: self._del_filters(idx, p)))

    def _del_filters(self, idx, parent):
        for f in tc_filters(self.ipr, idx, parent):
            if f.get_attr("TCA_OPTIONS") and FILTER_NAME in str(f.get_attr("TCA_OPTIONS").get_attr("TCA_BPF_NAME") or ""):
                self.ipr.tc("del-filter", "bpf", idx, ":1", parent=parent,
                            prio=f["info"] >> 16)

    def attach_xdp(self, ifname, fd, mode=None):
        """mode: None (driver if the device has it), 'skb' or 'drv'."""
        idx = ifindex(self.ipr, ifname)
        if xdp_prog_id(self.ipr, idx):
            raise CtrackError(f"{ifname} already has an XDP program (id {xdp_prog_id(self.ipr, idx)}); "
                              f"ctrack will not replace it (remove it with `ip link set {ifname} xdp off`, "
                              f"or stop the ctrack that put it there)")
        flags = XDP_FLAGS_UPDATE_IF_NOEXIST
        flags |= {None: 0, "skb": XDP_FLAGS_SKB_MODE, "drv": XDP_FLAGS_DRV_MODE}[mode]
        try:
            self.ipr.link("set", index=idx, xdp_fd=fd, xdp_flags=flags)
        except NetlinkError as exc:
            if exc.code == errno.EBUSY or exc.code == errno.EEXIST:
                raise CtrackError(f"{ifname} already has an XDP program; ctrack will not replace it") from None
            raise CtrackError(f"cannot attach XDP to {ifname}: {exc.args[1]}") from None
        self.undo.append((f"xdp on {ifname}", lambda: self._del_xdp(idx, flags)))

    def _del_xdp(self, idx, flags):
        self.ipr.link("set", index=idx, xdp_fd=-1, xdp_flags=flags & ~XDP_FLAGS_UPDATE_IF_NOEXIST)

    def detach_all(self):
        errors = []
        while self.undo:
            what, fn = self.undo.pop()
            try:
                fn()
            except NetlinkError as exc:
                if exc.code not in (errno.ENODEV, errno.ENOENT, errno.EINVAL):
                    errors.append(f"{what}: {exc.args[1]}")
            except Exception as exc:  # keep undoing the rest
                errors.append(f"{what}: {exc}")
        self.ipr.close()
        return errors
